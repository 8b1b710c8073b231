"""Self-checks for chapter 04: every answer is compared with a PyTorch formulation of the same quantity.

Run them with `make check CH=04`. Each test calls your function; one you have not written yet raises
ExerciseNotDone and the test fails with "not yet". The random exercises are also checked statistically: many
draws must follow the probabilities they claim (bounds at about 5 standard deviations, so a correct answer
fails about once in a million runs).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from book.exercises import assert_matches, no_numpy_warnings, load_exercises

ex = load_exercises("04_masked_language_models")
IGNORE = -100


def T(array):
    return torch.from_numpy(np.asarray(array))


def ids(shape, vocab, seed):
    return np.random.default_rng(seed).integers(0, vocab, size=shape, dtype=np.int64)


# ---- 04.1 80/10/10 masking ----------------------------------------------------------------------

@pytest.mark.exercise("04.1")
def test_mlm_actions_thresholds():
    """Exactly at and around the edges of the split, against torch.bucketize."""
    u = np.array([[0.0, 0.5, 0.7999, 0.8, 0.85, 0.8999, 0.9, 0.95, 0.99999]])
    want = torch.bucketize(T(u), T(np.cumsum([0.8, 0.1, 0.1])[:2]), right=True)
    assert_matches("actions", ex.mlm_actions(u), want)
    u = np.random.default_rng(0).random((3, 7))
    want = torch.bucketize(T(u), T(np.cumsum([0.5, 0.3, 0.2])[:2]), right=True)
    assert_matches("actions, split (0.5, 0.3, 0.2)", ex.mlm_actions(u, (0.5, 0.3, 0.2)), want)


@pytest.mark.exercise("04.1")
def test_mlm_actions_follow_the_split():
    """Over 200k uniform draws, the fractions of MASK / RANDOM / KEEP are 0.8 / 0.1 / 0.1 within 5 sigma."""
    n = 200_000
    actions = np.asarray(ex.mlm_actions(np.random.default_rng(1).random((4, n // 4))))
    for action, p in zip(range(3), (0.8, 0.1, 0.1)):
        share = (actions == action).mean()
        assert abs(share - p) < 5 * np.sqrt(p * (1 - p) / n), f"action {action}: share {share:.4f}, expected {p}"


@pytest.mark.exercise("04.1")
@pytest.mark.parametrize("B, T_", [(2, 9), (1, 1), (3, 17)], ids=str)
def test_apply_mlm_masking(B, T_):
    rng = np.random.default_rng(B * 100 + T_)
    x, random_ids = ids((B, T_), 50, 2), ids((B, T_), 50, 3)
    selected = rng.random((B, T_)) < 0.5
    action = rng.integers(0, 3, size=(B, T_))
    inputs, labels = ex.apply_mlm_masking(x, selected, action, random_ids, 99)
    tx, ts, ta = T(x), T(selected), T(action)
    want = torch.where(ts & (ta == 0), 99, torch.where(ts & (ta == 1), T(random_ids), tx))
    assert_matches("inputs", inputs, want)
    assert_matches("labels", labels, torch.where(ts, tx, IGNORE))
    assert np.asarray(inputs).dtype == np.int64 and np.asarray(labels).dtype == np.int64, "return int64 ids"


@pytest.mark.exercise("04.1")
def test_mlm_labels_feed_cross_entropy():
    """The labels select exactly the selected positions of torch's cross_entropy (ignore_index=-100)."""
    rng = np.random.default_rng(4)
    x = ids((2, 6), 11, 5)
    selected = np.array([[1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 1]], dtype=bool)
    _, labels = ex.apply_mlm_masking(x, selected, np.full((2, 6), 2), x, 10)
    logits = T(rng.standard_normal((2, 6, 11)))
    got = F.cross_entropy(logits.reshape(-1, 11), T(labels).reshape(-1), ignore_index=IGNORE)
    want = F.cross_entropy(logits[T(selected)], T(x)[T(selected)])
    assert_matches("loss over the selected positions", got, want)


# ---- 04.2 Gumbel-max sampling -------------------------------------------------------------------

@pytest.mark.exercise("04.2")
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_gumbel_max_matches_torch(temperature):
    """The same noise through torch's formulation: argmax(z / tau - log(-log u))."""
    rng = np.random.default_rng(6)
    logits, u = 3 * rng.standard_normal((2, 5, 13)), rng.random((2, 5, 13))
    want = torch.argmax(T(logits) / temperature - torch.log(-torch.log(T(u))), dim=-1)
    got = no_numpy_warnings(ex.gumbel_max_sample, logits, u, temperature)
    assert_matches("samples", got, want)
    assert np.asarray(got).shape == (2, 5)


@pytest.mark.exercise("04.2")
def test_gumbel_max_samples_the_softmax():
    """60k samples of one row: the frequency of every id is softmax(z / tau) within 5 sigma."""
    rng = np.random.default_rng(7)
    logits, n, tau = np.array([2.0, 0.5, 0.0, -1.0, 1.5]), 60_000, 0.8
    samples = np.asarray(ex.gumbel_max_sample(np.broadcast_to(logits, (n, 5)), rng.random((n, 5)), tau))
    p = torch.softmax(T(logits) / tau, dim=0).numpy()
    freq = np.bincount(samples, minlength=5) / n
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n)), f"frequencies {freq.round(4)}, softmax {p.round(4)}"


# ---- 04.3 discriminator labels ------------------------------------------------------------------

@pytest.mark.exercise("04.3")
def test_replaced_labels():
    """Differs and real -> 1; a sample equal to the original -> 0; padding -> 0."""
    original = ids((3, 8), 6, 8)
    corrupted = np.where(np.random.default_rng(9).random((3, 8)) < 0.5, ids((3, 8), 6, 10), original)
    mask = np.ones((3, 8), dtype=np.int64)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    want = ((T(original) != T(corrupted)) & (T(mask) != 0)).long()
    got = ex.replaced_labels(original, corrupted, mask)
    assert_matches("labels", got, want)
    assert ((corrupted == original) & (np.asarray(got) == 1)).sum() == 0


# ---- 04.4 the weighted ELECTRA loss -------------------------------------------------------------

def torch_electra(gen_logits, mlm_labels, disc_logits, disc_labels, mask, weight):
    g, d = T(gen_logits).requires_grad_(), T(disc_logits).requires_grad_()
    V = gen_logits.shape[-1]
    mlm = F.cross_entropy(g.reshape(-1, V), T(mlm_labels).reshape(-1), ignore_index=IGNORE)
    real = T(mask).bool()
    disc = F.binary_cross_entropy_with_logits(d[real], T(disc_labels)[real].double())
    loss = mlm + weight * disc
    loss.backward()
    return loss, g.grad, d.grad


@pytest.mark.exercise("04.4")
@pytest.mark.parametrize("B, T_, V, weight, spread", [(2, 7, 11, 50.0, 1.0), (1, 3, 2, 1.0, 1.0),
                                                      (3, 5, 9, 50.0, 800.0)], ids=str)
def test_electra_loss_and_gradients(B, T_, V, weight, spread):
    """Loss and both gradients against torch autograd; spread 800 checks the stable log-softmax and BCE."""
    rng = np.random.default_rng(B + T_ + V)
    gen_logits, disc_logits = spread * rng.standard_normal((B, T_, V)), spread * rng.standard_normal((B, T_))
    mask = np.ones((B, T_), dtype=np.int64)
    mask[-1, T_ // 2 + 1:] = 0
    mlm_labels = np.where((rng.random((B, T_)) < 0.4) & (mask == 1), ids((B, T_), V, 11), IGNORE)
    mlm_labels[0, 0] = 1                                            # at least one labeled position
    disc_labels = rng.integers(0, 2, size=(B, T_))
    loss, d_gen, d_disc = no_numpy_warnings(ex.electra_loss, gen_logits, mlm_labels, disc_logits, disc_labels,
                                            mask, weight)
    want_loss, want_gen, want_disc = torch_electra(gen_logits, mlm_labels, disc_logits, disc_labels, mask, weight)
    assert_matches("loss", loss, want_loss)
    assert_matches("dL/dgen_logits", d_gen, want_gen)
    assert_matches("dL/ddisc_logits", d_disc, want_disc)


# ---- 04.5 C-RTS cluster probabilities -----------------------------------------------------------

@pytest.mark.exercise("04.5")
@pytest.mark.parametrize("beta", [2.0, 0.5])
def test_target_cluster_probabilities(beta):
    counts = np.array([[1.0, 1.0, 1.0, 1.0], [5.0, -3.0, 2.0, 9.0], [0.0, 4.0, 4.0, 4.0], [7.0, 7.0, 6.0, 7.0]])
    c = T(counts)
    low, high = c.min(dim=1, keepdim=True).values, c.max(dim=1, keepdim=True).values
    want = torch.softmax(beta * torch.nan_to_num((c - low) / (high - low), nan=0.0), dim=1)
    got = no_numpy_warnings(ex.target_cluster_probabilities, counts, beta)
    assert_matches("P", got, want)
    assert_matches("flat row is uniform", np.asarray(got)[0], np.full(4, 0.25))


# ---- 04.6 the C-RTS count update ----------------------------------------------------------------

@pytest.mark.exercise("04.6")
def test_update_cluster_counts():
    """Against torch's index_put_(accumulate=True); repeated (s, k) pairs in one batch all count."""
    rng = np.random.default_rng(12)
    V, K = 20, 4
    clusters = rng.integers(0, K, size=V)
    clusters[:K] = np.arange(K)                                     # every cluster used
    original = ids((3, 10), V, 13)
    corrupted = np.where(rng.random((3, 10)) < 0.6, ids((3, 10), V, 14), original)
    corrupted[0, :4], original[0, :4] = 1, 0                        # four hits on the same pair (0, 1)
    predictions = rng.integers(0, 2, size=(3, 10))
    mask = np.ones((3, 10), dtype=np.int64)
    mask[2, 6:] = 0
    counts = rng.integers(-3, 4, size=(K, K)).astype(np.float64)
    before = counts.copy()
    got = ex.update_cluster_counts(counts, clusters, original, corrupted, predictions, mask)
    assert np.array_equal(counts, before), "update_cluster_counts must not modify its input"
    replaced = (T(original) != T(corrupted)) & T(mask).bool()
    tc = T(clusters)
    step = torch.where(T(predictions)[replaced] == 1, -1.0, 1.0).double()
    want = T(counts).clone().index_put_((tc[T(original)[replaced]], tc[T(corrupted)[replaced]]), step,
                                        accumulate=True)
    assert_matches("counts", got, want)


# ---- 04.7 MEAP inputs and targets ---------------------------------------------------------------

@pytest.mark.exercise("04.7")
@pytest.mark.parametrize("B, T_, ratio", [(3, 20, 0.15), (2, 4, 0.15), (1, 9, 0.5)], ids=str)
def test_meap_inputs_and_targets(B, T_, ratio):
    """The n smallest draws of each row masked (torch.topk), targets the original next tokens."""
    rng = np.random.default_rng(B * T_)
    tokens, u = ids((B, T_ + 1), 30, 15), rng.random((B, T_))
    inputs, targets = ex.meap_inputs_and_targets(tokens, u, ratio, 99)
    n = max(1, int(ratio * T_))
    chosen = torch.zeros(B, T_, dtype=torch.bool)
    chosen.scatter_(1, torch.topk(T(u), n, dim=1, largest=False).indices, True)
    assert_matches("inputs", inputs, torch.where(chosen, 99, T(tokens)[:, :T_]))
    assert_matches("targets", targets, T(tokens)[:, 1:])


@pytest.mark.exercise("04.7")
def test_meap_masks_differ_per_row():
    """Rows with different draws get different positions (the official code's shared mask is the bug to avoid)."""
    rng = np.random.default_rng(16)
    tokens = np.ones((50, 41), dtype=np.int64)
    inputs, _ = ex.meap_inputs_and_targets(tokens, rng.random((50, 40)), 0.15, 0)
    patterns = {tuple(np.flatnonzero(np.asarray(row) == 0)) for row in inputs}
    assert all(len(p) == 6 for p in patterns), "each row masks int(0.15 * 40) = 6 positions"
    assert len(patterns) > 40, f"only {len(patterns)} distinct mask patterns in 50 rows"
