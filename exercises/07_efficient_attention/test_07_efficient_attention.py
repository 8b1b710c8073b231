"""Self-checks for chapter 07: every answer is compared with a PyTorch formulation of the same quantity.

Run them with `make check CH=07`. Each test calls your function; one you have not written yet raises
ExerciseNotDone and the test fails with "not yet". Everything is float64; gradients are checked against
torch.autograd under a random upstream gradient; shapes are odd on purpose (T != S, D != Dv, tiles that do
not divide the length).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from book.exercises import assert_matches, no_numpy_warnings, load_exercises

ex = load_exercises("07_efficient_attention")


def rand(shape, seed, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(shape)


def T(array):
    return torch.from_numpy(np.asarray(array))


def tiles(n, size):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


# ---- 07.1 merging two softmax states ----------------------------------------------------------

@pytest.mark.exercise("07.1")
@pytest.mark.parametrize("T_, S, split, D, Dv, spread", [(5, 7, 3, 4, 3, 1.0), (1, 2, 1, 3, 5, 1.0),
                                                        (6, 11, 9, 8, 2, 30.0)], ids=str)
def test_merge_softmax_states(T_, S, split, D, Dv, spread):
    """Each half's state from torch (max, sum of exponentials, SDPA on that half); the merge against torch on all."""
    q, k, v = rand((T_, D), 1, spread), rand((S, D), 2), rand((S, Dv), 3)
    tq, tk, tv = T(q), T(k), T(v)
    scale = 1 / np.sqrt(D)
    states = []
    for part in (slice(0, split), slice(split, S)):
        x = tq @ tk[part].T * scale
        m = x.max(dim=1).values
        states += [m.numpy(), torch.exp(x - m[:, None]).sum(dim=1).numpy(),
                   F.scaled_dot_product_attention(tq, tk[part], tv[part]).numpy()]
    m, l, o = no_numpy_warnings(ex.merge_softmax_states, *states)
    x = tq @ tk.T * scale
    assert_matches("m", m, x.max(dim=1).values)
    assert_matches("m + log(l)", m + np.log(l), torch.logsumexp(x, dim=1))
    assert_matches("o", o, F.scaled_dot_product_attention(tq, tk, tv))


# ---- 07.2 the flash forward, tile by tile -------------------------------------------------------

@pytest.mark.exercise("07.2")
@pytest.mark.parametrize("T_, S, D, Dv, block, spread", [(7, 13, 4, 3, 4, 1.0), (3, 5, 2, 6, 1, 1.0),
                                                        (9, 10, 5, 5, 10, 1.0), (4, 17, 3, 2, 6, 40.0)], ids=str)
def test_flash_forward_tile(T_, S, D, Dv, block, spread):
    """Run the tiles from m = -inf, l = 0, acc = 0; acc / l is SDPA's output, m + log l torch's logsumexp."""
    q, k, v = rand((T_, D), 4, spread), rand((S, D), 5), rand((S, Dv), 6)
    scale = 1 / np.sqrt(D)
    m, l, acc = np.full(T_, -np.inf), np.zeros(T_), np.zeros((T_, Dv))
    for cols in tiles(S, block):
        m, l, acc = no_numpy_warnings(ex.flash_forward_tile, q, k[cols], v[cols], m, l, acc, scale)
    tq, tk, tv = T(q), T(k), T(v)
    assert_matches("acc / l", acc / l[:, None], F.scaled_dot_product_attention(tq, tk, tv))
    assert_matches("m + log(l)", m + np.log(l), torch.logsumexp(tq @ tk.T * scale, dim=1))


@pytest.mark.exercise("07.2")
def test_flash_forward_tile_is_one_step():
    """From an empty state, one tile gives that tile's max, its sum of exponentials, and sum_j e^(x_j - m) v_j."""
    q, k, v = rand((3, 4), 7), rand((5, 4), 8), rand((5, 2), 9)
    m, l, acc = ex.flash_forward_tile(q, k, v, np.full(3, -np.inf), np.zeros(3), np.zeros((3, 2)), 0.7)
    x = T(q) @ T(k).T * 0.7
    want_m = x.max(dim=1).values
    assert_matches("m", m, want_m)
    assert_matches("l", l, torch.exp(x - want_m[:, None]).sum(dim=1))
    assert_matches("acc", acc, torch.exp(x - want_m[:, None]) @ T(v))


# ---- 07.3 the flash backward, tile pair by tile pair --------------------------------------------

@pytest.mark.exercise("07.3")
@pytest.mark.parametrize("T_, S, D, Dv, bq, bk", [(7, 9, 4, 3, 3, 4), (5, 5, 2, 6, 5, 5), (6, 11, 3, 2, 4, 1)],
                         ids=str)
def test_flash_backward_tile(T_, S, D, Dv, bq, bk):
    """L and D = rowsum(dO * O) from torch's forward; the summed tile gradients against torch.autograd."""
    q, k, v, do = rand((T_, D), 10), rand((S, D), 11), rand((S, Dv), 12), rand((T_, Dv), 13)
    scale = 1 / np.sqrt(D)
    tq, tk, tv = (T(a).requires_grad_() for a in (q, k, v))
    out = F.scaled_dot_product_attention(tq, tk, tv)
    out.backward(T(do))
    lse = torch.logsumexp(tq @ tk.T * scale, dim=1).detach().numpy()
    delta = (out.detach().numpy() * do).sum(axis=1)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for rows in tiles(T_, bq):
        for cols in tiles(S, bk):
            a, b, c = ex.flash_backward_tile(q[rows], k[cols], v[cols], do[rows], lse[rows], delta[rows], scale)
            dq[rows] += a
            dk[cols] += b
            dv[cols] += c
    assert_matches("dq", dq, tq.grad)
    assert_matches("dk", dk, tk.grad)
    assert_matches("dv", dv, tv.grad)


# ---- 07.4 BASED's Taylor feature map ------------------------------------------------------------

@pytest.mark.exercise("07.4")
@pytest.mark.parametrize("q_shape, k_shape", [((5, 3), (7, 3)), ((2, 4, 16), (2, 6, 16)), ((1, 1), (2, 1))],
                         ids=str)
def test_based_feature_map(q_shape, k_shape):
    q, k = rand(q_shape, 14), rand(k_shape, 15)
    d = q_shape[-1]
    fq, fk = ex.based_feature_map(q), ex.based_feature_map(k)
    assert fq.shape == q_shape[:-1] + (1 + d + d * d,), f"phi(q) has shape {fq.shape}"
    dots = T(q) @ T(k).transpose(-1, -2)
    assert_matches("phi(q) . phi(k)", fq @ np.swapaxes(fk, -1, -2), 1 + dots / d ** 0.5 + dots ** 2 / (2 * d))


# ---- 07.5 chunked causal linear attention -------------------------------------------------------

@pytest.mark.exercise("07.5")
@pytest.mark.parametrize("n, D, Dv, chunk", [(11, 4, 3, 4), (6, 2, 5, 1), (9, 3, 3, 9), (10, 5, 2, 3)], ids=str)
def test_causal_linear_attention_chunk(n, D, Dv, chunk):
    """Chunk by chunk from a zero state against torch's whole-sequence masked form; the last state is K^T V."""
    q, k, v = rand((n, D), 16), rand((n, D), 17), rand((n, Dv), 18)
    state, outputs = np.zeros((D, Dv)), []
    for rows in tiles(n, chunk):
        o, state = ex.causal_linear_attention_chunk(q[rows], k[rows], v[rows], state)
        outputs.append(o)
    tq, tk, tv = T(q), T(k), T(v)
    assert_matches("outputs", np.concatenate(outputs), torch.tril(tq @ tk.T) @ tv)
    assert_matches("final state", state, tk.T @ tv)


# ---- 07.6 Lightning's decay mask ----------------------------------------------------------------

def torch_decayed_recurrence(q, k, v, lam):
    """o_i = q_i S_i with S_i = lam S_{i-1} + k_i^T v_i: the recurrent form the mask must reproduce."""
    state = torch.zeros(q.shape[1], v.shape[1], dtype=q.dtype)
    outputs = []
    for i in range(q.shape[0]):
        state = lam * state + torch.outer(k[i], v[i])
        outputs.append(q[i] @ state)
    return torch.stack(outputs)


@pytest.mark.exercise("07.6")
@pytest.mark.parametrize("n, lam", [(1, 0.5), (5, 0.9), (8, 1.0), (300, 0.01)], ids=str)
def test_decay_mask(n, lam):
    mask = no_numpy_warnings(ex.decay_mask, n, lam)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    want = torch.where(j <= i, torch.tensor(lam, dtype=torch.float64) ** (i - j).clamp(min=0), 0.0)
    assert_matches("decay mask", mask, want)


@pytest.mark.exercise("07.6")
def test_decay_mask_per_head_and_recurrence():
    """Per-head decays give one mask per head; (Q K^T * M) V equals the decayed recurrence, head by head."""
    lams = np.array([0.5, 0.8, 0.99])
    masks = ex.decay_mask(7, lams)
    assert masks.shape == (3, 7, 7), f"shape {masks.shape}, expected (3, 7, 7)"
    q, k, v = rand((7, 3), 19), rand((7, 3), 20), rand((7, 2), 21)
    for h, lam in enumerate(lams):
        assert_matches(f"head {h}", (q @ k.T * masks[h]) @ v, torch_decayed_recurrence(T(q), T(k), T(v), lam))


# ---- 07.7 k-means routing -----------------------------------------------------------------------

@pytest.mark.exercise("07.7")
@pytest.mark.parametrize("N, C, D, decay", [(20, 3, 4, 0.9), (7, 5, 2, 0.0), (1, 4, 3, 0.5)], ids=str)
def test_kmeans_assign_update(N, C, D, decay):
    """Assignments from torch.cdist; the EMA of the member means from torch's index_add."""
    x, centroids = rand((N, D), 22), rand((C, D), 23)
    assign, new = ex.kmeans_assign_update(x, centroids, decay)
    tx, tc = T(x), T(centroids)
    want_assign = torch.cdist(tx[None], tc[None])[0].argmin(dim=1)
    assert np.array_equal(np.asarray(assign), want_assign.numpy()), f"assignments {assign}, torch {want_assign}"
    sums = torch.zeros_like(tc).index_add_(0, want_assign, tx)
    counts = torch.bincount(want_assign, minlength=C).to(torch.float64)[:, None]
    moved = decay * tc + (1 - decay) * sums / counts.clamp(min=1)
    assert_matches("centroids", new, torch.where(counts > 0, moved, tc))


# ---- 07.8 LSSA weights --------------------------------------------------------------------------

def torch_lssa(q, k, causal, scale):
    T_, S = q.shape[0], k.shape[0]
    seen = torch.ones(T_, S, dtype=torch.bool)
    if causal:
        seen = torch.tril(seen)
    n = seen.sum(dim=1).to(q.dtype)
    x = (scale * torch.log(n))[:, None] * (q @ k.T)
    p = torch.where(seen, F.softplus(x, threshold=50.0), 0.0)
    return p / p.sum(dim=1, keepdim=True)


@pytest.mark.exercise("07.8")
@pytest.mark.parametrize("T_, S, D, causal, scale, spread", [(6, 6, 4, True, None, 1.0), (5, 9, 3, False, None, 1.0),
                                                            (8, 5, 2, True, 0.7, 1.0), (4, 4, 3, True, None, 60.0)],
                         ids=str)
def test_lssa_weights(T_, S, D, causal, scale, spread):
    q, k = rand((T_, D), 24, spread), rand((S, D), 25, spread)
    weights = no_numpy_warnings(ex.lssa_weights, q, k, causal, scale)
    assert_matches("LSSA weights", weights, torch_lssa(T(q), T(k), causal, 1 / np.sqrt(D) if scale is None else scale))


# ---- 07.9 shared key/value heads ----------------------------------------------------------------

@pytest.mark.exercise("07.9")
@pytest.mark.parametrize("Hq, H", [(8, 8), (8, 2), (6, 1), (6, 3)], ids=str)
def test_head_index(Hq, H):
    """Reading k[head_index(Hq, H)] is torch.repeat_interleave of the heads."""
    heads = np.arange(H)
    got = heads[ex.head_index(Hq, H)]
    assert_matches("heads read", got, torch.repeat_interleave(torch.arange(H), Hq // H))


@pytest.mark.exercise("07.9")
def test_head_index_rejects_uneven_groups():
    with pytest.raises(ValueError):
        ex.head_index(6, 4)


@pytest.mark.exercise("07.9")
@pytest.mark.parametrize("Hq, Hk, Hv", [(4, 4, 4), (6, 2, 2), (4, 1, 1), (8, 2, 4)], ids=str)
def test_grouped_attention(Hq, Hk, Hv):
    q, k, v = rand((Hq, 5, 3), 26), rand((Hk, 7, 3), 27), rand((Hv, 7, 2), 28)
    want = F.scaled_dot_product_attention(T(q), torch.repeat_interleave(T(k), Hq // Hk, dim=0),
                                          torch.repeat_interleave(T(v), Hq // Hv, dim=0))
    assert_matches("grouped attention", ex.grouped_attention(q, k, v), want)


@pytest.mark.exercise("07.9")
@pytest.mark.parametrize("Hq, H", [(8, 2), (6, 1), (5, 5)], ids=str)
def test_sum_head_gradients(Hq, H):
    """The gradient of torch.repeat_interleave under a random upstream gradient."""
    k = T(rand((H, 4, 3), 29)).requires_grad_()
    grad = rand((Hq, 4, 3), 30)
    torch.repeat_interleave(k, Hq // H, dim=0).backward(T(grad))
    assert_matches("head gradients", ex.sum_head_gradients(grad, H), k.grad)
