"""Lightning Attention by its definition, in NumPy: the reference the blocked kernels are tested against.

    M_ts = lambda_h^(t-s) for s <= t, else 0     (Hq, T, T)
    A = (Q K^T) * M,   O = A V

Backward through the full matrices (independent of the kernels' three products):

    dA = (dO V^T) * M,   dQ = dA K,   dK = dA^T Q,   dV = A^T dO
    dslope_h = sum (dO V^T * Q K^T * dM/dslope),   dM_ts/dslope = -(t - s) M_ts

and the recurrent form, one token at a time (decoding): kv <- lambda kv + k^T v, o = q kv.
"""
import numpy as np

from kernels.lightning_attention import check_slope
from kernels.common import array_module, check_feature_inputs, repeat_heads, sum_head_groups


def decay_mask(slope, T):
    """M (H, T, T): lambda_h^(t-s) = e^(-slope_h (t-s)) below and on the diagonal, 0 above."""
    gap = np.arange(T)[:, None] - np.arange(T)[None, :]                          # t - s
    return np.where(gap >= 0, np.exp(-slope[:, None, None] * np.maximum(gap, 0)), 0.0), gap


def forward(q, k, v, slope):
    """O (B, Hq, T, Dv) by the definition."""
    check_feature_inputs("lightning_attention reference forward", q, k, v)
    check_slope("lightning_attention reference forward", q, slope)
    Hq = q.shape[1]
    mask, _ = decay_mask(slope, q.shape[2])
    a = (q @ repeat_heads(k, Hq).swapaxes(-1, -2)) * mask                        # (B, Hq, T, T)
    return (a @ repeat_heads(v, Hq)).astype(q.dtype, copy=False)


def backward(q, k, v, do, slope):
    """(dQ, dK, dV, dslope) from the upstream gradient dO (B, Hq, T, Dv)."""
    check_feature_inputs("lightning_attention reference backward", q, k, v, do)
    check_slope("lightning_attention reference backward", q, slope)
    Hq = q.shape[1]
    keys, values = repeat_heads(k, Hq), repeat_heads(v, Hq)
    mask, gap = decay_mask(slope, q.shape[2])
    scores = q @ keys.swapaxes(-1, -2)                                           # Q K^T (B, Hq, T, T)
    dweights = do @ values.swapaxes(-1, -2)                                      # dO V^T
    da = dweights * mask
    dq, dk, dv = da @ keys, da.swapaxes(-1, -2) @ q, (scores * mask).swapaxes(-1, -2) @ do
    dslope = (dweights * scores * (-gap * mask)).sum(axis=(0, 2, 3))
    return tuple(x.astype(q.dtype, copy=False) for x in (dq, sum_head_groups(dk, k.shape[1]),
                                                           sum_head_groups(dv, v.shape[1]), dslope))


def recurrent_step(q, k, v, slope, kv=None):
    """One decoding step: (o (B, Hq, Dv), kv (B, Hq, D, Dv)). q (B, Hq, D), k (B, Hk, D), v (B, Hv, Dv); kv is
    None at the first token. kv <- lambda kv + k^T v, o = q kv. NumPy or CuPy arrays."""
    xp = array_module(q)
    B, Hq, D = q.shape
    k, v = repeat_heads(k, Hq), repeat_heads(v, Hq)
    outer = k[..., :, None] * v[..., None, :]                                    # (B, Hq, D, Dv)
    kv = outer if kv is None else xp.exp(-slope)[:, None, None].astype(q.dtype) * kv + outer
    return (q[..., None, :] @ kv)[..., 0, :], kv


def recurrent_forward(q, k, v, slope):
    """O by recurrent_step over the positions (the decoder's view of the same function)."""
    check_feature_inputs("lightning_attention reference recurrent_forward", q, k, v)
    kv, out = None, []
    for t in range(q.shape[2]):
        o, kv = recurrent_step(q[:, :, t], k[:, :, t], v[:, :, t], slope, kv)
        out.append(o)
    return np.stack(out, axis=2)
