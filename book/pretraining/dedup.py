"""Near-duplicate detection with MinHash and LSH banding, and exact n-gram-window deduplication: the
deduplication stages of Yi's cascade (Yi: Open Foundation Models by 01.AI, arXiv:2403.04652, section 2.1:
document-level MinHash deduplication, then sub-document exact-match deduplication).

MinHash (Broder 1997). A document is the set S of its word n-grams (shingles). For a random permutation pi
of the hash values, P(min pi(S_1) = min pi(S_2)) = |S_1 & S_2| / |S_1 | S_2| = J, the Jaccard similarity, so
the fraction of k independent permutations on which two signatures agree is an unbiased estimate of J with
variance J (1 - J) / k. The permutations are datasketch's "affine32" family (its default since 2.0.0):

    h = sha1(shingle)[:4] as a little-endian uint32                  (datasketch.hashfunc.sha1_hash32)
    h' = fmix32(h)                                                    MurmurHash3's finalizer, a bijection
    pi_i(h) = (a_i h' + b_i) mod 2^32,   a_i odd, b_i any             a bijection of [0, 2^32) for odd a_i
    signature_i(S) = min_{h in S} pi_i(h)

(datasketch's older "legacy" family, ((a h + b) mod (2^61 - 1)) truncated to 32 bits, is not a bijection after
the truncation and overestimates J on large sets; datasketch switched away from it.)

LSH banding. Cut the k = b r values of a signature into b bands of r rows; two documents become candidates
when all r rows of at least one band agree. A band agrees with probability J^r, so

    P(candidate | J = s) = 1 - (1 - s^r)^b,

an S-curve whose steep part sits near s = (1 / b)^(1 / r). `choose_bands` picks (b, r) for a threshold t by
minimizing the weighted areas under the curve below t (false positives) and above it (false negatives), as
datasketch's MinHashLSH does.

Exact n-gram windows. Every window of n consecutive words is hashed; a document whose fraction of windows
already seen in an earlier document is at least a threshold is removed (the earlier document is kept).
"""
import hashlib
from itertools import combinations

from minigrad.backend import np

MASK32 = np.uint64(0xFFFFFFFF)


def shingles(document, n=3):
    """The set of word n-grams of a document, each joined by single spaces (a shorter document: its words)."""
    words = document.split()
    return {" ".join(words[i:i + n]) for i in range(max(len(words) - n + 1, 1))} if words else set()


def hash32(strings):
    """sha1 of each string's UTF-8 bytes, its first 4 bytes read as a little-endian uint32: (len,) uint32."""
    return np.array([int.from_bytes(hashlib.sha1(s.encode("utf-8")).digest()[:4], "little") for s in strings],
                    dtype=np.uint32)


def fmix32(h):
    """MurmurHash3's 32-bit finalizer, a bijection that spreads the bits of h: uint32 -> uint32."""
    h = np.asarray(h, dtype=np.uint64)
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & MASK32
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & MASK32
    return (h ^ (h >> np.uint64(16))).astype(np.uint32)


def draw_permutations(num_perm, generator):
    """(a, b): (num_perm,) uint32 each, a odd. generator: a NumPy Generator."""
    a = generator.integers(0, 2 ** 31, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = generator.integers(0, 2 ** 32, num_perm, dtype=np.uint64)
    return a.astype(np.uint32), b.astype(np.uint32)


def minhash_signature(hashes, a, b):
    """min over the set's hashes of (a_i fmix32(h) + b_i) mod 2^32: (k,) uint32. hashes: (m,) uint32, m >= 1."""
    hashes, a, b = np.asarray(hashes), np.asarray(a), np.asarray(b)
    if hashes.ndim != 1 or len(hashes) == 0 or a.shape != b.shape or a.ndim != 1 or not (a % 2 == 1).all():
        raise ValueError(f"minhash_signature: expected a non-empty (m,) array of hashes and odd a with b of "
                         f"one shape (k,), got hashes {hashes.shape}, a {a.shape}, b {b.shape}")
    mixed = fmix32(hashes).astype(np.uint64)[:, None]                                  # (m, 1)
    permuted = (a.astype(np.uint64)[None, :] * mixed + b.astype(np.uint64)) & MASK32   # (m, k)
    return permuted.min(axis=0).astype(np.uint32)


def minhash_signatures(documents, a, b, n=3):
    """One signature per document over its word n-grams: (N, k) uint32."""
    return np.stack([minhash_signature(hash32(sorted(shingles(d, n))), a, b) for d in documents])


def jaccard(s1, s2):
    """|s1 & s2| / |s1 | s2| of two sets (0 for two empty sets)."""
    union = len(s1 | s2)
    return len(s1 & s2) / union if union else 0.0


def estimated_jaccard(sig1, sig2):
    """The fraction of signature rows on which two documents agree."""
    return float(np.mean(np.asarray(sig1) == np.asarray(sig2)))


def candidate_probability(s, bands, rows):
    """P(candidate | J = s) = 1 - (1 - s^rows)^bands."""
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


def choose_bands(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5, grid=2001):
    """(b, r) with b r <= num_perm minimizing w_fp * int_0^t P(s) ds + w_fn * int_t^1 (1 - P(s)) ds."""
    best, best_error = None, np.inf
    below, above = np.linspace(0.0, threshold, grid), np.linspace(threshold, 1.0, grid)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = np.trapezoid(candidate_probability(below, bands, rows), below)
            fn = np.trapezoid(1.0 - candidate_probability(above, bands, rows), above)
            error = false_positive_weight * fp + false_negative_weight * fn
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def band_buckets(signatures, bands, rows):
    """(N, bands) int64: the bucket of each document in each band; two documents share a bucket in band j
    exactly when their rows j r .. (j + 1) r - 1 are all equal."""
    signatures = np.asarray(signatures)
    if signatures.ndim != 2 or signatures.shape[1] < bands * rows:
        raise ValueError(f"band_buckets: need (N, k) signatures with k >= bands * rows = {bands * rows}, "
                         f"got {signatures.shape}")
    N = signatures.shape[0]
    banded = signatures[:, :bands * rows].reshape(N, bands, rows)                      # (N, b, r)
    return np.stack([np.unique(banded[:, j], axis=0, return_inverse=True)[1].reshape(N)
                     for j in range(bands)], axis=1)


def candidate_pairs(buckets):
    """Every pair (i, j), i < j, that shares a bucket in some band: a sorted list of tuples."""
    pairs = set()
    for j in range(buckets.shape[1]):
        order = np.argsort(buckets[:, j], kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(buckets[order, j])) + 1)
        for group in groups:
            pairs.update(combinations(sorted(group.tolist()), 2))
    return sorted(pairs)


def minhash_duplicates(signatures, bands, rows, threshold):
    """Boolean (N,) array: True for a document that is a candidate of an earlier one with estimated Jaccard >=
    threshold (the earlier one is kept)."""
    duplicate = np.zeros(len(signatures), dtype=bool)
    for i, j in candidate_pairs(band_buckets(signatures, bands, rows)):
        if estimated_jaccard(signatures[i], signatures[j]) >= threshold:
            duplicate[j] = True
    return duplicate


def window_duplicate_fractions(documents, n=10):
    """For each document, the fraction of its n-word windows that occur in an earlier document: (N,) float64
    (0 for a document shorter than n words)."""
    seen, fractions = set(), []
    for document in documents:
        words = document.split()
        windows = {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
        fractions.append(len(windows & seen) / len(windows) if windows else 0.0)
        seen |= windows
    return np.array(fractions)
