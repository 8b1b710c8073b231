"""Chapter 12 exercises: pretraining, written on plain Python and NumPy.

Each function stands alone: it needs NumPy and, for 12.2, the given fmix32 of book.pretraining.dedup. The
self-checks in test_12_pretraining.py compare every answer with a reference: a PyTorch formulation of the same
quantity (MP3's mask through nn.MultiheadAttention, TERA's alteration, a GPT's parameters and FLOPs counted by
torch), the datasketch package (MinHash signatures, LSH candidates, the banding curve's integrals) on the same
inputs, or scipy.stats.linregress (the power-law fit).
"""
import numpy as np

from book.exercises import ExerciseNotDone  # noqa: F401  (the reader's copy raises it)
from book.pretraining.dedup import fmix32  # given: MurmurHash3's 32-bit finalizer, a bijection of uint32

MASK32 = np.uint64(0xFFFFFFFF)


# ---------------------------------------------------------------------------------------------
# The data pipeline (notebook 01_data_pipeline)
# ---------------------------------------------------------------------------------------------

def duplicate_ngram_char_fraction(words, n):
    """Exercise 12.1: Gopher's duplicate n-gram character fraction (01_data_pipeline, section 1).

    words: a list of str (a document's whitespace-separated words); n >= 1.
    returns a float: the characters of the words covered by the SECOND OR LATER occurrence of some word n-gram,
    each word counted once however many repeated n-grams cover it, divided by the characters of all words.
    0.0 when the document has fewer than n words. Example: "ab c ab c ab c d" with n = 2 gives 6 / 10 (the
    n-grams at positions 2, 3, 4 repeat earlier ones and cover the words 2..5).
    """
    # BEGIN SOLUTION 12.1 (about 10 lines; see 01_data_pipeline, section 1)
    total = sum(len(w) for w in words)
    if len(words) < n or total == 0:
        return 0.0
    covered = np.zeros(len(words), dtype=bool)
    seen = set()
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        if gram in seen:
            covered[i:i + n] = True
        seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered) if c) / total
    # END SOLUTION


def minhash_signature(hashes, a, b):
    """Exercise 12.2: a MinHash signature (01_data_pipeline, section 3).

    hashes: (m,) uint32, the 32-bit hashes of a document's shingles; a, b: (k,) uint32, a odd.
    returns (k,) uint32: signature_i = min over the hashes h of (a_i * fmix32(h) + b_i) mod 2^32.
    (Compute in uint64 and mask: a 32-bit product of two 32-bit numbers needs 64 bits before the modulo.)
    """
    # BEGIN SOLUTION 12.2 (about 3 lines; see 01_data_pipeline, section 3)
    mixed = fmix32(hashes).astype(np.uint64)[:, None]                                   # (m, 1)
    permuted = (np.asarray(a, dtype=np.uint64) * mixed + np.asarray(b, dtype=np.uint64)) & MASK32  # (m, k)
    return permuted.min(axis=0).astype(np.uint32)
    # END SOLUTION


def candidate_probability(s, bands, rows):
    """Exercise 12.3a: the probability that two documents of Jaccard similarity s share at least one band
    (01_data_pipeline, section 3). s: a float or an array; returns the same shape."""
    # BEGIN SOLUTION 12.3 (one line; see 01_data_pipeline, section 3)
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands
    # END SOLUTION


def band_keys(signature, bands, rows):
    """Exercise 12.3b: the LSH band keys of one signature (01_data_pipeline, section 3).

    signature: (k,) uint32 with k >= bands * rows. returns a list of `bands` hashable keys: key j stands for
    the rows j*rows .. (j+1)*rows - 1, so two documents share key j exactly when those rows are all equal.
    """
    # BEGIN SOLUTION 12.3 (about 2 lines; see 01_data_pipeline, section 3)
    signature = np.asarray(signature)
    return [signature[j * rows:(j + 1) * rows].tobytes() for j in range(bands)]
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Position prediction, MP3 (notebook 02_position_prediction, section 2)
# ---------------------------------------------------------------------------------------------

def mp3_attention_mask(u, attention_mask, eta, num_heads):
    """Exercise 12.4: MP3's visible subset and the attention mask that hides every other key.

    u: (B, T) uniform draws in [0, 1), one per token; attention_mask: (B, T) 0/1, 1 on real tokens (each row has
    one); eta: the masking ratio in [0, 1); num_heads: H.
    returns (visible bool (B, T), mask bool (B * H, T, T)):
      - in a row with n real tokens, the floor(eta * n) real tokens with the SMALLEST u are masked, the others are
        visible; padding is never visible;
      - mask[b * H + h, i, j] is True where query i may NOT look at key j (nn.MultiheadAttention's convention), that
        is where token j is not visible; the same for every query i (masked tokens are queries too) and every head.
    No loop over rows is needed: the rank of each u within its row says whether it is among the smallest.
    """
    # BEGIN SOLUTION 12.4 (about 7 lines; see 02_position_prediction, section 2)
    real = attention_mask.astype(bool)
    B, T = real.shape
    ranks = np.argsort(np.argsort(np.where(real, u, 2.0), axis=1), axis=1)   # padding ranks after every real token
    num_masked = np.floor(eta * real.sum(axis=1)).astype(np.int64)           # (B,)
    visible = real & (ranks >= num_masked[:, None])
    mask = np.broadcast_to(~visible[:, None, None, :], (B, num_heads, T, T)).reshape(B * num_heads, T, T)
    return visible, mask
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# TERA (notebook 03_tera, section 2)
# ---------------------------------------------------------------------------------------------

ZERO, REPLACE, KEEP = 0, 1, 2


def tera_time_alteration(x, starts, sources, action, span=7):
    """Exercise 12.5: TERA's time alteration, from its draws.

    x: (B, T, D) spectrograms; starts, sources: (B, K) int64 span starts and replacement starts, -1 where a row has
    fewer than K spans; action: (B,) ZERO, REPLACE or KEEP for the whole utterance; span: W frames.
    returns (altered (B, T, D), frames bool (B, T)):
      - frames[b, t] is True on every frame of every chosen span [starts[b, k], starts[b, k] + W), whatever the
        action: the loss is computed there even when the frames were kept;
      - ZERO: those frames are 0; REPLACE: frame starts[b, k] + j becomes x[b, sources[b, k] + j], always read from
        the ORIGINAL x, and where spans overlap the later span (larger k) wins; KEEP: x unchanged.
    x itself must not be modified.
    """
    # BEGIN SOLUTION 12.5 (about 12 lines; see 03_tera, section 2)
    B, T, _ = x.shape
    frames = np.zeros((B, T), dtype=bool)
    read_from = np.tile(np.arange(T), (B, 1))                                 # (B, T) the frame each one copies
    for b in range(B):
        for s, r in zip(starts[b], sources[b]):
            if s < 0:
                continue
            frames[b, s:s + span] = True
            if action[b] == REPLACE:
                read_from[b, s:s + span] = np.arange(r, r + span)
    altered = np.take_along_axis(x, read_from[:, :, None], axis=1)
    zeroed = frames & (np.asarray(action) == ZERO)[:, None]
    return np.where(zeroed[:, :, None], 0.0, altered).astype(x.dtype), frames
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Scaling laws (notebook 04_scaling)
# ---------------------------------------------------------------------------------------------

def gpt_parameter_count(n_layer, n_embd, vocab_size, block_size):
    """Exercise 12.6a: the parameters of a GPT-2-style model (book.models.gpt.GPT: biases everywhere, LayerNorms with
    a gain and a bias, an MLP of width 4 n_embd, an untied output layer without bias).

    returns (non_embedding, total): non_embedding counts the blocks and the final LayerNorm (Kaplan's N, exact, not
    the 12 n_layer d^2 approximation); total adds the token embedding (vocab_size, d), the position embedding
    (block_size, d) and the output layer (vocab_size, d).
    """
    # BEGIN SOLUTION 12.6 (about 5 lines; see 04_scaling, section 1)
    d = n_embd
    per_block = 12 * d * d + 9 * d + 4 * d          # Q K V + output, MLP in + out; their biases; two LayerNorms
    non_embedding = n_layer * per_block + 2 * d      # the final LayerNorm
    return non_embedding, non_embedding + (2 * vocab_size + block_size) * d
    # END SOLUTION


def gpt_training_flops(n_layer, n_embd, vocab_size, n_tokens):
    """Exercise 12.6b: the matrix-product FLOPs of training that GPT on n_tokens tokens, attention's T x T
    products left out.

    A token passes through every weight matrix of the blocks (12 n_layer d^2 weights) and through the output layer
    (vocab_size d); the token embedding is a lookup. Each weight costs 2 FLOPs per token forward (multiply, add)
    and 4 backward (the gradient of the input and of the weight). returns 6 x weights x n_tokens, a Python int.
    """
    # BEGIN SOLUTION 12.6 (about 2 lines; see 04_scaling, section 1)
    weights = 12 * n_layer * n_embd * n_embd + vocab_size * n_embd
    return 6 * weights * n_tokens
    # END SOLUTION


def fit_power_law(x, y):
    """Exercise 12.7: fit y = a x^k by least squares in log space (log y = log a + k log x).

    x, y: 1-D arrays of positive floats of the same length n >= 3.
    returns (k, a, k_se): the exponent, the coefficient and the standard error of the exponent,
    k_se = sqrt(s^2 / sum((log x - mean(log x))^2)) with s^2 = (sum of squared residuals in log space) / (n - 2).
    """
    # BEGIN SOLUTION 12.7 (about 7 lines; see 04_scaling, section 3)
    lx, ly = np.log(x), np.log(y)
    centred = lx - lx.mean()
    k = (centred * (ly - ly.mean())).sum() / (centred ** 2).sum()
    log_a = ly.mean() - k * lx.mean()
    residual = ly - (log_a + k * lx)
    k_se = np.sqrt((residual ** 2).sum() / (len(lx) - 2) / (centred ** 2).sum())
    return float(k), float(np.exp(log_a)), float(k_se)
    # END SOLUTION
