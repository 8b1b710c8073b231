"""Sliding-window attention on the GPU (Numba CUDA): the tiled online softmax on the band, forward and backward.

Forward: grid (ceil(T / block_m), B Hq), one thread per query row i. The block's query tile i0 .. i0 + block_m - 1
needs only the keys [i0 - w + 1, i0 + block_m); the threads stage them tile by tile (block_n keys of K and V) in
shared memory, and each thread runs the online softmax over its own keys i - w < j <= i of the tile, with its
running max m, sum l and output row in registers:

    s = scale q_i . k_j;  if s > m: (l, acc) *= e^(m - s), m = s;  p = e^(s - m);  l += p;  acc += p v_j

Backward, two kernels so no two threads add into the same memory (no atomics), with D_i = dO_i . O_i:
- `dq`: grid (ceil(T / block_m), B Hq), thread per query row, over the key tiles of its band (K, V in shared
  memory): P = e^(scale q_i . k_j - L_i), dS = P (dO_i . v_j - D_i), dq_i = scale sum_j dS k_j. It also stores D_i.
- `dkdv`: grid (ceil(S / block_n), B Hq), thread per key row j, over the query tiles that see the block's keys,
  [j0, j0 + block_n - 1 + w) (Q, dO, L, D staged in shared memory): dv_j = sum_i P dO_i, dk_j = scale sum_i dS q_i,
  per query head; grouped heads are summed afterwards.

Every thread of a block runs the same tile loop (the bounds depend on the block, not the thread) so the
`syncthreads` are uniform; threads past the end load zeros and skip the math. Kernels are built by a factory per
(block_m, block_n, D, Dv, dtype): shared and local arrays get compile-time shapes. Shared memory per block is
block (D + Dv) values: 32 KB at block 32, D = Dv = 128, float32. Arrays are CuPy (or NumPy under the simulator).
"""
import functools
import math

import numba
import numpy as np
from numba import cuda, types

from kernels.common import array_module, default_scale, keep_mask, sum_head_groups
from kernels.sliding_window_attention import check_window_inputs

BLOCK_M, BLOCK_N = 32, 32


@functools.lru_cache(maxsize=None)
def window_kernels(block_m, block_n, D, Dv, dtype):
    """(forward, dq, dkdv) kernels for head dims D, Dv and the given tile sizes."""
    real = numba.from_dtype(np.dtype(dtype))                             # array element type
    scalar = np.dtype(dtype).type                                         # typed constants keep float32 math
    zero, neg_inf = scalar(0), scalar(-np.inf)

    @cuda.jit
    def forward(q, k, v, keep, window, scale, o, lse):
        Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
        tid, i0 = cuda.threadIdx.x, cuda.blockIdx.x * block_m
        i = i0 + tid
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
        k_tile = cuda.shared.array((block_n, D), real)
        v_tile = cuda.shared.array((block_n, Dv), real)
        row = cuda.local.array(D, real)
        acc = cuda.local.array(Dv, real)
        for d in range(D):
            row[d] = q[b, h, i, d] if i < T else zero
        for d in range(Dv):
            acc[d] = zero
        m_i, l_i = neg_inf, zero
        start = i0 - window + 1
        start = 0 if start < 0 else start
        stop = S if i0 + block_m > S else i0 + block_m
        for j0 in range(start, stop, block_n):
            for x in range(tid, block_n * D, block_m):
                c, d = x // D, x % D
                k_tile[c, d] = k[b, kh, j0 + c, d] if j0 + c < stop else zero
            for x in range(tid, block_n * Dv, block_m):
                c, d = x // Dv, x % Dv
                v_tile[c, d] = v[b, vh, j0 + c, d] if j0 + c < stop else zero
            cuda.syncthreads()
            lo = i - window + 1
            lo = j0 if lo < j0 else lo
            hi = j0 + block_n if i + 1 > j0 + block_n else i + 1
            hi = stop if hi > stop else hi
            for j in range(lo, hi if i < T else lo):
                if keep[b, j]:
                    c = j - j0
                    s = zero
                    for d in range(D):
                        s += row[d] * k_tile[c, d]
                    s *= scale
                    if s > m_i:
                        alpha = math.exp(m_i - s)
                        l_i *= alpha
                        for d in range(Dv):
                            acc[d] *= alpha
                        m_i = s
                    p = math.exp(s - m_i)
                    l_i += p
                    for d in range(Dv):
                        acc[d] += p * v_tile[c, d]
            cuda.syncthreads()
        if i < T:
            if l_i == 0:                                                 # no visible key
                for d in range(Dv):
                    o[b, h, i, d] = zero
                lse[b, h, i] = neg_inf
            else:
                for d in range(Dv):
                    o[b, h, i, d] = acc[d] / l_i
                lse[b, h, i] = m_i + math.log(l_i)

    @cuda.jit
    def dq(q, k, v, o, lse, do, keep, window, scale, delta, dq_out):
        Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
        tid, i0 = cuda.threadIdx.x, cuda.blockIdx.x * block_m
        i = i0 + tid
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
        k_tile = cuda.shared.array((block_n, D), real)
        v_tile = cuda.shared.array((block_n, Dv), real)
        row = cuda.local.array(D, real)
        do_row = cuda.local.array(Dv, real)
        acc = cuda.local.array(D, real)
        d_i, l_i = zero, zero
        if i < T:
            for d in range(D):
                row[d] = q[b, h, i, d]
            for d in range(Dv):
                do_row[d] = do[b, h, i, d]
                d_i += do_row[d] * o[b, h, i, d]
            delta[b, h, i] = d_i
            l_i = lse[b, h, i]
        for d in range(D):
            acc[d] = zero
        start = i0 - window + 1
        start = 0 if start < 0 else start
        stop = S if i0 + block_m > S else i0 + block_m
        for j0 in range(start, stop, block_n):
            for x in range(tid, block_n * D, block_m):
                c, d = x // D, x % D
                k_tile[c, d] = k[b, kh, j0 + c, d] if j0 + c < stop else zero
            for x in range(tid, block_n * Dv, block_m):
                c, d = x // Dv, x % Dv
                v_tile[c, d] = v[b, vh, j0 + c, d] if j0 + c < stop else zero
            cuda.syncthreads()
            lo = i - window + 1
            lo = j0 if lo < j0 else lo
            hi = j0 + block_n if i + 1 > j0 + block_n else i + 1
            hi = stop if hi > stop else hi
            for j in range(lo, hi if i < T else lo):
                if keep[b, j]:
                    c = j - j0
                    s, dp = zero, zero
                    for d in range(D):
                        s += row[d] * k_tile[c, d]
                    for d in range(Dv):
                        dp += do_row[d] * v_tile[c, d]
                    ds = math.exp(scale * s - l_i) * (dp - d_i)
                    for d in range(D):
                        acc[d] += ds * k_tile[c, d]
            cuda.syncthreads()
        if i < T:
            for d in range(D):
                dq_out[b, h, i, d] = scale * acc[d]

    @cuda.jit
    def dkdv(q, k, v, lse, do, keep, window, scale, delta, dk, dv):
        Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
        tid, j0 = cuda.threadIdx.x, cuda.blockIdx.x * block_n
        j = j0 + tid
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
        q_tile = cuda.shared.array((block_m, D), real)
        do_tile = cuda.shared.array((block_m, Dv), real)
        lse_tile = cuda.shared.array(block_m, real)
        delta_tile = cuda.shared.array(block_m, real)
        k_row = cuda.local.array(D, real)
        v_row = cuda.local.array(Dv, real)
        dk_acc = cuda.local.array(D, real)
        dv_acc = cuda.local.array(Dv, real)
        seen = j < S and keep[b, j]
        for d in range(D):
            k_row[d] = k[b, kh, j, d] if j < S else zero
            dk_acc[d] = zero
        for d in range(Dv):
            v_row[d] = v[b, vh, j, d] if j < S else zero
            dv_acc[d] = zero
        stop = j0 + block_n - 1 + window
        stop = T if stop > T else stop
        for i0 in range(j0, stop, block_m):
            for x in range(tid, block_m * D, block_n):
                r, d = x // D, x % D
                q_tile[r, d] = q[b, h, i0 + r, d] if i0 + r < T else zero
            for x in range(tid, block_m * Dv, block_n):
                r, d = x // Dv, x % Dv
                do_tile[r, d] = do[b, h, i0 + r, d] if i0 + r < T else zero
            for r in range(tid, block_m, block_n):
                lse_tile[r] = lse[b, h, i0 + r] if i0 + r < T else zero
                delta_tile[r] = delta[b, h, i0 + r] if i0 + r < T else zero
            cuda.syncthreads()
            lo = j if j > i0 else i0                                     # queries i in [j, j + w) of this tile
            hi = j + window
            hi = i0 + block_m if hi > i0 + block_m else hi
            hi = T if hi > T else hi
            for i in range(lo, hi if seen else lo):
                r = i - i0
                s, dp = zero, zero
                for d in range(D):
                    s += q_tile[r, d] * k_row[d]
                for d in range(Dv):
                    dp += do_tile[r, d] * v_row[d]
                p = math.exp(scale * s - lse_tile[r])
                ds = p * (dp - delta_tile[r])
                for d in range(Dv):
                    dv_acc[d] += p * do_tile[r, d]
                for d in range(D):
                    dk_acc[d] += ds * q_tile[r, d]
            cuda.syncthreads()
        if j < S:
            for d in range(D):
                dk[b, h, j, d] = scale * dk_acc[d]
            for d in range(Dv):
                dv[b, h, j, d] = dv_acc[d]

    return forward, dq, dkdv


def forward(q, k, v, window, key_padding_mask=None, scale=None, block_m=BLOCK_M, block_n=BLOCK_N):
    """(O (B, Hq, T, Dv), L (B, Hq, T)) by the tiled online softmax on the band; see the module doc."""
    check_window_inputs("sliding_window_attention cuda forward", q, k, v, window, key_padding_mask)
    xp = array_module(q)
    q, k, v = (xp.ascontiguousarray(a) for a in (q, k, v))
    (B, Hq, T, D), (S, Dv) = q.shape, v.shape[2:]
    o, lse = xp.empty((B, Hq, T, Dv), q.dtype), xp.empty((B, Hq, T), q.dtype)
    kernel = window_kernels(block_m, block_n, D, Dv, str(q.dtype))[0]
    kernel[(-(-T // block_m), B * Hq), block_m](q, k, v, keep_mask(key_padding_mask, B, S, xp), window,
                                                q.dtype.type(default_scale(q, scale)), o, lse)
    return o, lse


def backward(q, k, v, o, lse, do, window, key_padding_mask=None, scale=None, block_m=BLOCK_M, block_n=BLOCK_N):
    """(dQ, dK, dV) from the forward's O and L and the upstream gradient dO; see the module doc."""
    check_window_inputs("sliding_window_attention cuda backward", q, k, v, window, key_padding_mask, do)
    xp = array_module(q)
    q, k, v, o, lse, do = (xp.ascontiguousarray(a, dtype=q.dtype) for a in (q, k, v, o, lse, do))
    (B, Hq, T, D), (S, Dv) = q.shape, v.shape[2:]
    keep, scale = keep_mask(key_padding_mask, B, S, xp), q.dtype.type(default_scale(q, scale))
    delta, dq = xp.empty((B, Hq, T), q.dtype), xp.empty_like(q)
    dk, dv = xp.empty((B, Hq, S, D), q.dtype), xp.empty((B, Hq, S, Dv), q.dtype)
    _, dq_kernel, dkdv_kernel = window_kernels(block_m, block_n, D, Dv, str(q.dtype))
    dq_kernel[(-(-T // block_m), B * Hq), block_m](q, k, v, o, lse, do, keep, window, scale, delta, dq)
    dkdv_kernel[(-(-S // block_n), B * Hq), block_n](q, k, v, lse, do, keep, window, scale, delta, dk, dv)
    return dq, sum_head_groups(dk, k.shape[1]), sum_head_groups(dv, v.shape[1])


def kernel_signatures():
    """(name, Python function, signature) of each kernel at two configurations, for
    tests/kernels/test_cuda_compile.py."""
    specs = []
    for block_m, block_n, D, Dv, dtype in [(32, 32, 64, 64, "float32"), (16, 32, 32, 16, "float64")]:
        real = numba.from_dtype(np.dtype(dtype))
        a4, a3 = types.Array(real, 4, "C"), types.Array(real, 3, "C")
        keep, window = types.Array(types.boolean, 2, "C"), types.int64
        forward_k, dq_k, dkdv_k = window_kernels(block_m, block_n, D, Dv, dtype)
        specs += [("forward", forward_k.py_func, types.void(a4, a4, a4, keep, window, real, a4, a3)),
                  ("dq", dq_k.py_func, types.void(a4, a4, a4, a4, a3, a4, keep, window, real, a3, a4)),
                  ("dkdv", dkdv_k.py_func, types.void(a4, a4, a4, a3, a4, keep, window, real, a3, a4, a4))]
    return specs
