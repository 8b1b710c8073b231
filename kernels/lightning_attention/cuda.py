"""Lightning Attention on the GPU (Numba CUDA): the blocked algorithm, forward and backward.

The kernels are the two of kernels/linear_attention/cuda.py with a per-head decay: `chunk_states` walks the
sequence once per state entry, kv <- lambda kv + k_t^T v_t, storing the state at each block's start; then
`chunk_outputs` gives each position t = block start + a its inter-block part lambda^(a+1) q_t kv and its
intra-block part sum_b lambda^(a-b) (q_t . k_b) v_b. See kernels/lightning_attention for the backward.
"""
from functools import partial

from kernels.lightning_attention import lightning_backward, lightning_forward
from kernels.linear_attention.cuda import CHUNK, causal_product
from kernels.linear_attention.cuda import kernel_signatures as linear_signatures


def forward(q, k, v, slope, chunk=CHUNK):
    """O (B, Hq, T, Dv); slope (Hq,) on q's device, lambda_h = e^(-slope_h)."""
    return lightning_forward("lightning_attention cuda forward", partial(causal_product, chunk=chunk), q, k, v,
                             slope)


def backward(q, k, v, do, slope, chunk=CHUNK):
    """(dQ, dK, dV, dslope) from the upstream gradient dO."""
    return lightning_backward("lightning_attention cuda backward", partial(causal_product, chunk=chunk), q, k, v,
                              do, slope)


def kernel_signatures():
    """The causal-product kernels at Lightning's usual sizes (head dims 64 and 128), for
    tests/kernels/test_cuda_compile.py; the same kernels as kernels/linear_attention/cuda.py."""
    return linear_signatures([(64, 64, 64, "float32"), (128, 128, 32, "float32")])
