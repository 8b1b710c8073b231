"""Sliding-window attention by its definition, in NumPy: the whole (T, S) score matrix with a band mask.

    M_ij = 0 if i - w < j <= i and key j is real, else -inf
    P = softmax(scale * Q K^T + M) (a row with no visible key is all zeros),   O = P V,   L = logsumexp

Backward through the softmax Jacobian:
    dV = P^T dO,   dP = dO V^T,   dS = P * (dP - rowsum(dP * P)),   dQ = scale dS K,   dK = scale dS^T Q
"""
import numpy as np

from kernels.common import default_scale, repeat_heads, sum_head_groups
from kernels.sliding_window_attention import check_window_inputs


def visible(batch, T, S, window, key_padding_mask=None):
    """(B, 1, T, S) bool: may query i see key j."""
    gap = np.arange(T)[:, None] - np.arange(S)[None, :]                          # i - j
    seen = np.broadcast_to((gap >= 0) & (gap < window), (batch, 1, T, S))
    return seen & key_padding_mask[:, None, None, :] if key_padding_mask is not None else seen


def _probabilities(q, k, window, key_padding_mask, scale):
    """P (B, Hq, T, S) and L (B, Hq, T)."""
    scores = scale * (q @ repeat_heads(k, q.shape[1]).swapaxes(-1, -2))          # (B, Hq, T, S)
    scores = np.where(visible(q.shape[0], q.shape[2], k.shape[2], window, key_padding_mask), scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(row_max == -np.inf, 0, row_max)                            # rows with no visible key
    e = np.exp(scores - row_max)
    total = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = (row_max + np.log(total))[..., 0]                                  # log 0 = -inf
    return e / np.where(total == 0, 1, total), lse


def forward(q, k, v, window, key_padding_mask=None, scale=None):
    """(O (B, Hq, T, Dv), L (B, Hq, T)) by the definition."""
    check_window_inputs("sliding_window_attention reference forward", q, k, v, window, key_padding_mask)
    p, lse = _probabilities(q, k, window, key_padding_mask, default_scale(q, scale))
    return p @ repeat_heads(v, q.shape[1]), lse


def backward(q, k, v, do, window, key_padding_mask=None, scale=None):
    """(dQ, dK, dV) from the upstream gradient dO (B, Hq, T, Dv), through the softmax Jacobian."""
    check_window_inputs("sliding_window_attention reference backward", q, k, v, window, key_padding_mask, do)
    scale, Hq = default_scale(q, scale), q.shape[1]
    p, _ = _probabilities(q, k, window, key_padding_mask, scale)
    dv = p.swapaxes(-1, -2) @ do                                                  # (B, Hq, S, Dv)
    dp = do @ repeat_heads(v, Hq).swapaxes(-1, -2)                                # (B, Hq, T, S)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = scale * (ds @ repeat_heads(k, Hq))
    dk = scale * (ds.swapaxes(-1, -2) @ q)
    return dq, sum_head_groups(dk, k.shape[1]), sum_head_groups(dv, v.shape[1])
