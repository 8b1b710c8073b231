"""Sliding-window softmax attention (local attention; Longformer, Mistral, BASED's exact part): each query sees only
the last `window` keys, so the cost is O(T w) instead of O(T^2).

    query i sees key j  iff  i - w < j <= i   (and the key is not padded)
    O = softmax(scale * Q K^T + M) V,   L = logsumexp(scale * Q K^T + M)   (per query row)

`window` counts the keys a query sees, itself included: w = 1 is a query attending to its own key only, w >= T is
causal attention. (In flash-attn's `window_size=(left, right)` this is (w - 1, 0); zoology's mask keeps w + 1 keys.)
The algorithm is FlashAttention's tiled online softmax (kernels/flash_attention) restricted to the band: a tile of
queries i0 .. i0 + m - 1 reads only the key tiles in [i0 - w + 1, i0 + m), and inside a tile each key j is seen by
the queries i0 + r with j <= i0 + r < j + w. Key tiles outside the band are never touched.

Layout and API, as kernels/flash_attention (causal is implied):

    o, lse = forward(q, k, v, window, key_padding_mask=None, scale=None)
    dq, dk, dv = backward(q, k, v, o, lse, do, window, key_padding_mask=None, scale=None)   # cpu, cuda
    dq, dk, dv = backward(q, k, v, do, window, key_padding_mask=None, scale=None)           # reference

q (B, Hq, T, D), k (B, Hk, S, D), v (B, Hv, S, Dv); grouped heads as flash (head h reads h // (Hq // Hk));
key_padding_mask bool (B, S), True = a real key. A query that sees no key gets o = 0, lse = -inf and zero gradients.
"""
from kernels.common import check_inputs


def check_window_inputs(op, q, k, v, window, key_padding_mask=None, do=None):
    check_inputs(op, q, k, v, key_padding_mask, do)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"{op}: window must be an int >= 1 (the number of keys a query sees, itself included); "
                         f"got {window!r}")
