"""Softplus attention (LSSA / LSSAR) on the GPU (Numba CUDA): two passes over the keys, forward and backward.

Forward: grid (ceil(T / block_m), B Hq), one thread per query row i; the block stages key tiles (and, in pass 2,
value tiles) in shared memory. Pass 1 sums Z_i = sum_j softplus(x_ij) and keeps the largest x_ij; pass 2 weighs
each key, W_ij = A_ij (LSSA) or (relu(n_i A_ij - 1) / u_max)^p (LSSAR), and accumulates O_i and sum_j W_ij in
registers. No running max and no rescaling: softplus cannot overflow.

Backward, two kernels (no atomics), with D_i = dO_i . O_i and the forward's stats (Z, u_max, sum W):
- `dq`: grid (ceil(T / block_m), B Hq), thread per query row: stores D_i; for LSSAR first a pass over its keys for
  E_i = sum_j A_ij dA_ij (stored too), then a pass for dq_i = sum_j dX_ij k_j, dX = s_i sigmoid(x) (dA - E_i) / Z_i.
- `dkdv`: grid (ceil(S / block_n), B Hq), thread per key row j, over the query tiles that see it (Q, dO and the
  seven per-row numbers staged in shared memory): dv_j = sum_i W_ij / Zw_i dO_i, dk_j = sum_i dX_ij q_i, per query
  head; grouped heads are summed afterwards.

As kernels/sliding_window_attention/cuda.py: factories per (block_m, block_n, D, Dv, causal, LSSAR, dtype) give
compile-time shapes; every thread of a block runs the same tile loops, so the `syncthreads` are uniform; threads past
the end load zeros and skip the arithmetic. Arrays are CuPy arrays (NumPy under the simulator).
"""
import functools
import math

import numba
import numpy as np
from numba import cuda, types

from kernels.common import array_module, keep_mask, sum_head_groups
from kernels.softplus_attention import check_softplus_inputs, row_scales, visible_counts

BLOCK_M, BLOCK_N = 32, 32


@functools.lru_cache(maxsize=None)
def softplus_kernels(block_m, block_n, D, Dv, causal, reweight, dtype):
    """(forward, dq, dkdv) kernels; `causal` and `reweight` (LSSAR) are compile-time switches."""
    real = numba.from_dtype(np.dtype(dtype))                             # array element type
    scalar = np.dtype(dtype).type                                         # typed constants keep float32 math
    zero, one, neg_inf = scalar(0), scalar(1), scalar(-np.inf)

    @cuda.jit
    def forward(q, k, v, keep, scales, counts, power, o, stats):
        k_tile = cuda.shared.array((block_n, D), real)
        v_tile = cuda.shared.array((block_n, Dv), real)
        row = cuda.local.array(D, real)
        acc = cuda.local.array(Dv, real)
        Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
        tid, i0 = cuda.threadIdx.x, cuda.blockIdx.x * block_m
        i = i0 + tid
        active = i < T
        for d in range(D):
            row[d] = q[b, h, i, d] if active else zero
        for d in range(Dv):
            acc[d] = zero
        scale = scales[b, i] if active else zero
        count = counts[b, i] if active else zero
        stop = S if not causal or i0 + block_m > S else i0 + block_m
        z, x_max = zero, neg_inf
        for j0 in range(0, stop, block_n):                               # pass 1: Z_i and the largest x
            for e in range(tid, block_n * D, block_m):
                c, d = e // D, e % D
                k_tile[c, d] = k[b, kh, j0 + c, d] if j0 + c < stop else zero
            cuda.syncthreads()
            if active:
                for c in range(stop - j0 if stop - j0 < block_n else block_n):
                    j = j0 + c
                    if keep[b, j] and (not causal or j <= i):
                        x = zero
                        for d in range(D):
                            x += row[d] * k_tile[c, d]
                        x *= scale
                        z += (x if x > zero else zero) + math.log1p(math.exp(-abs(x)))       # softplus
                        x_max = x if x > x_max else x_max
            cuda.syncthreads()
        u_max = zero
        if reweight and z > zero:
            u_max = count * (((x_max if x_max > zero else zero) + math.log1p(math.exp(-abs(x_max)))) / z) - one
        total = zero
        for j0 in range(0, stop, block_n):                               # pass 2: the weights and O
            for e in range(tid, block_n * D, block_m):
                c, d = e // D, e % D
                k_tile[c, d] = k[b, kh, j0 + c, d] if j0 + c < stop else zero
            for e in range(tid, block_n * Dv, block_m):
                c, d = e // Dv, e % Dv
                v_tile[c, d] = v[b, vh, j0 + c, d] if j0 + c < stop else zero
            cuda.syncthreads()
            if active:
                for c in range(stop - j0 if stop - j0 < block_n else block_n):
                    j = j0 + c
                    if keep[b, j] and (not causal or j <= i):
                        x = zero
                        for d in range(D):
                            x += row[d] * k_tile[c, d]
                        x *= scale
                        w = ((x if x > zero else zero) + math.log1p(math.exp(-abs(x)))) / z            # A_ij
                        if reweight and u_max > zero:                # LSSAR; uniform rows keep A
                            u = count * w - one
                            w = math.pow(u / u_max, power) if u > zero else zero
                        total += w
                        for d in range(Dv):
                            acc[d] += w * v_tile[c, d]
            cuda.syncthreads()
        if active:
            inv = one / total if total > zero else zero                  # no visible key: O = 0
            for d in range(Dv):
                o[b, h, i, d] = acc[d] * inv
            stats[0, b, h, i] = z
            stats[1, b, h, i] = u_max
            stats[2, b, h, i] = total

    @cuda.jit
    def dq(q, k, v, o, stats, do, keep, scales, counts, power, delta, e_rows, dq_out):
        k_tile = cuda.shared.array((block_n, D), real)
        v_tile = cuda.shared.array((block_n, Dv), real)
        row = cuda.local.array(D, real)
        do_row = cuda.local.array(Dv, real)
        acc = cuda.local.array(D, real)
        Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
        tid, i0 = cuda.threadIdx.x, cuda.blockIdx.x * block_m
        i = i0 + tid
        active = i < T
        d_i = zero
        for d in range(D):
            row[d] = q[b, h, i, d] if active else zero
            acc[d] = zero
        for d in range(Dv):
            do_row[d] = do[b, h, i, d] if active else zero
            d_i += do_row[d] * (o[b, h, i, d] if active else zero)
        scale = scales[b, i] if active else zero
        count = counts[b, i] if active else zero
        z = stats[0, b, h, i] if active else zero
        u_max = stats[1, b, h, i] if active else zero
        total = stats[2, b, h, i] if active else zero
        if active:
            delta[b, h, i] = d_i
        stop = S if not causal or i0 + block_m > S else i0 + block_m
        e_i = zero
        for sweep in range(2 if reweight else 1):                        # LSSAR: first E_i, then dq
            for j0 in range(0, stop, block_n):
                for e in range(tid, block_n * D, block_m):
                    c, d = e // D, e % D
                    k_tile[c, d] = k[b, kh, j0 + c, d] if j0 + c < stop else zero
                for e in range(tid, block_n * Dv, block_m):
                    c, d = e // Dv, e % Dv
                    v_tile[c, d] = v[b, vh, j0 + c, d] if j0 + c < stop else zero
                cuda.syncthreads()
                if active:
                    for c in range(stop - j0 if stop - j0 < block_n else block_n):
                        j = j0 + c
                        if keep[b, j] and (not causal or j <= i):
                            x, dp = zero, zero
                            for d in range(D):
                                x += row[d] * k_tile[c, d]
                            for d in range(Dv):
                                dp += do_row[d] * v_tile[c, d]
                            x *= scale
                            a = ((x if x > zero else zero) + math.log1p(math.exp(-abs(x)))) / z
                            da = (dp - d_i) / total                  # dW, then dA
                            if reweight and u_max > zero:
                                u = count * a - one
                                da = count * power * math.pow(u / u_max, power - one) / u_max * da if u > zero \
                                    else zero
                            if reweight and sweep == 0:
                                e_i += a * da
                            else:
                                dx = scale / (one + math.exp(-x)) * (da - e_i) / z   # s sigmoid(x) dP
                                for d in range(D):
                                    acc[d] += dx * k_tile[c, d]
                cuda.syncthreads()
        if active:
            e_rows[b, h, i] = e_i
            for d in range(D):
                dq_out[b, h, i, d] = acc[d]

    @cuda.jit
    def dkdv(q, k, v, stats, do, keep, scales, counts, power, delta, e_rows, dk, dv):
        q_tile = cuda.shared.array((block_m, D), real)
        do_tile = cuda.shared.array((block_m, Dv), real)
        rows = cuda.shared.array((7, block_m), real)                     # s, n, Z, u_max, Zw, D, E per query
        k_row = cuda.local.array(D, real)
        v_row = cuda.local.array(Dv, real)
        dk_acc = cuda.local.array(D, real)
        dv_acc = cuda.local.array(Dv, real)
        Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
        tid, j0 = cuda.threadIdx.x, cuda.blockIdx.x * block_n
        j = j0 + tid
        active = j < S
        seen = active and keep[b, j]
        for d in range(D):
            k_row[d] = k[b, kh, j, d] if active else zero
            dk_acc[d] = zero
        for d in range(Dv):
            v_row[d] = v[b, vh, j, d] if active else zero
            dv_acc[d] = zero
        for i0 in range((j0 // block_m) * block_m if causal else 0, T, block_m):
            for e in range(tid, block_m * D, block_n):
                r, d = e // D, e % D
                q_tile[r, d] = q[b, h, i0 + r, d] if i0 + r < T else zero
            for e in range(tid, block_m * Dv, block_n):
                r, d = e // Dv, e % Dv
                do_tile[r, d] = do[b, h, i0 + r, d] if i0 + r < T else zero
            for r in range(tid, block_m, block_n):
                inside = i0 + r < T
                rows[0, r] = scales[b, i0 + r] if inside else zero
                rows[1, r] = counts[b, i0 + r] if inside else zero
                rows[2, r] = stats[0, b, h, i0 + r] if inside else one
                rows[3, r] = stats[1, b, h, i0 + r] if inside else zero
                rows[4, r] = stats[2, b, h, i0 + r] if inside else one
                rows[5, r] = delta[b, h, i0 + r] if inside else zero
                rows[6, r] = e_rows[b, h, i0 + r] if inside else zero
            cuda.syncthreads()
            if seen:
                for r in range(T - i0 if T - i0 < block_m else block_m):
                    if not causal or i0 + r >= j:
                        x, dp = zero, zero
                        for d in range(D):
                            x += q_tile[r, d] * k_row[d]
                        for d in range(Dv):
                            dp += do_tile[r, d] * v_row[d]
                        x *= rows[0, r]
                        a = ((x if x > zero else zero) + math.log1p(math.exp(-abs(x)))) / rows[2, r]
                        w, da = a, (dp - rows[5, r]) / rows[4, r]
                        if reweight and rows[3, r] > zero:
                            u = rows[1, r] * a - one
                            w = math.pow(u / rows[3, r], power) if u > zero else zero
                            da = rows[1, r] * power * math.pow(u / rows[3, r], power - one) / rows[3, r] * da \
                                if u > zero else zero
                        w /= rows[4, r]
                        dx = rows[0, r] / (one + math.exp(-x)) * (da - rows[6, r]) / rows[2, r]
                        for d in range(Dv):
                            dv_acc[d] += w * do_tile[r, d]
                        for d in range(D):
                            dk_acc[d] += dx * q_tile[r, d]
            cuda.syncthreads()
        if active:
            for d in range(D):
                dk[b, h, j, d] = dk_acc[d]
            for d in range(Dv):
                dv[b, h, j, d] = dv_acc[d]

    return forward, dq, dkdv


def _setup(op, q, k, v, key_padding_mask, causal, scale, length_scaled, power, block_m, block_n, do=None):
    check_softplus_inputs(op, q, k, v, key_padding_mask, power, do)
    xp = array_module(q)
    B, S = q.shape[0], k.shape[2]
    counts = visible_counts(q, k, causal, key_padding_mask)
    keep = keep_mask(key_padding_mask, B, S, xp)
    kernels = softplus_kernels(block_m, block_n, q.shape[3], v.shape[3], bool(causal), power is not None,
                               str(q.dtype))
    rows = (keep, xp.ascontiguousarray(row_scales(q, counts, scale, length_scaled)), counts,
            q.dtype.type(power or 1))
    return xp, kernels, rows


def forward(q, k, v, causal=True, key_padding_mask=None, scale=None, length_scaled=True, power=None,
            block_m=BLOCK_M, block_n=BLOCK_N):
    """(O (B, Hq, T, Dv), stats (3, B, Hq, T)) by two tiled passes; see kernels/softplus_attention."""
    xp, (kernel, _, _), rows = _setup("softplus_attention cuda forward", q, k, v, key_padding_mask, causal, scale,
                                      length_scaled, power, block_m, block_n)
    q, k, v = (xp.ascontiguousarray(a) for a in (q, k, v))
    B, Hq, T, _ = q.shape
    o, stats = xp.empty((B, Hq, T, v.shape[3]), q.dtype), xp.empty((3, B, Hq, T), q.dtype)
    kernel[(-(-T // block_m), B * Hq), block_m](q, k, v, *rows, o, stats)
    return o, stats


def backward(q, k, v, o, stats, do, causal=True, key_padding_mask=None, scale=None, length_scaled=True, power=None,
             block_m=BLOCK_M, block_n=BLOCK_N):
    """(dQ, dK, dV) from the forward's O and stats and the upstream gradient dO; see kernels/softplus_attention."""
    xp, (_, dq_kernel, dkdv_kernel), rows = _setup("softplus_attention cuda backward", q, k, v, key_padding_mask,
                                                   causal, scale, length_scaled, power, block_m, block_n, do)
    q, k, v, o, stats, do = (xp.ascontiguousarray(a, dtype=q.dtype) for a in (q, k, v, o, stats, do))
    (B, Hq, T, D), (S, Dv) = q.shape, v.shape[2:]
    delta, e_rows, dq = xp.empty((B, Hq, T), q.dtype), xp.empty((B, Hq, T), q.dtype), xp.empty_like(q)
    dk, dv = xp.empty((B, Hq, S, D), q.dtype), xp.empty((B, Hq, S, Dv), q.dtype)
    dq_kernel[(-(-T // block_m), B * Hq), block_m](q, k, v, o, stats, do, *rows, delta, e_rows, dq)
    dkdv_kernel[(-(-S // block_n), B * Hq), block_n](q, k, v, stats, do, *rows, delta, e_rows, dk, dv)
    return dq, sum_head_groups(dk, k.shape[1]), sum_head_groups(dv, v.shape[1])


def kernel_signatures():
    """(name, Python function, signature) of each kernel at two configurations, for
    tests/kernels/test_cuda_compile.py."""
    specs = []
    for block_m, block_n, D, Dv, causal, reweight, dtype in [(32, 32, 64, 64, True, True, "float32"),
                                                            (16, 32, 32, 16, False, False, "float64")]:
        real = numba.from_dtype(np.dtype(dtype))
        a4, a3, a2 = (types.Array(real, n, "C") for n in (4, 3, 2))
        keep = types.Array(types.boolean, 2, "C")
        forward_k, dq_k, dkdv_k = softplus_kernels(block_m, block_n, D, Dv, causal, reweight, dtype)
        specs += [("forward", forward_k.py_func, types.void(a4, a4, a4, keep, a2, a2, real, a4, a4)),
                  ("dq", dq_k.py_func, types.void(a4, a4, a4, a4, a4, a4, keep, a2, a2, real, a3, a3, a4)),
                  ("dkdv", dkdv_k.py_func, types.void(a4, a4, a4, a4, a4, keep, a2, a2, real, a3, a3, a4, a4))]
    return specs
