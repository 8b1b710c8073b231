"""Scaled dot-product attention (Vaswani et al., 2017), with PyTorch's semantics.

    Attention(Q, K, V) = softmax(Q K^T * scale + M) V,     scale = 1 / sqrt(d) by default

M is 0 where a query may look at a key and -inf where it may not: `attn_mask` (bool: True = may
look, or a float mask that is added), and/or `is_causal` (query i sees keys j <= i). A query row
with no key left gets weights 0 and output 0, as torch's scaled_dot_product_attention (torch.softmax alone
gives NaN there).

The scale, the mask and the softmax are one op (`masked_softmax`) with the fused backward
    dS = scale * P * (dP - sum_j dP_j P_j)
so the (L, S) score matrix is not copied once per step. On float32 CPU data it runs in one pass
(kernels/softmax.py), and a causal row stops at its diagonal.
"""
import math

from minigrad import backend
from minigrad.ops.reduce import softmax_array
from minigrad.tensor import Tensor, record


def _additive_mask(xp, attn_mask, is_causal, shape, dtype):
    """The mask as an additive array broadcastable to the scores (L, S), or None."""
    L, S = shape[-2:]
    bias = None
    if is_causal:
        bias = xp.where(xp.tri(L, S, dtype=bool), 0, -xp.inf).astype(dtype)
    if attn_mask is not None:
        m = attn_mask.data if isinstance(attn_mask, Tensor) else attn_mask
        m = xp.where(m, 0, -xp.inf).astype(dtype) if m.dtype == backend.bool_ else m.astype(dtype, copy=False)
        bias = m if bias is None else bias + m
    return bias


def masked_softmax(scores, scale, attn_mask=None, is_causal=False):
    """softmax(scores * scale + M) over the last dim, M from attn_mask / is_causal (see the module doc).

    A float attn_mask Tensor that requires grad is a learned bias (relative position biases, learned ALiBi
    slopes): it gets the gradient of the softmax's input, dM = P * (dP - sum_j dP_j P_j), summed over the
    dims it was broadcast along; the scores get scale * dM.
    """
    xp = backend.array_module(scores.data)
    if attn_mask is None and backend.uses_cpu_kernels(scores.data) and scores.data.size:
        from kernels.softmax import softmax_backward, softmax_forward
        p = softmax_forward(scores.data, scale, causal=is_causal)
        return record(p, (scores,), lambda g: (softmax_backward(p, g, scale),), "masked_softmax")
    bias = _additive_mask(xp, attn_mask, is_causal, scores.shape, scores.dtype)
    logits = scores.data * scores.dtype.type(scale)
    p = softmax_array(logits if bias is None else logits + bias, -1)
    learned_bias = isinstance(attn_mask, Tensor) and attn_mask.requires_grad

    def backward(g):
        d_logits = p * (g - (g * p).sum(axis=-1, keepdims=True))
        if not learned_bias:
            return (scale * d_logits,)
        return scale * d_logits, d_logits.astype(attn_mask.dtype, copy=False)
    return record(p, (scores, attn_mask) if learned_bias else (scores,), backward, "masked_softmax")


def repeat_kv_heads(query, key, value):
    """Grouped-query attention: key and value (..., Hk, S, E) repeated to the query's (..., Hq, L, E) heads, query head
    h reading key/value head h // (Hq / Hk) (torch's repeat_interleave). An expand, so the backward sums each
    group of Hq / Hk gradients back onto its shared head."""
    if min(query.ndim, key.ndim, value.ndim) < 3 or key.shape[-3] != value.shape[-3] or \
            query.shape[-3] % key.shape[-3]:
        raise ValueError(f"scaled_dot_product_attention: enable_gqa needs query (..., Hq, L, E), key (..., Hk, S, E) "
                         f"and value (..., Hk, S, Ev) with Hq a multiple of Hk; got {query.shape}, {key.shape}, "
                         f"{value.shape}")
    groups = query.shape[-3] // key.shape[-3]
    if groups == 1:
        return key, value

    def repeat(t):
        shape = t.shape[:-3] + (t.shape[-3], groups) + t.shape[-2:]
        return t.unsqueeze(-3).expand(*shape).reshape(t.shape[:-3] + (query.shape[-3],) + t.shape[-2:])
    return repeat(key), repeat(value)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, dropout_mask=None):
    """query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).

    dropout_p drops attention weights (scaled by 1/(1-p)); pass `dropout_mask` (bool, (..., L, S),
    True = keep) to reproduce a given draw. enable_gqa: key and value may have fewer heads (dim -3) than the
    query, each shared by a group of query heads (repeat_kv_heads).
    """
    from minigrad.nn.functional import dropout

    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(f"scaled_dot_product_attention: query, key and value need at least 2 dims, got shapes "
                         f"{query.shape}, {key.shape}, {value.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: expected query (..., L, E), key (..., S, E), value "
                         f"(..., S, Ev); got {query.shape}, {key.shape}, {value.shape}")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal, not both (as PyTorch)")
    if enable_gqa:
        key, value = repeat_kv_heads(query, key, value)                      # (..., Hq, S, E), (..., Hq, S, Ev)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1)                                    # (..., L, S)
    weights = masked_softmax(scores, scale, attn_mask, is_causal)            # (..., L, S)
    if dropout_p > 0 or dropout_mask is not None:
        weights = dropout(weights, dropout_p, training=True, mask=dropout_mask)
    return weights @ value                                                    # (..., L, Ev)
