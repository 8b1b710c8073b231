"""Softplus attention with a length scale (LSSA) and its re-weighting (LSSAR) as a minigrad op, from Softplus
Attention with Re-weighting Boosts Length Extrapolation in Large Language Models (Gao & Spratling, 2025,
arXiv:2501.13428).

softplus replaces softmax's e^x (the l1 normalization is kept), a log(n_i) factor on the scores keeps the
attention entropy steady as sequences grow (n_i the number of keys query i sees), and LSSAR, applied without
retraining, drops the weights below uniform and sharpens the rest. The equations, and the choices the paper's
text leaves open, are in kernels/softplus_attention/__init__.py (tested there). The op's forward and backward
are the two-pass tiled kernels of that package: NumPy data runs the Numba CPU kernels, CuPy data the CUDA kernels.
"""
from minigrad.nn.linear_attention import attention_kernels
from minigrad.tensor import record


def softplus_attention(query, key, value, causal=True, key_padding_mask=None, scale=None, length_scaled=True,
                       power=None):
    """query (B, Hq, T, D), key (B, Hk, S, D), value (B, Hv, S, Dv) -> (B, Hq, T, Dv).

    causal: query i sees keys j <= i. key_padding_mask: bool (B, S), True = a real key. scale: 1 / sqrt(D) by
    default (s_i = scale log n_i; length_scaled=False: s_i = scale). power: None for LSSA, p >= 1 for LSSAR (the
    paper sweeps 3, 7, 15). Grouped heads as flash_attention. A query that sees no key gets output 0.
    """
    tensors = (query, key, value)
    kernels, mask = attention_kernels("softplus_attention", "softplus_attention", tensors, key_padding_mask)
    q, k, v = (t.data for t in tensors)
    options = (causal, mask, scale, length_scaled, power)
    out, stats = kernels.forward(q, k, v, *options)                              # (B, Hq, T, Dv), (3, B, Hq, T)

    def backward(grad):
        return kernels.backward(q, k, v, out, stats, grad, *options)
    return record(out, tensors, backward, "softplus_attention")
