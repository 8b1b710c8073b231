"""Lightning Attention on the CPU (Numba): the blocked algorithm, forward and backward.

The kernel is the chunked causal product of kernels/linear_attention/cpu.py with a per-head decay: per block, the
intra-block part multiplies the block's Q K^T tile by the decay matrix D_ab = lambda^(a-b), the inter-block part
reads the decayed KV state of all earlier blocks, lambda^(a+1) Q_i kv, and the state moves on as
kv <- lambda^n kv + (K_i * lambda^(n-1-b))^T V_i. See kernels/lightning_attention for the backward.
"""
from functools import partial

from kernels.lightning_attention import lightning_backward, lightning_forward
from kernels.linear_attention.cpu import CHUNK, causal_product


def forward(q, k, v, slope, chunk=CHUNK):
    """O (B, Hq, T, Dv); slope (Hq,) NumPy, lambda_h = e^(-slope_h)."""
    return lightning_forward("lightning_attention cpu forward", partial(causal_product, chunk=chunk), q, k, v, slope)


def backward(q, k, v, do, slope, chunk=CHUNK):
    """(dQ, dK, dV, dslope) from the upstream gradient dO."""
    return lightning_backward("lightning_attention cpu backward", partial(causal_product, chunk=chunk), q, k, v, do,
                              slope)
