"""Softplus attention with a length scale (LSSA) and its re-weighting (LSSAR), Gao & Spratling (2025).

    LSSA:  A_ij = softplus(s_i q_i . k_j) / sum_j softplus(s_i q_i . k_j),   s_i = scale log(n_i),   O = A V
    LSSAR: W_ij = relu(n_i A_ij - 1)^p / sum_j relu(n_i A_ij - 1)^p,                                 O = W V

n_i is the number of keys query i sees. softplus replaces softmax's e^x (l1 normalization kept); the log(n_i)
factor keeps the attention entropy steady as sequences grow; LSSAR, applied without retraining, drops the weights
below uniform and sharpens the rest. The choices the paper's text leaves open are listed, and tested, in
kernels/softplus_attention. The op's forward and backward are the two-pass tiled kernels there: NumPy data runs
the Numba CPU kernels, CuPy data the CUDA kernels.
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
