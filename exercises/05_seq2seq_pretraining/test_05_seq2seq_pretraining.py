"""Self-checks for chapter 05: every answer is compared with a PyTorch formulation of the same quantity or with
the rouge-score package (NSE's write against torch.lerp, the pointer-generator against scatter_add_).

Run them with `make check CH=05`. Each test calls your function; one you have not written yet raises
ExerciseNotDone and the test fails with "not yet".
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer

from book.exercises import assert_matches, load_exercises, no_numpy_warnings

ex = load_exercises("05_seq2seq_pretraining")
M = -1                                                       # the mask id in these checks (never a real token)


def T(array):
    return torch.from_numpy(np.asarray(array))


# ---- 05.1 text infilling -------------------------------------------------------------------------

def torch_infilling(tokens, lengths, gaps, mask_id):
    """Sort kept tokens and masks by a key: kept token at original position t -> 2t + 1; the mask of span j,
    which starts at original position gaps[j] + lengths[:j].sum() -> twice that (just before it)."""
    tokens, lengths, gaps = T(tokens), T(lengths), T(gaps)
    span_starts = gaps + torch.cumsum(lengths, 0) - lengths                     # (k,) original positions
    hidden = torch.zeros(len(tokens), dtype=torch.bool)
    for start, length in zip(span_starts.tolist(), lengths.tolist()):
        hidden[start:start + length] = True
    kept = torch.nonzero(~hidden).flatten()
    keys = torch.cat([2 * kept + 1, 2 * span_starts])
    values = torch.cat([tokens[kept], torch.full((len(span_starts),), mask_id)])
    return values[torch.argsort(keys, stable=True)]


@pytest.mark.exercise("05.1")
def test_span_infilling_hand_made():
    tokens = np.arange(10, 20)
    got = ex.span_infilling(tokens, np.array([2, 0, 1]), np.array([1, 3, 7]), M)
    assert_matches("infilling", got, np.array([10, M, 13, 14, M, 15, 16, 17, 18, M]))
    assert_matches("one span hiding everything", ex.span_infilling(tokens, np.array([10]), np.array([0]), M),
                   np.array([M]))
    assert_matches("no spans", ex.span_infilling(tokens, np.zeros(0, int), np.zeros(0, int), M), tokens)


@pytest.mark.exercise("05.1")
def test_span_infilling_matches_torch_on_random_draws():
    """Random Poisson(3) spans in random distinct gaps, 300 sequences of odd lengths."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        lengths = rng.poisson(3.0, size=int(rng.integers(0, 5)))
        lengths = lengths[np.cumsum(lengths) <= n]
        free = n - lengths.sum() + 1
        lengths = lengths[:free]
        gaps = np.sort(rng.choice(free, size=len(lengths), replace=False))
        tokens = rng.integers(0, 1000, size=n)
        assert_matches(f"infilling of n={n}, lengths {lengths.tolist()}, gaps {gaps.tolist()}",
                       ex.span_infilling(tokens, lengths, gaps, M), torch_infilling(tokens, lengths, gaps, M))


# ---- 05.2 trigram shuffle --------------------------------------------------------------------------

def torch_shuffle(tokens, starts, orders):
    index = torch.arange(len(tokens))
    labels = torch.zeros(len(tokens), dtype=torch.int64)
    for start, order in zip(starts.tolist(), orders.tolist()):
        index[start:start + 3] = start + T(ex.ORDERS[order])
        labels[start:start + 3] = 1
    return torch.gather(T(tokens), 0, index), labels


@pytest.mark.exercise("05.2")
def test_shuffle_trigrams_hand_made():
    tokens = np.array([10, 11, 12, 13, 14, 15, 16, 17])
    shuffled, labels = ex.shuffle_trigrams(tokens, np.array([1, 5]), np.array([4, 2]))
    assert_matches("shuffled", shuffled, np.array([10, 13, 12, 11, 14, 16, 17, 15]))
    assert_matches("labels", labels, np.array([0, 1, 1, 1, 0, 1, 1, 1]))
    assert_matches("the input is left alone", tokens, np.array([10, 11, 12, 13, 14, 15, 16, 17]))


@pytest.mark.exercise("05.2")
def test_shuffle_trigrams_matches_torch_and_counts_every_class():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(3, 50))
        starts = np.array(sorted(s for s in range(0, n - 2, 3) if rng.random() < 0.4), dtype=np.int64)
        orders = rng.integers(0, 5, size=len(starts))
        tokens = rng.integers(0, 500, size=n)
        shuffled, labels = ex.shuffle_trigrams(tokens, starts, orders)
        want_tokens, want_labels = torch_shuffle(tokens, starts, orders)
        assert_matches("shuffled", shuffled, want_tokens)
        assert_matches("labels", labels, want_labels)
    # a loss over these labels must see the shuffled class: with ignore_index=1 (the official code) it would not
    logits = torch.zeros(len(labels), 3, requires_grad=True)
    F.cross_entropy(logits, T(labels)).backward()
    assert (logits.grad[T(labels) == 1, 1] < 0).all(), "shuffled positions must push up the 'shuffled' logit"


# ---- 05.3 NT-Xent ----------------------------------------------------------------------------------

def torch_nt_xent(z1, z2, temperature):
    u = F.normalize(torch.cat([T(z1), T(z2)]), dim=1)
    n = len(u)
    similarity = (u @ u.T / temperature).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(similarity, (torch.arange(n) + n // 2) % n)


@pytest.mark.exercise("05.3")
@pytest.mark.parametrize("B,C,temperature", [(2, 3, 1.0), (5, 7, 0.1), (16, 4, 0.05)])
def test_nt_xent_matches_torch(B, C, temperature):
    rng = np.random.default_rng(B)
    z1, z2 = rng.normal(size=(B, C)) * 3, rng.normal(size=(B, C))
    got = no_numpy_warnings(ex.nt_xent, z1, z2, temperature)
    assert_matches("NT-Xent", got, torch_nt_xent(z1, z2, temperature))


@pytest.mark.exercise("05.3")
def test_nt_xent_extremes():
    """Identical views that are orthogonal to everything else: the loss tends to 0 as the temperature falls;
    at temperature 0.01 it is far below log(2B - 1), the loss of a model that cannot tell the pairs apart."""
    z = np.eye(4)
    assert_matches("orthogonal pairs", no_numpy_warnings(ex.nt_xent, z, z, 0.01), torch_nt_xent(z, z, 0.01))
    assert no_numpy_warnings(ex.nt_xent, z, z, 0.01) < 1e-6 < math.log(7)
    same = np.ones((3, 2))
    assert_matches("all vectors equal: log(2B - 1)", ex.nt_xent(same, same, 0.5), np.array(math.log(5)))


# ---- 05.4 ROUGE-L ------------------------------------------------------------------------------------

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
PAIRS = [("the cat sat on the mat", "the cat on the mat"), ("", ""), ("", "words"), ("?!", "..."),
         ("To be, or not to be", "to be to be"), ("O'er the hill", "o er hill"), ("a b c d", "d c b a"),
         ("Ay, MADAM!", "ay madam ay madam"), ("42 knights", "knights 42"), ("word", "word " * 30)]


@pytest.mark.exercise("05.4")
@pytest.mark.parametrize("target,prediction", PAIRS)
def test_rouge_l_matches_rouge_score(target, prediction):
    want = SCORER.score(target, prediction)["rougeL"]
    assert_matches(f"ROUGE-L of {target!r} vs {prediction!r}", np.array(ex.rouge_l(target, prediction)),
                   np.array(tuple(want)))


@pytest.mark.exercise("05.4")
def test_rouge_l_on_shuffled_lines():
    """Random lines against shuffled or truncated copies of themselves (LCS well below the length)."""
    rng = np.random.default_rng(2)
    vocabulary = "thou art more lovely and temperate rough winds do shake the darling buds of may".split()
    for _ in range(150):
        words = list(rng.choice(vocabulary, size=int(rng.integers(1, 16))))
        target = " ".join(words)
        prediction = " ".join(rng.permutation(words)[: int(rng.integers(0, len(words) + 1))])
        want = SCORER.score(target, prediction)["rougeL"]
        assert_matches(f"ROUGE-L of {target!r} vs {prediction!r}", np.array(ex.rouge_l(target, prediction)),
                       np.array(tuple(want)))


# ---- 05.5 one NSE memory write ------------------------------------------------------------------

def _nse_write_inputs(B, N, D, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, N + 1, size=B)
    scores = np.where(np.arange(N) < lengths[:, None], rng.standard_normal((B, N)), -np.inf)
    return rng.standard_normal((B, N, D)), torch.softmax(torch.from_numpy(scores), -1).numpy(), \
        rng.standard_normal((B, D))


@pytest.mark.exercise("05.5")
def test_nse_memory_write_against_torch_lerp():
    """M (1 - z 1^T) + z h^T is torch.lerp(M, h, z) slot by slot; odd sizes, padded slots (z = 0 there)."""
    memory, z, h = _nse_write_inputs(3, 7, 5, seed=0)
    want = torch.lerp(torch.from_numpy(memory), torch.from_numpy(h)[:, None, :].expand(-1, 7, -1),
                      torch.from_numpy(z)[:, :, None])
    assert_matches("new memory", ex.nse_memory_write(memory, z, h), want)


@pytest.mark.exercise("05.5")
def test_nse_memory_write_extremes_and_padded_steps():
    """A slot with z = 1 becomes h, z = 0 slots keep their content, and a padded time step changes nothing."""
    memory, _, h = _nse_write_inputs(2, 4, 3, seed=1)
    z = np.array([[0.0, 1.0, 0.0, 0.0], [0.25, 0.25, 0.5, 0.0]])
    got = np.asarray(ex.nse_memory_write(memory, z, h))
    assert_matches("slot with z = 1", got[0, 1], h[0])
    assert_matches("slots with z = 0", got[0, [0, 2, 3]], memory[0, [0, 2, 3]])
    keep = np.array([True, False])
    got = np.asarray(ex.nse_memory_write(memory, z, h, keep=keep))
    assert_matches("padded time step (keep False)", got[1], memory[1])
    want = torch.lerp(torch.from_numpy(memory[0]), torch.from_numpy(h[0]).expand(4, -1), torch.from_numpy(z[0])[:, None])
    assert_matches("kept row", got[0], want)


# ---- 05.6 the pointer-generator mixture ----------------------------------------------------------

@pytest.mark.exercise("05.6")
def test_pointer_generator_mixture_against_torch_scatter_add():
    """Against scatter_add_ onto the vocabulary, with repeated source ids and padding (weight 0 on PAD = 0)."""
    rng = np.random.default_rng(2)
    B, S, V = 3, 9, 11
    src = rng.integers(1, 5, size=(B, S))                                # few ids: many repeats
    src[1, 6:] = 0                                                       # padding
    scores = np.where(src != 0, rng.standard_normal((B, S)), -np.inf)
    z = torch.softmax(torch.from_numpy(scores), -1)
    p_vocab = torch.softmax(torch.from_numpy(rng.standard_normal((B, V))), -1)
    p_gen = torch.sigmoid(torch.from_numpy(rng.standard_normal(B)))
    p_copy = torch.zeros(B, V, dtype=torch.float64).scatter_add_(1, torch.from_numpy(src), z)
    want = p_gen[:, None] * p_vocab + (1 - p_gen[:, None]) * p_copy
    got = ex.pointer_generator_mixture(p_vocab.numpy(), p_gen.numpy(), z.numpy(), src)
    assert_matches("P(w)", got, want)
    assert_matches("row sums", np.asarray(got).sum(-1), np.ones(B))


@pytest.mark.exercise("05.6")
def test_pointer_generator_mixture_extremes():
    """p_gen = 1 is the generator alone; p_gen = 0 copies: all the mass on the source's ids."""
    p_vocab = np.full((2, 6), 1 / 6)
    z = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    src = np.array([[4, 4, 0], [1, 2, 1]])
    assert_matches("p_gen = 1", ex.pointer_generator_mixture(p_vocab, np.ones(2), z, src), p_vocab)
    want = np.array([[0, 0, 0, 0, 1.0, 0], [0, 0.7, 0.3, 0, 0, 0]])
    assert_matches("p_gen = 0", ex.pointer_generator_mixture(p_vocab, np.zeros(2), z, src), want)
