"""Softplus attention (LSSA) and its re-weighting (LSSAR) by the definition, in NumPy: whole (T, S) matrices.

    x = s Q K^T (s per query row),  P = softplus(x) where visible else 0,  A = P / rowsum(P)
    LSSA:  O = A V
    LSSAR: u = relu(n A - 1),  W = u^p / rowsum(u^p)  (rows with u = 0 everywhere keep A),  O = W V

Backward by the chain rule through each step on the full matrices (the kernels use the row identities of the
package doc instead, so the two are independent):

    dW = dO V^T;   LSSAR: dW_raw = (dW - rowsum(dW * W)) / rowsum(u^p),  dA = n p u^(p-1) dW_raw [u > 0]
    dP = (dA - rowsum(dA * A)) / rowsum(P),   dx = dP sigmoid(x),   dQ = s dx K,   dK = (s dx)^T Q,   dV = W^T dO
"""
import numpy as np

from kernels.common import repeat_heads, sum_head_groups
from kernels.softplus_attention import check_softplus_inputs, row_scales, visible_counts


def visible(batch, T, S, causal, key_padding_mask=None):
    """(B, 1, T, S) bool: may query i see key j."""
    seen = np.broadcast_to(np.tri(T, S, dtype=bool) if causal else np.ones((T, S), bool), (batch, 1, T, S))
    return seen & key_padding_mask[:, None, None, :] if key_padding_mask is not None else seen


def _safe(z):
    return np.where(z == 0, 1, z)


def _forward_parts(q, k, causal, key_padding_mask, scale, length_scaled, power):
    """Every intermediate of the definition, as a dict of (B, Hq, T, S) / (B, Hq, T) arrays."""
    B, Hq, T, _ = q.shape
    n = visible_counts(q, k, causal, key_padding_mask)[:, None, :]               # (B, 1, T)
    s = row_scales(q, n[:, 0], scale, length_scaled)[:, None, :, None]          # (B, 1, T, 1)
    seen = visible(B, T, k.shape[2], causal, key_padding_mask)
    x = s * (q @ repeat_heads(k, Hq).swapaxes(-1, -2))                            # (B, Hq, T, S)
    p = np.where(seen, np.logaddexp(0, x), 0)                                    # softplus
    z = p.sum(axis=-1)
    a = p / _safe(z)[..., None]
    parts = dict(n=n, s=s, seen=seen, x=x, z=z, a=a, w=a)
    if power is not None:
        u = np.maximum(n[..., None] * a - 1, 0)
        raw = u ** power
        total = raw.sum(axis=-1)
        uniform = (u.max(axis=-1) <= 0)[..., None]                               # keep A (see the package doc)
        parts.update(u=u, total=total, uniform=uniform, w=np.where(uniform, a, raw / _safe(total)[..., None]))
    return parts


def forward(q, k, v, causal=True, key_padding_mask=None, scale=None, length_scaled=True, power=None):
    """O (B, Hq, T, Dv) by the definition (the reference keeps no stats)."""
    check_softplus_inputs("softplus_attention reference forward", q, k, v, key_padding_mask, power)
    w = _forward_parts(q, k, causal, key_padding_mask, scale, length_scaled, power)["w"]
    return (w @ repeat_heads(v, q.shape[1])).astype(q.dtype, copy=False)


def backward(q, k, v, do, causal=True, key_padding_mask=None, scale=None, length_scaled=True, power=None):
    """(dQ, dK, dV) from the upstream gradient dO (B, Hq, T, Dv)."""
    check_softplus_inputs("softplus_attention reference backward", q, k, v, key_padding_mask, power, do)
    Hq = q.shape[1]
    f = _forward_parts(q, k, causal, key_padding_mask, scale, length_scaled, power)
    dw = do @ repeat_heads(v, Hq).swapaxes(-1, -2)                                # (B, Hq, T, S)
    da = dw
    if power is not None:
        draw = (dw - (dw * f["w"]).sum(axis=-1, keepdims=True)) / _safe(f["total"])[..., None]
        du = np.where(f["u"] > 0, power * f["u"] ** (power - 1) * draw, 0)
        da = np.where(f["uniform"], dw, f["n"][..., None] * du)
    dp = (da - (da * f["a"]).sum(axis=-1, keepdims=True)) / _safe(f["z"])[..., None]
    dx = np.where(f["seen"], dp / (1 + np.exp(-f["x"])), 0) * f["s"]             # s dP sigmoid(x)
    dq = dx @ repeat_heads(k, Hq)
    dk = dx.swapaxes(-1, -2) @ q
    dv = f["w"].swapaxes(-1, -2) @ do
    return tuple(g.astype(q.dtype, copy=False) for g in (dq, sum_head_groups(dk, k.shape[1]),
                                                          sum_head_groups(dv, v.shape[1])))
