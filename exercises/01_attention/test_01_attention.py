"""Self-checks for chapter 01: every answer is compared with PyTorch on the same inputs.

Run them with `make check CH=01`. Each test calls your function; one you have not written yet raises
ExerciseNotDone and the test fails with "not yet". Everything is float64; gradients are checked under a
random upstream gradient (a plain .sum() would hide mistakes that cancel out); shapes are odd on purpose
(L != S, E != Ev, leading batch dims, single keys).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from book.exercises import assert_matches, no_numpy_warnings, load_exercises

ex = load_exercises("01_attention")


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def random_mask(shape, seed, keep=0.6):
    """A random boolean mask (True = may look) with at least one True in every row."""
    generator = np.random.default_rng(seed)
    mask = generator.random(shape) < keep
    first = generator.integers(0, shape[-1], shape[:-1])
    np.put_along_axis(mask, first[..., None], True, axis=-1)
    return mask


def T(array):
    return torch.from_numpy(np.asarray(array))


# ---- 01.1 attention_weights and scaled_dot_product_attention ---------------------------------

# (q shape, k shape, v shape, mask shape or None, scale)
SDPA_CASES = [
    ((4, 3), (5, 3), (5, 2), None, None),
    ((2, 7, 5), (2, 3, 5), (2, 3, 4), None, None),
    ((2, 3, 6, 4), (2, 3, 9, 4), (2, 3, 9, 5), (6, 9), None),           # one mask for every batch and head
    ((2, 3, 6, 4), (2, 3, 9, 4), (2, 3, 9, 5), (2, 1, 6, 9), None),     # one per batch, shared by the heads
    ((3, 5, 8), (3, 5, 8), (3, 5, 8), (3, 5, 5), 0.3),
    ((1, 1, 2), (1, 1, 2), (1, 1, 3), None, 2.0),                       # a single key
]


def torch_sdpa(q, k, v, mask=None, scale=None):
    return F.scaled_dot_product_attention(T(q), T(k), T(v), attn_mask=None if mask is None else T(mask),
                                          scale=scale)


@pytest.mark.exercise("01.1")
@pytest.mark.parametrize("q_shape, k_shape, v_shape, mask_shape, scale", SDPA_CASES, ids=str)
def test_attention_weights(q_shape, k_shape, v_shape, mask_shape, scale):
    """PyTorch's weights, read off its attention applied to the identity: softmax(...) @ I = softmax(...)."""
    q, k = rand(q_shape, 1), rand(k_shape, 2)
    mask = None if mask_shape is None else random_mask(mask_shape, 4)
    S = k_shape[-2]
    identity = np.broadcast_to(np.eye(S), k_shape[:-1] + (S,)).copy()
    want = torch_sdpa(q, k, identity, mask, scale)
    got = ex.attention_weights(q, k, mask, scale)
    assert_matches("attention_weights", got, want)
    if mask is not None:
        assert np.all(got[..., ~np.broadcast_to(mask, got.shape)] == 0), "a masked key got a nonzero weight"


@pytest.mark.exercise("01.1")
@pytest.mark.parametrize("q_shape, k_shape, v_shape, mask_shape, scale", SDPA_CASES, ids=str)
def test_scaled_dot_product_attention(q_shape, k_shape, v_shape, mask_shape, scale):
    q, k, v = rand(q_shape, 1), rand(k_shape, 2), rand(v_shape, 3)
    mask = None if mask_shape is None else random_mask(mask_shape, 4)
    got = ex.scaled_dot_product_attention(q, k, v, mask, scale)
    assert_matches("scaled_dot_product_attention", got, torch_sdpa(q, k, v, mask, scale))


@pytest.mark.exercise("01.1")
def test_fully_masked_rows_give_zeros_without_nan_or_warning():
    """Query 2 may look at no key: its output is 0 (as in PyTorch's SDPA); the other rows are PyTorch's."""
    q, k, v = rand((2, 5, 4), 1), rand((2, 6, 4), 2), rand((2, 6, 3), 3)
    mask = random_mask((2, 5, 6), 4)
    mask[:, 2] = False
    mask[1, 4] = False
    got = no_numpy_warnings(ex.scaled_dot_product_attention, q, k, v, mask)
    weights = no_numpy_warnings(ex.attention_weights, q, k, mask)
    assert np.all(np.isfinite(got)), "NaN or inf in the output of a fully masked query"
    assert np.all(got[:, 2] == 0) and np.all(got[1, 4] == 0), "a fully masked query must give output 0"
    assert np.all(weights[:, 2] == 0) and np.all(weights[1, 4] == 0), "a fully masked query must have weights 0"
    live = mask.any(axis=-1)                                        # (2, 5): the rows PyTorch defines
    want = torch_sdpa(q, k, v, mask).numpy()
    assert_matches("output of the queries that see some key", got[live], want[live])


@pytest.mark.exercise("01.1")
def test_large_scores_do_not_overflow():
    q, k, v = rand((3, 4), 1) * 100, rand((5, 4), 2) * 100, rand((5, 2), 3)   # scores of order 10^4
    got = no_numpy_warnings(ex.scaled_dot_product_attention, q, k, v)
    assert_matches("attention with scores of order 1e4", got, torch_sdpa(q, k, v))


# ---- 01.2 causal_mask ------------------------------------------------------------------------

@pytest.mark.exercise("01.2")
@pytest.mark.parametrize("L, S", [(5, 5), (3, 7), (7, 3), (1, 4), (4, 1), (1, 1)], ids=str)
def test_causal_mask_is_torch_is_causal(L, S):
    """offset=0 gives exactly the attention of PyTorch's is_causal=True (top-left aligned)."""
    mask = ex.causal_mask(L, S)
    mask = np.asarray(mask)
    assert mask.dtype == bool and mask.shape == (L, S), (f"expected a bool ({L}, {S}) mask, got {mask.dtype} "
                                                         f"{mask.shape}")
    q, k, v = rand((2, L, 4), 1), rand((2, S, 4), 2), rand((2, S, 3), 3)
    want = F.scaled_dot_product_attention(T(q), T(k), T(v), is_causal=True)
    assert_matches(f"attention under your causal_mask({L}, {S})", torch_sdpa(q, k, v, mask), want)
    assert_matches(f"causal_mask({L}, {S})", mask, torch.ones(L, S).tril().bool())


@pytest.mark.exercise("01.2")
@pytest.mark.parametrize("L, S", [(5, 5), (3, 7), (1, 6), (2, 3)], ids=str)
def test_causal_mask_lower_right(L, S):
    """offset=S-L is torch.nn.attention.bias.causal_lower_right: the queries are the LAST L positions
    (L <= S, as in decoding with a cache; PyTorch warns for L > S)."""
    from torch.nn.attention.bias import causal_lower_right  # imported here: it takes seconds to import

    mask = ex.causal_mask(L, S, S - L)
    q, k, v = rand((2, L, 4), 1), rand((2, S, 4), 2), rand((2, S, 3), 3)
    want = F.scaled_dot_product_attention(T(q), T(k), T(v), attn_mask=causal_lower_right(L, S))
    assert_matches(f"attention under your causal_mask({L}, {S}, {S - L})", torch_sdpa(q, k, v, mask), want)


@pytest.mark.exercise("01.2")
@pytest.mark.parametrize("L, S, offset", [(4, 6, 1), (4, 6, -1), (5, 3, -2), (3, 3, 5)], ids=str)
def test_causal_mask_offsets(L, S, offset):
    assert_matches(f"causal_mask({L}, {S}, {offset})", ex.causal_mask(L, S, offset),
                   torch.ones(L, S).tril(diagonal=offset).bool())


# ---- 01.3 softmax_backward -------------------------------------------------------------------

@pytest.mark.exercise("01.3")
@pytest.mark.parametrize("shape, dim", [((5,), 0), ((3, 4), -1), ((3, 4), 0), ((2, 3, 5), 1), ((2, 1, 3, 7), -1),
                                        ((4, 1), -1)], ids=str)
def test_softmax_backward(shape, dim):
    x = torch.tensor(rand(shape, 5) * 3, requires_grad=True)
    p = torch.softmax(x, dim)
    g = rand(shape, 6)
    p.backward(T(g))
    assert_matches("softmax backward", ex.softmax_backward(p.detach().numpy(), g, dim), x.grad)


# ---- 01.4 attention_backward -----------------------------------------------------------------

def torch_attention_grads(q, k, v, g, mask=None, scale=None):
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=None if mask is None else T(mask), scale=scale)
    out.backward(T(g))
    return tq.grad, tk.grad, tv.grad


@pytest.mark.exercise("01.4")
@pytest.mark.parametrize("q_shape, k_shape, v_shape, mask_shape, scale", SDPA_CASES, ids=str)
def test_attention_backward(q_shape, k_shape, v_shape, mask_shape, scale):
    q, k, v = rand(q_shape, 1), rand(k_shape, 2), rand(v_shape, 3)
    mask = None if mask_shape is None else random_mask(mask_shape, 4)   # broadcast over the leading dims
    g = rand(q_shape[:-1] + v_shape[-1:], 7)
    got = ex.attention_backward(q, k, v, g, mask, scale)
    for name, mine, want in zip(["dq", "dk", "dv"], got, torch_attention_grads(q, k, v, g, mask, scale)):
        assert_matches(name, mine, want)


@pytest.mark.exercise("01.4")
def test_attention_backward_causal():
    L, S = 6, 9
    q, k, v, g = rand((2, L, 5), 1), rand((2, S, 5), 2), rand((2, S, 3), 3), rand((2, L, 3), 4)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    F.scaled_dot_product_attention(tq, tk, tv, is_causal=True).backward(T(g))
    got = ex.attention_backward(q, k, v, g, np.tri(L, S, dtype=bool))
    for name, mine, want in zip(["dq", "dk", "dv"], got, (tq.grad, tk.grad, tv.grad)):
        assert_matches(f"{name} (causal)", mine, want)


@pytest.mark.exercise("01.4")
def test_attention_backward_with_a_fully_masked_query():
    """Query 3 sees no key: dq[3] = 0 and it adds nothing to dk, dv, so the gradients are PyTorch's on the
    problem without that query."""
    q, k, v, g = rand((6, 4), 1), rand((5, 4), 2), rand((5, 3), 3), rand((6, 3), 4)
    mask = random_mask((6, 5), 5)
    mask[3] = False
    dq, dk, dv = no_numpy_warnings(ex.attention_backward, q, k, v, g, mask)
    assert np.all(dq[3] == 0), f"a fully masked query must get dq = 0, got {dq[3]}"
    keep = np.arange(6) != 3
    want_dq, want_dk, want_dv = torch_attention_grads(q[keep], k, v, g[keep], mask[keep])
    assert_matches("dq of the other queries", dq[keep], want_dq)
    assert_matches("dk", dk, want_dk)
    assert_matches("dv", dv, want_dv)


# ---- 01.5 split_heads and merge_heads --------------------------------------------------------

@pytest.mark.exercise("01.5")
@pytest.mark.parametrize("B, T_, C, H", [(2, 5, 12, 3), (1, 1, 4, 4), (3, 7, 6, 1), (2, 3, 10, 2)], ids=str)
def test_split_and_merge_heads(B, T_, C, H):
    x = rand((B, T_, C), 1)
    heads = ex.split_heads(x, H)
    assert_matches("split_heads", heads, T(x).view(B, T_, H, C // H).transpose(1, 2))
    assert_matches("merge_heads(split_heads(x))", ex.merge_heads(heads), x, rtol=0, atol=0)
    y = rand((B, H, T_, C // H), 2)
    assert_matches("merge_heads", ex.merge_heads(y), T(y).transpose(1, 2).reshape(B, T_, C))


@pytest.mark.exercise("01.5")
def test_split_heads_rejects_a_bad_head_count():
    with pytest.raises(ValueError):
        ex.split_heads(rand((2, 3, 10), 1), 3)


@pytest.mark.exercise("01.5")
@pytest.mark.parametrize("C, H", [(12, 3), (8, 8), (6, 2)], ids=str)
def test_head_layout_is_torch_multihead_attention(C, H):
    """Project with torch's in_proj, split with yours, attend with torch, merge with yours, project out:
    nn.MultiheadAttention's output, so head h is exactly channels h*D .. (h+1)*D - 1."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(C, H, batch_first=True, dtype=torch.float64)
    x = rand((2, 5, C), 1)
    want, _ = mha(T(x), T(x), T(x), need_weights=False)
    qkv = F.linear(T(x), mha.in_proj_weight, mha.in_proj_bias).detach().numpy()    # (B, T, 3C)
    q, k, v = (ex.split_heads(qkv[..., i * C:(i + 1) * C], H) for i in range(3))   # (B, H, T, D)
    heads = F.scaled_dot_product_attention(T(q), T(k), T(v)).numpy()                # (B, H, T, D)
    got = F.linear(T(ex.merge_heads(heads)), mha.out_proj.weight, mha.out_proj.bias)
    assert_matches("multi-head attention with your head split and merge", got.detach().numpy(), want)


# ---- 01.6 multihead_attention ----------------------------------------------------------------

@pytest.mark.exercise("01.6")
@pytest.mark.parametrize("B, L, S, C, H, padded", [(2, 5, 5, 12, 3, False), (3, 4, 7, 8, 2, True),
                                                   (1, 1, 3, 6, 6, True), (2, 6, 6, 10, 1, True)], ids=str)
def test_multihead_attention(B, L, S, C, H, padded):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(C, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():                                           # nonzero biases, so a missing one shows
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    query, key, value = rand((B, L, C), 1), rand((B, S, C), 2), rand((B, S, C), 3)
    padding = ~random_mask((B, S), 4, keep=0.4) if padded else None  # True = ignore; one real key at least
    want_out, want_weights = mha(T(query), T(key), T(value), key_padding_mask=None if padding is None
                                 else T(padding))
    params = [p.detach().numpy() for p in (mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight,
                                           mha.out_proj.bias)]
    out, weights = ex.multihead_attention(query, key, value, H, *params, key_padding_mask=padding)
    assert_matches("output", out, want_out)
    assert_matches("head-averaged weights", weights, want_weights)


# ---- 01.7 pointer_log_probs ------------------------------------------------------------------

def torch_pointer_log_probs(enc, dec, W1, W2, v, chosen):
    """u_j = v^T tanh(W1 e_j + W2 d), chosen positions masked, log_softmax over j, written with torch ops."""
    u = torch.tanh(F.linear(T(enc), T(W1)) + F.linear(T(dec), T(W2)).unsqueeze(1)) @ T(v)   # (B, n)
    return torch.log_softmax(u.masked_fill(T(chosen), float("-inf")), dim=-1)


@pytest.mark.exercise("01.7")
@pytest.mark.parametrize("B, n, E, Dd, A", [(3, 7, 5, 4, 6), (1, 1, 2, 3, 4), (2, 10, 8, 8, 3)], ids=str)
def test_pointer_log_probs(B, n, E, Dd, A):
    enc, dec = rand((B, n, E), 1), rand((B, Dd), 2)
    W1, W2, v = rand((A, E), 3), rand((A, Dd), 4), rand((A,), 5) * 2
    chosen = ~random_mask((B, n), 6, keep=0.5)                      # at least one free position per row
    got = no_numpy_warnings(ex.pointer_log_probs, enc, dec, W1, W2, v, chosen)
    want = torch_pointer_log_probs(enc, dec, W1, W2, v, chosen).numpy()
    assert got.shape == want.shape, f"shape {got.shape}, PyTorch's is {want.shape}"
    assert np.all(got[chosen] == -np.inf), "already chosen positions must have log-probability -inf"
    assert_matches("log-probabilities of the free positions", got[~chosen], want[~chosen])


@pytest.mark.exercise("01.7")
def test_pointer_log_probs_nothing_chosen():
    enc, dec = rand((2, 5, 3), 1), rand((2, 4), 2)
    W1, W2, v = rand((6, 3), 3), rand((6, 4), 4), rand((6,), 5) * 5
    chosen = np.zeros((2, 5), dtype=bool)
    got = ex.pointer_log_probs(enc, dec, W1, W2, v, chosen)
    assert_matches("pointer log-probabilities", got, torch_pointer_log_probs(enc, dec, W1, W2, v, chosen))


# ---- 01.8 lama_attention ---------------------------------------------------------------------

def torch_lama_bilinear(H, mask, P, Q):
    """LAMA in its explicit form: head k's score is the bilinear c^T W_k h_i with W_k = p_k q_k^T (d x d)."""
    H, mask, P, Q = T(H), T(mask), T(P), T(Q)
    real = mask.unsqueeze(-1).double()
    c = (H * real).sum(1) / real.sum(1)                                             # (B, d)
    W = torch.einsum("dk,ek->kde", P, Q)                                            # (m, d, d)
    scores = torch.tanh(torch.einsum("bd,kde,bie->bki", c, W, H))                   # (B, m, n)
    A = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
    return A, A @ H


@pytest.mark.exercise("01.8")
@pytest.mark.parametrize("B, n, d, m", [(3, 7, 5, 4), (2, 1, 3, 2), (1, 9, 6, 1), (4, 6, 8, 3)], ids=str)
def test_lama_attention(B, n, d, m):
    H, P, Q = rand((B, n, d), 1), rand((d, m), 2), rand((d, m), 3)
    mask = random_mask((B, n), 4, keep=0.7)
    A, M = no_numpy_warnings(ex.lama_attention, H, mask, P, Q)
    want_A, want_M = torch_lama_bilinear(H, mask, P, Q)
    assert_matches("A (per-head attention over the positions)", A, want_A)
    assert_matches("M = A H", M, want_M)
    assert np.all(A.transpose(0, 2, 1)[~mask] == 0), "a padding position got attention"
