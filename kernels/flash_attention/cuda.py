"""FlashAttention in Numba CUDA: forward, and the backward as dK/dV then dQ kernels (no atomics).

The algorithm is the one of cpu.py (see its doc and ../flash_attention/__init__.py for the API); the GPU layout:

- Forward, grid (ceil(T / block_m), B * Hq), block_m threads: one thread per query row. The thread keeps its
  query, its running max m and sum l and its output accumulator in registers (`cuda.local.array`); the block
  stages each tile of block_n keys and values in shared memory, loaded by all its threads together.
- Backward, first D_i = rowsum(dO_i * O_i) (one thread per row), then
  dK/dV, grid (ceil(S / block_n), B * Hq), block_n threads: one thread per key row, looping over query tiles
  staged in shared memory (Q, dO, L, D), accumulating dk_j and dv_j in registers;
  dQ, grid (ceil(T / block_m), B * Hq), block_m threads: one thread per query row, looping over key tiles.
  Each output row has one owner, so no atomics. dK and dV are written per query head and summed over each group
  of query heads by a last small kernel when keys or values are shared (GQA, MQA, DiffQKV).
- Kernels come from factories, `make_*_kernel(block_m, block_n, d, dv, causal, dtype)`, cached: the tile sizes,
  head dims, causality and dtype are compile-time constants, as `cuda.shared.array` and `cuda.local.array`
  shapes must be on a real GPU (the simulator would accept run-time ones, a GPU does not).
- A thread past the end of the sequence still loads its share of each tile and meets every `syncthreads`; it
  only skips the arithmetic. Masked scores are -inf and e^-inf = 0; a row that sees no key is guarded (o = 0,
  L = -inf), so nothing becomes NaN. No fastmath: it would assume no infinities.

The launch wrappers `forward` / `backward` take CuPy arrays (results are CuPy arrays) or Numba device arrays
(results are device arrays); NumPy arrays are copied to the device and the results back, which is how the tests
run them on the simulator (NUMBA_ENABLE_CUDASIM=1).
"""
import functools
import math

import numpy as np
from numba import cuda, types

from kernels.common import check_inputs, default_scale

SHARED_BYTES = 32 * 1024  # per tile pair (keys and values, or queries and output gradients): under the 48 KB limit


def default_blocks(d, dv, itemsize):
    """block_m = block_n: the largest power of two <= 64 whose tiles fit in SHARED_BYTES."""
    block = 64
    while block > 16 and block * (d + dv) * itemsize > SHARED_BYTES:
        block //= 2
    return block, block


def _scalar(dtype):
    return {"float32": np.float32, "float64": np.float64}[dtype]


def _element(dtype):
    return {"float32": types.float32, "float64": types.float64}[dtype]


# ---- kernels --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def make_forward_kernel(block_m, block_n, d, dv, causal, dtype="float32"):
    """forward(q, k, v, keep, scale, o, lse): o (B, Hq, T, dv) and lse (B, Hq, T); keep (B, S) bool."""
    real, element = _scalar(dtype), _element(dtype)
    zero, neg_inf = real(0.0), real(-np.inf)

    @cuda.jit
    def forward(q, k, v, keep, scale, o, lse):
        k_tile = cuda.shared.array((block_n, d), element)
        v_tile = cuda.shared.array((block_n, dv), element)
        q_row = cuda.local.array(d, element)
        acc = cuda.local.array(dv, element)
        scores = cuda.local.array(block_n, element)
        Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
        t = cuda.threadIdx.x
        i0 = cuda.blockIdx.x * block_m
        i = i0 + t
        active = i < T
        for x in range(d):
            q_row[x] = q[b, h, i, x] if active else zero
        for x in range(dv):
            acc[x] = zero
        row_max, row_sum = neg_inf, zero
        stop = S
        if causal and i0 + block_m < S:  # causal: no key past the block's last query
            stop = i0 + block_m
        for j0 in range(0, stop, block_n):
            for e in range(t, block_n * d, block_m):      # the block loads the tile together
                c, x = e // d, e % d
                k_tile[c, x] = k[b, kh, j0 + c, x] if j0 + c < S else zero
            for e in range(t, block_n * dv, block_m):
                c, x = e // dv, e % dv
                v_tile[c, x] = v[b, vh, j0 + c, x] if j0 + c < S else zero
            cuda.syncthreads()
            if active:
                n = stop - j0 if stop - j0 < block_n else block_n
                tile_max = row_max
                for c in range(n):                           # S = scale q K^T, masked: -inf
                    j = j0 + c
                    s = neg_inf
                    if keep[b, j] and (not causal or j <= i):
                        s = zero
                        for x in range(d):
                            s += q_row[x] * k_tile[c, x]
                        s *= scale
                    scores[c] = s
                    tile_max = s if s > tile_max else tile_max
                if tile_max > neg_inf:                       # else this row has seen no key yet
                    alpha = math.exp(row_max - tile_max)     # e^(m - m'); e^-inf = 0 on the first key
                    row_sum *= alpha
                    for x in range(dv):
                        acc[x] *= alpha
                    for c in range(n):
                        p = math.exp(scores[c] - tile_max)
                        row_sum += p
                        for x in range(dv):
                            acc[x] += p * v_tile[c, x]
                    row_max = tile_max
            cuda.syncthreads()
        if active:
            empty = row_sum == zero                          # the query sees no key
            inv = zero if empty else real(1.0) / row_sum
            for x in range(dv):
                o[b, h, i, x] = acc[x] * inv
            lse[b, h, i] = neg_inf if empty else row_max + math.log(row_sum)

    return forward


@functools.lru_cache(maxsize=None)
def make_delta_kernel(block, dv, dtype="float32"):
    """delta(o, do, out): out (B, Hq, T) = rowsum(do * o), one thread per row, grid (ceil(T / block), B * Hq)."""
    zero = _scalar(dtype)(0.0)

    @cuda.jit
    def delta(o, do, out):
        Hq, T = o.shape[1], o.shape[2]
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        i = cuda.blockIdx.x * block + cuda.threadIdx.x
        if i < T:
            total = zero
            for x in range(dv):
                total += do[b, h, i, x] * o[b, h, i, x]
            out[b, h, i] = total

    return delta


@functools.lru_cache(maxsize=None)
def make_dkdv_kernel(block_m, block_n, d, dv, causal, dtype="float32"):
    """dkdv(q, k, v, do, lse, delta, keep, scale, dk, dv_out): dk (B, Hq, S, d) and dv_out (B, Hq, S, dv),
    the gradients of the key and value rows as each query head reads them. One thread per key row."""
    zero, element = _scalar(dtype)(0.0), _element(dtype)

    @cuda.jit
    def dkdv(q, k, v, do, lse, delta, keep, scale, dk, dv_out):
        q_tile = cuda.shared.array((block_m, d), element)
        do_tile = cuda.shared.array((block_m, dv), element)
        lse_tile = cuda.shared.array(block_m, element)
        delta_tile = cuda.shared.array(block_m, element)
        k_row = cuda.local.array(d, element)
        v_row = cuda.local.array(dv, element)
        dk_acc = cuda.local.array(d, element)
        dv_acc = cuda.local.array(dv, element)
        Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
        t = cuda.threadIdx.x
        j0 = cuda.blockIdx.x * block_n
        j = j0 + t
        active = j < S
        seen = active and keep[b, j]                          # a padded key gets zero gradients
        for x in range(d):
            k_row[x] = k[b, kh, j, x] if active else zero
            dk_acc[x] = zero
        for x in range(dv):
            v_row[x] = v[b, vh, j, x] if active else zero
            dv_acc[x] = zero
        start = (j0 // block_m) * block_m if causal else 0   # causal: only queries i >= j0 see these keys
        for i0 in range(start, T, block_m):
            for e in range(t, block_m * d, block_n):
                r, x = e // d, e % d
                q_tile[r, x] = q[b, h, i0 + r, x] if i0 + r < T else zero
            for e in range(t, block_m * dv, block_n):
                r, x = e // dv, e % dv
                do_tile[r, x] = do[b, h, i0 + r, x] if i0 + r < T else zero
            for r in range(t, block_m, block_n):
                lse_tile[r] = lse[b, h, i0 + r] if i0 + r < T else zero
                delta_tile[r] = delta[b, h, i0 + r] if i0 + r < T else zero
            cuda.syncthreads()
            if seen:
                m = T - i0 if T - i0 < block_m else block_m
                for r in range(m):
                    if not causal or i0 + r >= j:
                        s = zero
                        dp = zero
                        for x in range(d):
                            s += q_tile[r, x] * k_row[x]
                        for x in range(dv):
                            dp += do_tile[r, x] * v_row[x]
                        p = math.exp(s * scale - lse_tile[r])     # this query sees key j, so L is finite
                        ds = p * (dp - delta_tile[r]) * scale
                        for x in range(dv):
                            dv_acc[x] += p * do_tile[r, x]
                        for x in range(d):
                            dk_acc[x] += ds * q_tile[r, x]
            cuda.syncthreads()
        if active:
            for x in range(d):
                dk[b, h, j, x] = dk_acc[x]
            for x in range(dv):
                dv_out[b, h, j, x] = dv_acc[x]

    return dkdv


@functools.lru_cache(maxsize=None)
def make_dq_kernel(block_m, block_n, d, dv, causal, dtype="float32"):
    """dq_kernel(q, k, v, do, lse, delta, keep, scale, dq): dq (B, Hq, T, d). One thread per query row."""
    zero, element = _scalar(dtype)(0.0), _element(dtype)

    @cuda.jit
    def dq_kernel(q, k, v, do, lse, delta, keep, scale, dq):
        k_tile = cuda.shared.array((block_n, d), element)
        v_tile = cuda.shared.array((block_n, dv), element)
        q_row = cuda.local.array(d, element)
        do_row = cuda.local.array(dv, element)
        acc = cuda.local.array(d, element)
        Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
        b, h = cuda.blockIdx.y // Hq, cuda.blockIdx.y % Hq
        kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
        t = cuda.threadIdx.x
        i0 = cuda.blockIdx.x * block_m
        i = i0 + t
        active = i < T
        for x in range(d):
            q_row[x] = q[b, h, i, x] if active else zero
            acc[x] = zero
        for x in range(dv):
            do_row[x] = do[b, h, i, x] if active else zero
        row_lse = lse[b, h, i] if active else zero
        row_delta = delta[b, h, i] if active else zero
        stop = S
        if causal and i0 + block_m < S:
            stop = i0 + block_m
        for j0 in range(0, stop, block_n):
            for e in range(t, block_n * d, block_m):
                c, x = e // d, e % d
                k_tile[c, x] = k[b, kh, j0 + c, x] if j0 + c < S else zero
            for e in range(t, block_n * dv, block_m):
                c, x = e // dv, e % dv
                v_tile[c, x] = v[b, vh, j0 + c, x] if j0 + c < S else zero
            cuda.syncthreads()
            if active:
                n = stop - j0 if stop - j0 < block_n else block_n
                for c in range(n):
                    j = j0 + c
                    if keep[b, j] and (not causal or j <= i):
                        s = zero
                        dp = zero
                        for x in range(d):
                            s += q_row[x] * k_tile[c, x]
                        for x in range(dv):
                            dp += do_row[x] * v_tile[c, x]
                        ds = math.exp(s * scale - row_lse) * (dp - row_delta)
                        for x in range(d):
                            acc[x] += ds * k_tile[c, x]
            cuda.syncthreads()
        if active:
            for x in range(d):
                dq[b, h, i, x] = acc[x] * scale

    return dq_kernel


@cuda.jit
def sum_groups_kernel(x, out):
    """out (B, H, S, E)[b, g, s, e] = sum over the query heads h of group g of x (B, Hq, S, E)[b, h, s, e]."""
    B, H, S, E = out.shape
    group = x.shape[1] // H
    n = cuda.grid(1)
    if n < B * H * S * E:
        e, s, g, b = n % E, (n // E) % S, (n // (E * S)) % H, n // (E * S * H)
        total = x[b, g * group, s, e]
        for u in range(1, group):
            total += x[b, g * group + u, s, e]
        out[b, g, s, e] = total


# (block_m, block_n, d, dv, causal, dtype) at which test_cuda_compile.py compiles every kernel for a real GPU
PTX_CONFIGS = [(64, 64, 64, 64, True, "float32"), (32, 16, 32, 16, False, "float64")]


def kernel_signatures(configs=PTX_CONFIGS):
    """(name, Python function, signature) of every kernel at each configuration, for `cuda.compile_ptx`."""
    specs = []
    for config in configs:
        block_m, _, _, dv, _, dtype = config
        real = _element(dtype)
        a4, a3 = types.Array(real, 4, "C"), types.Array(real, 3, "C")
        keep = types.Array(types.boolean, 2, "C")
        specs += [
            ("forward", make_forward_kernel(*config).py_func, types.void(a4, a4, a4, keep, real, a4, a3)),
            ("delta", make_delta_kernel(block_m, dv, dtype).py_func, types.void(a4, a4, a3)),
            ("dkdv", make_dkdv_kernel(*config).py_func, types.void(a4, a4, a4, a4, a3, a3, keep, real, a4, a4)),
            ("dq", make_dq_kernel(*config).py_func, types.void(a4, a4, a4, a4, a3, a3, keep, real, a4)),
            ("sum_groups", sum_groups_kernel.py_func, types.void(a4, a4)),
        ]
    return specs


# ---- launch wrappers --------------------------------------------------------------------------------------

class _Device:
    """Puts arrays on the device in the caller's library (CuPy, Numba device arrays, or NumPy through copies)."""

    def __init__(self, like):
        module = type(like).__module__
        self.kind = "cupy" if module.startswith("cupy") else ("device" if hasattr(like, "copy_to_host") else "numpy")
        if self.kind == "cupy":
            import cupy
            self.cupy = cupy

    def put(self, a):
        if self.kind == "cupy":
            return self.cupy.ascontiguousarray(a)
        if self.kind == "device":
            return a if a.is_c_contiguous() else cuda.to_device(np.ascontiguousarray(a.copy_to_host()))
        return cuda.to_device(np.ascontiguousarray(a))

    def empty(self, shape, dtype):
        return self.cupy.empty(shape, dtype) if self.kind == "cupy" else cuda.device_array(shape, dtype)

    def keep(self, key_padding_mask, B, S):
        if key_padding_mask is None:
            return self.cupy.ones((B, S), bool) if self.kind == "cupy" else cuda.to_device(np.ones((B, S), bool))
        return self.put(key_padding_mask)

    def result(self, a):
        return a.copy_to_host() if self.kind == "numpy" else a


def _grid(n, block, B, Hq):
    return ((n + block - 1) // block, B * Hq)


def _sum_groups(device, x, heads):
    B, Hq, S, E = x.shape
    if heads == Hq:
        return x
    out = device.empty((B, heads, S, E), x.dtype)
    total = B * heads * S * E
    sum_groups_kernel[(total + 127) // 128, 128](x, out)
    return out


def _config(q, v, causal, block_m, block_n):
    D, Dv, dtype = q.shape[3], v.shape[3], str(q.dtype)
    bm, bn = default_blocks(D, Dv, q.dtype.itemsize)
    return (block_m or bm, block_n or bn, D, Dv, bool(causal), dtype)


def forward(q, k, v, causal=False, key_padding_mask=None, scale=None, block_m=None, block_n=None):
    """(O (B, Hq, T, Dv), L (B, Hq, T)) on the GPU; see the module doc for the array types."""
    check_inputs("flash_attention cuda forward", q, k, v, key_padding_mask)
    device = _Device(q)
    config = _config(q, v, causal, block_m, block_n)
    (B, Hq, T, _), S, Dv = q.shape, k.shape[2], v.shape[3]
    scale = _scalar(config[-1])(default_scale(q, scale))
    q, k, v = device.put(q), device.put(k), device.put(v)
    o, lse = device.empty((B, Hq, T, Dv), q.dtype), device.empty((B, Hq, T), q.dtype)
    make_forward_kernel(*config)[_grid(T, config[0], B, Hq), config[0]](
        q, k, v, device.keep(key_padding_mask, B, S), scale, o, lse)
    return device.result(o), device.result(lse)


def backward(q, k, v, o, lse, do, causal=False, key_padding_mask=None, scale=None, block_m=None, block_n=None):
    """(dQ, dK, dV) on the GPU from the forward's O and L and the upstream gradient dO."""
    check_inputs("flash_attention cuda backward", q, k, v, key_padding_mask, do)
    device = _Device(q)
    config = _config(q, v, causal, block_m, block_n)
    block_m, block_n = config[0], config[1]
    (B, Hq, T, D), S, Dv = q.shape, k.shape[2], v.shape[3]
    scale = _scalar(config[-1])(default_scale(q, scale))
    heads_k, heads_v = k.shape[1], v.shape[1]
    q, k, v, o, lse, do = (device.put(a) for a in (q, k, v, o, lse, do))
    keep = device.keep(key_padding_mask, B, S)
    delta = device.empty((B, Hq, T), q.dtype)
    make_delta_kernel(block_m, Dv, config[-1])[_grid(T, block_m, B, Hq), block_m](o, do, delta)
    dk, dv = device.empty((B, Hq, S, D), q.dtype), device.empty((B, Hq, S, Dv), q.dtype)
    make_dkdv_kernel(*config)[_grid(S, block_n, B, Hq), block_n](q, k, v, do, lse, delta, keep, scale, dk, dv)
    dq = device.empty((B, Hq, T, D), q.dtype)
    make_dq_kernel(*config)[_grid(T, block_m, B, Hq), block_m](q, k, v, do, lse, delta, keep, scale, dq)
    dk, dv = _sum_groups(device, dk, heads_k), _sum_groups(device, dv, heads_v)
    return device.result(dq), device.result(dk), device.result(dv)
