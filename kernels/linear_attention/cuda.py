"""Causal linear attention on the GPU (Numba CUDA): the chunked algorithm in two kernels, forward and backward.

The causal product with an optional per-head decay lambda_h = e^(-slope_h) (as cpu.py):

    out_i = sum_{j<=i} lambda^(i-j) (a_i . b_j) c_j          a, b (B, H, T, F), c (B, H, T, E)

A chunk's output needs the state S of all earlier positions; the CPU walks the chunks in order, a GPU wants
them all at once. So the work is split in two launches:

1. `chunk_states`, grid (ceil(F E / 128), B H), one thread per entry (f, e) of the F x E state: the thread walks
   the sequence once, S_fe <- lambda S_fe + b_tf c_te, and at each chunk's first position stores the state of all
   earlier positions, states[b, h, k] = sum_{j < kC} lambda^(kC-1-j) b_j c_j^T. Entries are independent, so
   B H F E threads run in parallel; a warp's threads read one b_tf (a broadcast) and consecutive c_te.
2. `chunk_outputs`, grid (ceil(T / C), B H), one thread per position t = kC + r of chunk k, its a_t in registers
   (a local array of compile-time size F) and its output row accumulating in another (size E):

       out_t = lambda^(r+1) a_t S_k + sum_{kC <= j <= t} lambda^(t-j) (a_t . b_j) c_j

   Every thread of a block reads the same state entry and the same key row at the same step: one load per warp,
   served from the cache. (F can be 273, BASED's Taylor features: a C x F shared-memory tile would not fit.)

Kernels are built by a factory per (F, E, C, dtype), so the local arrays have compile-time sizes; float32 data
keeps float32 arithmetic (the decay is cast to the data's dtype). Memory: the states, B H ceil(T/C) F E values.
Arrays are CuPy arrays on a GPU, or NumPy arrays under the simulator (NUMBA_ENABLE_CUDASIM=1).
"""
import functools
import math

import numba
import numpy as np
from numba import cuda, types

from kernels.common import array_module
from kernels.linear_attention import EPS, attention_backward, attention_forward, check_chunk

CHUNK = 64
STATE_THREADS = 128


@functools.lru_cache(maxsize=None)
def product_kernels(F, E, chunk, dtype):
    """(chunk_states, chunk_outputs) for features of size F, values of size E, chunks of `chunk` positions."""
    real = numba.from_dtype(np.dtype(dtype))                             # array element type
    scalar = np.dtype(dtype).type                                         # typed constants keep float32 math
    zero = scalar(0)

    @cuda.jit
    def chunk_states(b, c, slope, states):
        H, T = states.shape[1], b.shape[2]
        entry = cuda.blockIdx.x * STATE_THREADS + cuda.threadIdx.x
        if entry >= F * E:
            return
        n, h = cuda.blockIdx.y // H, cuda.blockIdx.y % H
        hb, hc = h // (H // b.shape[1]), h // (H // c.shape[1])
        f, e = entry // E, entry % E
        lam = math.exp(-slope[h])
        s = zero
        for t in range(T):
            if t % chunk == 0:
                states[n, h, t // chunk, f, e] = s
            s = lam * s + b[n, hb, t, f] * c[n, hc, t, e]

    @cuda.jit
    def chunk_outputs(a, b, c, slope, states, out):
        H, T = a.shape[1], a.shape[2]
        k, r = cuda.blockIdx.x, cuda.threadIdx.x
        t0 = k * chunk
        t = t0 + r
        if t >= T:
            return
        n, h = cuda.blockIdx.y // H, cuda.blockIdx.y % H
        hb, hc = h // (H // b.shape[1]), h // (H // c.shape[1])
        s = slope[h]
        row = cuda.local.array(F, real)
        acc = cuda.local.array(E, real)
        for f in range(F):
            row[f] = a[n, h, t, f]
        for e in range(E):
            acc[e] = zero
        w = math.exp(-s * real(r + 1))                                   # inter: lambda^(r+1) a_t S_k
        for f in range(F):
            x = w * row[f]
            for e in range(E):
                acc[e] += x * states[n, h, k, f, e]
        for j in range(t0, t + 1):                                       # intra: the chunk's keys j <= t
            dot = zero
            for f in range(F):
                dot += row[f] * b[n, hb, j, f]
            dot *= math.exp(-s * real(t - j))
            for e in range(E):
                acc[e] += dot * c[n, hc, j, e]
        for e in range(E):
            out[n, h, t, e] = acc[e]

    return chunk_states, chunk_outputs


def causal_product(a, b, c, slope=None, chunk=CHUNK):
    """out (B, H, T, E), out_i = sum_{j<=i} e^(-slope_h (i-j)) (a_i . b_j) c_j; slope (H,) or None (no decay).
    b and c may have fewer heads than a (head h reads h // group)."""
    check_chunk("causal_product cuda", chunk)
    xp = array_module(a)
    a, b, c = (xp.ascontiguousarray(x) for x in (a, b, c))
    (B, H, T, F), E = a.shape, c.shape[3]
    chunks = -(-T // chunk)
    slope = xp.zeros(H, a.dtype) if slope is None else xp.ascontiguousarray(xp.asarray(slope), dtype=a.dtype)
    states = xp.empty((B, H, chunks, F, E), a.dtype)
    out = xp.empty((B, H, T, E), a.dtype)
    chunk_states, chunk_outputs = product_kernels(F, E, chunk, str(a.dtype))
    chunk_states[(-(-F * E // STATE_THREADS), B * H), STATE_THREADS](b, c, slope, states)
    chunk_outputs[(chunks, B * H), chunk](a, b, c, slope, states, out)
    return out


def _product(chunk):
    return lambda a, b, c, slope=None: causal_product(a, b, c, slope, chunk)


def forward(fq, fk, v, causal=True, normalize=True, eps=EPS, chunk=CHUNK):
    """(O (B, Hq, T, Dv), den (B, Hq, T) or None) by the chunked algorithm; see kernels/linear_attention."""
    return attention_forward("linear_attention cuda forward", _product(chunk), fq, fk, v, causal, normalize, eps)


def backward(fq, fk, v, o, den, do, causal=True, normalize=True, eps=EPS, chunk=CHUNK):
    """(dfq, dfk, dV) from the forward's O and den and the upstream gradient dO."""
    return attention_backward("linear_attention cuda backward", _product(chunk), fq, fk, v, o, den, do, causal,
                              normalize, eps)


def kernel_signatures(configs=((273, 65, 64, "float32"), (16, 8, 16, "float64"))):
    """(name, Python function, signature) of each kernel per (F, E, chunk, dtype), for
    tests/kernels/test_cuda_compile.py. The default configurations: BASED's Taylor features (F = 273 for d = 16)
    with a normalized Dv = 64, and a small float64 one."""
    specs = []
    for F, E, chunk, dtype in configs:
        real = numba.from_dtype(np.dtype(dtype))
        a1, a4, a5 = (types.Array(real, n, "C") for n in (1, 4, 5))
        chunk_states, chunk_outputs = product_kernels(F, E, chunk, dtype)
        specs += [("chunk_states", chunk_states.py_func, types.void(a4, a4, a1, a5)),
                  ("chunk_outputs", chunk_outputs.py_func, types.void(a4, a4, a4, a1, a5, a4))]
    return specs
