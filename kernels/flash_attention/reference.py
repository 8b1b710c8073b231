"""Softmax attention by its definition, in NumPy: the reference the tiled kernels are tested against.

    S = scale * Q K^T + M          (B, Hq, T, S), M = 0 where a query sees a key, -inf where not
    P = softmax(S)                  row-wise; a row with no visible key is all zeros
    O = P V,   L = logsumexp(S)     (L = -inf for a row with no visible key)

Backward through the softmax Jacobian (not FlashAttention's rowsum(dO * O) shortcut, so the two are independent):

    dV = P^T dO,   dP = dO V^T,   dS = P * (dP - rowsum(dP * P)),   dQ = scale dS K,   dK = scale dS^T Q

Keys and values shared by several query heads (GQA, MQA, DiffQKV) are repeated to Hq heads, and their gradients
summed back over each group. Memory is O(T S) per head: this is the quadratic algorithm on purpose.
"""
import numpy as np

from kernels.common import check_inputs, default_scale, repeat_heads, sum_head_groups


def visible(batch, T, S, causal=False, key_padding_mask=None):
    """(B, 1, T, S) bool: may query i see key j."""
    seen = np.ones((batch, 1, T, S), dtype=bool)
    if causal:
        seen &= np.tri(T, S, dtype=bool)
    if key_padding_mask is not None:
        seen &= key_padding_mask[:, None, None, :]
    return seen


def _probabilities(q, k, causal, key_padding_mask, scale):
    """P (B, Hq, T, S) and L (B, Hq, T)."""
    k = repeat_heads(k, q.shape[1])
    scores = scale * (q @ k.swapaxes(-1, -2))                                     # (B, Hq, T, S)
    scores = np.where(visible(q.shape[0], q.shape[2], k.shape[2], causal, key_padding_mask), scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(row_max == -np.inf, 0, row_max)                            # rows with no visible key
    e = np.exp(scores - row_max)                                                  # masked: e^-inf = 0
    total = e.sum(axis=-1, keepdims=True)
    p = e / np.where(total == 0, 1, total)
    with np.errstate(divide="ignore"):
        lse = (row_max + np.log(total))[..., 0]                                  # log 0 = -inf
    return p, lse


def forward(q, k, v, causal=False, key_padding_mask=None, scale=None):
    """(O (B, Hq, T, Dv), L (B, Hq, T)) by the definition."""
    check_inputs("flash_attention reference forward", q, k, v, key_padding_mask)
    p, lse = _probabilities(q, k, causal, key_padding_mask, default_scale(q, scale))
    return p @ repeat_heads(v, q.shape[1]), lse


def backward(q, k, v, do, causal=False, key_padding_mask=None, scale=None):
    """(dQ, dK, dV) from the upstream gradient dO (B, Hq, T, Dv), through the softmax Jacobian."""
    check_inputs("flash_attention reference backward", q, k, v, key_padding_mask, do)
    scale = default_scale(q, scale)
    Hq = q.shape[1]
    p, _ = _probabilities(q, k, causal, key_padding_mask, scale)                 # (B, Hq, T, S)
    dv = p.swapaxes(-1, -2) @ do                                                  # (B, Hq, S, Dv)
    dp = do @ repeat_heads(v, Hq).swapaxes(-1, -2)                                # (B, Hq, T, S)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = scale * (ds @ repeat_heads(k, Hq))                                       # (B, Hq, T, D)
    dk = scale * (ds.swapaxes(-1, -2) @ q)                                        # (B, Hq, S, D)
    return dq, sum_head_groups(dk, k.shape[1]), sum_head_groups(dv, v.shape[1])
