"""Softplus attention, LSSA, and its re-weighted form, LSSAR, from Softplus Attention with Re-weighting Boosts
Length Extrapolation in Large Language Models (Gao & Spratling, 2025, arXiv:2501.13428).

Softmax is two steps: a positive transformation (e^x) and an l1 normalization. LSSA keeps the normalization and
replaces e^x by softplus(x) = log(1 + e^x), with a scale that grows with the number of tokens a query sees
(entropy invariance):

    x_ij = s_i q_i . k_j,   s_i = scale * log(n_i)        n_i = the number of keys query i sees
    P_ij = softplus(x_ij),  Z_i = sum_j P_ij,  A_ij = P_ij / Z_i,   O = A V                        (LSSA)

LSSAR sharpens A without retraining: weights at or below the uniform level 1 / n_i are dropped, the excess is
raised to a power p and normalized again:

    u_ij = relu(n_i A_ij - 1),   W_ij = u_ij^p / sum_j u_ij^p,   O = W V                          (LSSAR)

softplus is positive and grows only linearly, so no running max is needed: a tiled kernel makes two passes over
the keys, the first for the row sums Z_i (and the row's largest P), the second for the weights and the output.

Choices the paper's text leaves open (its code was not available to us), made here and tested as stated in
tests/kernels/test_softplus_attention_reference.py:
- n_i counts the keys query i actually sees (causal and padding masks applied): i + 1 for causal attention
  without padding. s_i = scale * log(n_i), scale = 1 / sqrt(D) by default; for entropy invariance relative to a
  training length L, pass scale = 1 / (sqrt(D) log L) (s = 1/sqrt(D) at n = L). `length_scaled=False` gives
  plain softplus attention, s_i = scale (an ablation). A query seeing one key has s = 0; its weight is 1 anyway.
- The re-weighting is computed as W_ij = (u_ij / u_i,max)^p / sum_j (u_ij / u_i,max)^p, the same value as the
  formula (the factor cancels), so that no weight underflows for large p; u_i,max = n_i max_j A_ij - 1 comes
  from the first pass's largest P.
- A row with no weight above uniform (u_i,max <= 0: every A_ij = 1 / n_i, e.g. the first causal query, which
  sees one key) keeps its LSSA weights (a uniform distribution is its own sharpening) instead of dividing 0 by 0.
- p is `power` (the paper sweeps 3, 7, 15); power=None is LSSA. QK normalization, if wanted, is the caller's.
- A query that sees no key (n_i = 0) gets o = 0 and zero gradients.

Layout and API (q (B, Hq, T, D), k (B, Hk, S, D), v (B, Hv, S, Dv), grouped heads and key_padding_mask as
kernels/flash_attention; causal is top-left aligned, query i sees keys j <= i):

    o, stats = forward(q, k, v, causal=True, key_padding_mask=None, scale=None, length_scaled=True, power=None)
    dq, dk, dv = backward(q, k, v, o, stats, do, causal, key_padding_mask, scale, length_scaled, power)  # cpu, cuda
    dq, dk, dv = backward(q, k, v, do, causal, key_padding_mask, scale, length_scaled, power)            # reference

stats (3, B, Hq, T): Z_i, u_i,max (0 without re-weighting) and the final weights' row sum (1 for LSSA and for
uniform rows): what the backward needs besides O.

Backward, per row i with g = dO_i and D_i = g . O_i (dW, dA, dP, dx are d loss / d of them):
    dW_ij = (g . v_j - D_i) / sum_j W_ij                    dV_j = sum_i W_ij g_i / sum_j W_ij
    LSSA (and uniform rows): dA = dW.   LSSAR: dA_ij = n_i p (u_ij / u_max)^(p-1) / u_max dW_ij  (u_ij > 0)
    dP_ij = (dA_ij - E_i) / Z_i,  E_i = sum_j A_ij dA_ij  (E = 0 for LSSA)
    dx_ij = dP_ij sigmoid(x_ij),   dq_i = s_i sum_j dx_ij k_j,   dk_j = sum_i s_i dx_ij q_i
E_i needs every key of the row before any dP: with re-weighting the backward makes one more pass for it.
"""
from kernels.common import array_module, check_inputs, default_scale


def check_softplus_inputs(op, q, k, v, key_padding_mask, power, do=None):
    check_inputs(op, q, k, v, key_padding_mask, do)
    if power is not None and (isinstance(power, bool) or not isinstance(power, (int, float)) or power < 1):
        raise ValueError(f"{op}: power (the LSSAR sharpening exponent) must be a number >= 1, or None for LSSA; "
                         f"got {power!r}")


def visible_counts(q, k, causal, key_padding_mask):
    """n (B, T), float in q's dtype: the number of keys each query sees (the same for every head)."""
    xp = array_module(q)
    B, T, S = q.shape[0], q.shape[2], k.shape[2]
    keep = xp.ones((B, S), dtype=bool) if key_padding_mask is None else key_padding_mask
    if not causal:
        return xp.broadcast_to(keep.sum(axis=1, keepdims=True), (B, T)).astype(q.dtype)
    seen = xp.cumsum(keep, axis=1)                                               # keys 0 .. j
    last = xp.minimum(xp.arange(T), S - 1)                                      # query i sees keys <= i
    return xp.ascontiguousarray(seen[:, last].astype(q.dtype))


def row_scales(q, counts, scale, length_scaled):
    """s (B, T): scale * log(n_i), or scale; 0 where n_i = 0 (those rows see nothing)."""
    xp = array_module(q)
    scale = default_scale(q, scale)
    if not length_scaled:
        return xp.where(counts > 0, scale, 0).astype(q.dtype)
    return (scale * xp.log(xp.maximum(counts, 1))).astype(q.dtype)
