"""BART's noising functions, from BART: Denoising Sequence-to-Sequence Pre-training for Natural Language
Generation, Translation, and Comprehension (Lewis et al., 2019, arXiv:1910.13461).

BART corrupts a text x and trains an encoder-decoder to give the original back: the encoder reads the corrupted
x~, the decoder predicts x token by token (teacher forcing), L = -sum_t log p(x_t | x_<t, x~). The corruptions:

    text infilling:        m = ceil(rate * n) of the n tokens (rate 0.15) fall into spans whose lengths are
                           Poisson(lambda = 3) draws; each span, whatever its length, becomes ONE [MASK]; a
                           span of length 0 inserts a [MASK] (the model must learn that nothing is missing)
    sentence permutation:  the sentences (split after tokens that end one) are put in a random order
    token deletion:        k = round(rate * n) tokens are removed (no [MASK]: the model must find where)

Every random choice is an array that can be passed in: `draw_*(..., rng)` draws it from a NumPy Generator,
`apply_*` uses it. The functions work on one sequence (a 1-D id array) at a time, since the corrupted lengths
differ; `book.data.padding.pad_rows` then makes a batch.

How the spans are placed (`draw_span_infilling`). The lengths are drawn until they add up to at least m and the
last one is cut so that they add up to exactly m (as fairseq's DenoisingDataset does). The spans are then put
into distinct gaps between the n - m kept tokens (gap g = before the g-th kept token, g = 0 .. n - m), so no two
spans touch: every [MASK] stands for one span and exactly m of the n tokens are hidden, every time. fairseq instead
picks span starts at random word starts and lets spans overlap or run into each other, so its masked fraction
is slightly under the rate on average; here spans are over tokens, not whole words. If there are more spans
than gaps (possible only for very short sequences), zero-length spans are dropped first.
"""
import math
from collections import namedtuple

from minigrad.backend import np
from book.data.padding import pad_rows

SpanDraws = namedtuple("SpanDraws", ["lengths", "gaps"])
SpanDraws.__doc__ = """The draws of text infilling for one sequence: lengths int64 (k,), the spans' lengths in
order along the sequence (they add up to m, zeros allowed); gaps int64 (k,), strictly increasing, the gap among
the kept tokens where each span sits (gap g = just before the g-th kept token; g = n - m is the end)."""


def _check_tokens(op, tokens):
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise ValueError(f"{op}: expected a 1-D array of integer token ids, got {tokens.dtype} {tokens.shape}")
    return tokens.astype(np.int64)


# ---- text infilling -----------------------------------------------------------------------------

def num_masked(n, rate):
    """How many of n tokens text infilling hides: ceil(rate * n) (fairseq's count)."""
    return math.ceil(rate * n)


def draw_span_lengths(m, rng, poisson_lambda=3.0):
    """Poisson(lambda) span lengths, drawn until their sum reaches m, the last one cut so the sum is exactly m."""
    lengths = []
    while sum(lengths) < m:
        lengths.extend(rng.poisson(poisson_lambda, size=max(m, 4)).tolist())
    cumulative = np.cumsum(lengths)
    k = int(np.searchsorted(cumulative, m)) + 1 if m > 0 else 0       # the first k spans reach m
    lengths = np.array(lengths[:k], dtype=np.int64)
    if k:
        lengths[-1] -= cumulative[k - 1] - m
    return lengths


def draw_span_infilling(n, rng, rate=0.15, poisson_lambda=3.0):
    """SpanDraws for a sequence of n tokens: Poisson span lengths adding up to ceil(rate * n), in distinct gaps."""
    if n < 1 or not 0 <= rate < 1:
        raise ValueError(f"draw_span_infilling: need n >= 1 and 0 <= rate < 1, got n={n}, rate={rate}")
    m = num_masked(n, rate)
    lengths = draw_span_lengths(m, rng, poisson_lambda)
    free = n - m + 1                                                    # gaps among the n - m kept tokens
    while len(lengths) > free:                                          # too short a sequence: drop empty spans
        lengths = np.delete(lengths, np.flatnonzero(lengths == 0)[-1])
    gaps = np.sort(rng.choice(free, size=len(lengths), replace=False)).astype(np.int64)
    return SpanDraws(lengths, gaps)


def apply_span_infilling(tokens, draws: SpanDraws, mask_id):
    """The corrupted sequence: each span replaced by one mask_id (a zero-length span inserts one).

    tokens (n,) -> int64 (n - sum(lengths) + len(lengths),).
    """
    tokens = _check_tokens("apply_span_infilling", tokens)
    lengths, gaps = np.asarray(draws.lengths, dtype=np.int64), np.asarray(draws.gaps, dtype=np.int64)
    kept_total = len(tokens) - int(lengths.sum())
    if lengths.shape != gaps.shape or (lengths < 0).any() or kept_total < 0 or \
            (len(gaps) and (gaps[0] < 0 or gaps[-1] > kept_total or (np.diff(gaps) <= 0).any())):
        raise ValueError(f"apply_span_infilling: need lengths >= 0 and strictly increasing gaps in [0, "
                         f"{kept_total}] of one shape, for {len(tokens)} tokens; got lengths {lengths.tolist()}, "
                         f"gaps {gaps.tolist()}")
    out, position, kept = [], 0, 0                                      # position in tokens, kept tokens so far
    for length, gap in zip(lengths.tolist(), gaps.tolist()):
        out.extend(tokens[position:position + gap - kept].tolist())     # the kept tokens before this span
        position, kept = position + gap - kept, gap
        out.append(mask_id)
        position += length                                              # the span's tokens are hidden
    out.extend(tokens[position:].tolist())
    return np.array(out, dtype=np.int64)


def infilling_mask(n, draws: SpanDraws):
    """bool (n,): the original positions that text infilling hides (for counting and for tests)."""
    hidden = np.zeros(n, dtype=bool)
    position, kept = 0, 0
    for length, gap in zip(np.asarray(draws.lengths).tolist(), np.asarray(draws.gaps).tolist()):
        position, kept = position + gap - kept, gap
        hidden[position:position + length] = True
        position += length
    return hidden


# ---- sentence permutation and token deletion -------------------------------------------------------

def sentence_starts(tokens, ends_sentence):
    """int64 (s,): where each sentence begins; a sentence ends after a token t with ends_sentence[t] (a bool
    array over the vocabulary: ids whose text ends with '.', '!' or '?'). Text after the last end is a sentence."""
    tokens = _check_tokens("sentence_starts", tokens)
    ends = np.flatnonzero(np.asarray(ends_sentence)[tokens][:-1]) + 1
    return np.concatenate([[0], ends]).astype(np.int64) if len(tokens) else np.zeros(0, dtype=np.int64)


def draw_sentence_permutation(num_sentences, rng):
    """A uniformly random order of the sentences: int64 (s,)."""
    return rng.permutation(num_sentences).astype(np.int64)


def apply_sentence_permutation(tokens, starts, permutation):
    """The sentences (tokens[starts[i]:starts[i + 1]]) concatenated in the order `permutation`."""
    tokens = _check_tokens("apply_sentence_permutation", tokens)
    permutation = np.asarray(permutation)
    if sorted(permutation.tolist()) != list(range(len(starts))):
        raise ValueError(f"apply_sentence_permutation: permutation {permutation.tolist()} is not a permutation of "
                         f"the {len(starts)} sentences")
    sentences = np.split(tokens, np.asarray(starts)[1:])
    return np.concatenate([sentences[i] for i in permutation]) if len(tokens) else tokens


def draw_token_deletion(n, rng, rate=0.15):
    """bool (n,): exactly round(rate * n) positions, chosen uniformly without replacement, to delete."""
    deleted = np.zeros(n, dtype=bool)
    deleted[rng.choice(n, size=round(rate * n), replace=False)] = True
    return deleted


def apply_token_deletion(tokens, deleted):
    """tokens without the deleted positions."""
    tokens = _check_tokens("apply_token_deletion", tokens)
    deleted = np.asarray(deleted)
    if deleted.shape != tokens.shape or deleted.dtype != bool:
        raise ValueError(f"apply_token_deletion: deleted must be bool of shape {tokens.shape}, got "
                         f"{deleted.dtype} {deleted.shape}")
    return tokens[~deleted]


# ---- batches for the encoder-decoder ----------------------------------------------------------------

def denoising_batch(originals, corrupted, pad_id, bos_id, eos_id):
    """(src, tgt_in, targets), int64: src = [bos] + corrupted + [eos] (B, S) (BART's <s> ... </s>); the decoder
    reads tgt_in = [bos] + x and predicts targets = x + [eos] (B, T); padding = pad_id (ignored by the loss)."""
    src = pad_rows([np.concatenate([[bos_id], c, [eos_id]]) for c in corrupted], pad_id)
    tgt_in = pad_rows([np.insert(np.asarray(x), 0, bos_id) for x in originals], pad_id)
    targets = pad_rows([np.append(x, eos_id) for x in originals], pad_id)
    return src, tgt_in, targets
