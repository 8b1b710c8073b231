"""Sliding-window (local) causal softmax attention: each query sees its last `window` keys, O(T w) work.

The band mask, the equations and the tiled algorithm are in kernels/sliding_window_attention/__init__.py.
The op's forward and backward are the tiled kernels of kernels/sliding_window_attention (FlashAttention's online
softmax on the band, key tiles outside it skipped): NumPy data runs the Numba CPU kernels, CuPy data the CUDA
kernels. window >= T is causal attention. A query that sees no key gets output 0 and zero gradients.
"""
from minigrad.nn.linear_attention import attention_kernels
from minigrad.tensor import record


def sliding_window_attention(query, key, value, window, key_padding_mask=None, scale=None):
    """query (B, Hq, T, D), key (B, Hk, S, D), value (B, Hv, S, Dv) -> (B, Hq, T, Dv).

    window: the number of keys a query sees, itself included (flash-attn's window_size=(window - 1, 0)).
    key_padding_mask: bool (B, S), True = a real key. scale: 1 / sqrt(D) by default. Grouped heads as
    flash_attention: query head h reads key head h // (Hq // Hk) and value head h // (Hq // Hv).
    """
    tensors = (query, key, value)
    kernels, mask = attention_kernels("sliding_window_attention", "sliding_window_attention", tensors,
                                      key_padding_mask)
    q, k, v = (t.data for t in tensors)
    out, lse = kernels.forward(q, k, v, window, mask, scale)                     # (B, Hq, T, Dv), (B, Hq, T)

    def backward(grad):
        return kernels.backward(q, k, v, out, lse, grad, window, mask, scale)
    return record(out, tensors, backward, "sliding_window_attention")
