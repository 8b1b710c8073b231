"""Sliding-window attention on the CPU (Numba): FlashAttention's tiled online softmax on the band, O(T w).

Forward, for each tile Q_i of `block_m` queries (i0 .. i0 + m - 1), over the key tiles in the band [i0 - w + 1,
i0 + m) only (`block_n` keys each; the first tile starts at the band's edge, not at a multiple of block_n):

    S = scale * Q_i K_j^T (+ band mask)       m' = max(m, rowmax S),   P = e^(S - m')
    l = e^(m - m') l + rowsum P               O = e^(m - m') O + P V_j,   m = m'
    finally O /= l, L = m + log l.

Backward, per (batch, query head), over key tiles K_j (j0 .. j0 + n - 1) and, inside, only the query tiles that
see them, i in [j0, j0 + n - 1 + w), with D = rowsum(dO * O):

    P = e^(scale Q_i K_j^T - L)   dV_j += P^T dO_i   dS = P * (dO_i V_j^T - D)
    dQ_i += scale dS K_j          dK_j += scale dS^T Q_i

The layout follows kernels/flash_attention/cpu.py: score tiles transposed (keys x queries) so per-query statistics
update as contiguous vectors, tile products by `np.dot` (BLAS, one thread per parallel item), dK and dV per query
head then summed over groups. In a tile, key j is seen by the queries r in [j - i0, j + w - i0) (clipped to the
tile): every other entry of its row is masked to exactly 0.
"""
import numba
import numpy as np
from numba import prange

from kernels.activations import exp_neg
from kernels.common import default_scale, keep_mask, sum_head_groups
from kernels.common.cpu import FAST_MATH, PARALLEL, tile
from kernels.parallel import parallel_items
from kernels.sliding_window_attention import check_window_inputs

BLOCK_M, BLOCK_N = 64, 64


@numba.njit(**FAST_MATH)
def _visible_queries(j, i0, m, window, keep):
    """(first, last): the queries r, first <= r < last, of the tile of m queries from i0 that see key j."""
    if not keep[j]:
        return 0, 0
    first, last = j - i0, j + window - i0                              # i0 + r in [j, j + w)
    first = 0 if first < 0 else (m if first > m else first)
    last = first if last < first else (m if last > m else last)
    return first, last


@numba.njit(**FAST_MATH)
def _online_softmax(st, j0, i0, window, keep, scale, row_max, row_sum, alpha, shift, tile_sum):
    """Turn the transposed score tile st (n keys, m queries) into e^(scale st - m') in place, updating each
    query's running max and sum; alpha = e^(m - m') rescales what was accumulated before. Masked entries: 0."""
    n, m = st.shape
    tile_max = shift                                                     # the buffer first holds the new maxima
    tile_max[:] = row_max
    for c in range(n):
        first, last = _visible_queries(j0 + c, i0, m, window, keep)
        for r in range(first):
            st[c, r] = -np.inf
        for r in range(first, last):
            st[c, r] *= scale
        for r in range(last, m):
            st[c, r] = -np.inf
        for r in range(m):
            tile_max[r] = np.maximum(tile_max[r], st[c, r])
    for r in range(m):
        new = tile_max[r]
        alpha[r] = 0.0 if row_max[r] == -np.inf else exp_neg(new - row_max[r])
        row_max[r] = new
        shift[r] = 0.0 if new == -np.inf else new                       # no visible key yet: e^(-inf - 0) = 0
        tile_sum[r] = 0.0
    for c in range(n):
        for r in range(m):
            p = exp_neg(shift[r] - st[c, r])
            st[c, r] = p
            tile_sum[r] += p
    for r in range(m):
        row_sum[r] = alpha[r] * row_sum[r] + tile_sum[r]


@numba.njit(**PARALLEL)
def _forward(q, k, v, keep, window, scale, block_m, block_n, o, lse):
    B, Hq, T = q.shape[:3]
    tiles = (T + block_m - 1) // block_m
    for item in prange(B * Hq * tiles):
        _forward_tile(q, k, v, keep, window, scale, block_m, block_n, o, lse,
                      item // (Hq * tiles), (item // tiles) % Hq, (item % tiles) * block_m)


@numba.njit(**FAST_MATH)
def _forward_tile(q, k, v, keep, window, scale, block_m, block_n, o, lse, b, h, i0):
    """One parallel item: the queries i0 .. i0 + m - 1 of (batch b, query head h)."""
    Hq, T = q.shape[1], q.shape[2]
    Hk, S, Hv, Dv = k.shape[1], k.shape[2], v.shape[1], v.shape[3]
    m = min(block_m, T - i0)
    kh, vh = h // (Hq // Hk), h // (Hq // Hv)
    qi = q[b, h, i0:i0 + m]                                          # (m, D)
    scores = np.empty(block_n * m, q.dtype)
    pv = np.empty((m, Dv), q.dtype)
    acc = np.zeros((m, Dv), q.dtype)
    row_max = np.full(m, -np.inf, q.dtype)
    row_sum = np.zeros(m, q.dtype)
    alpha, shift, tile_sum = np.empty(m, q.dtype), np.empty(m, q.dtype), np.empty(m, q.dtype)
    start, stop = max(0, i0 - window + 1), min(S, i0 + m)             # the band of this query tile
    for j0 in range(start, stop, block_n):
        n = min(block_n, stop - j0)
        st = tile(scores, n, m)
        np.dot(k[b, kh, j0:j0 + n], qi.T, st)                          # S^T (n, m)
        _online_softmax(st, j0, i0, window, keep[b], scale, row_max, row_sum, alpha, shift, tile_sum)
        np.dot(st.T, v[b, vh, j0:j0 + n], pv)                          # P V_j (m, Dv)
        for r in range(m):
            for d in range(Dv):
                acc[r, d] = alpha[r] * acc[r, d] + pv[r, d]
    for r in range(m):
        if row_sum[r] == 0:                                           # no visible key
            o[b, h, i0 + r] = 0.0
            lse[b, h, i0 + r] = -np.inf
            continue
        inv = 1.0 / row_sum[r]
        for d in range(Dv):
            o[b, h, i0 + r, d] = acc[r, d] * inv
        lse[b, h, i0 + r] = row_max[r] + np.log(row_sum[r])


def forward(q, k, v, window, key_padding_mask=None, scale=None, block_m=BLOCK_M, block_n=BLOCK_N):
    """(O (B, Hq, T, Dv), L (B, Hq, T)) by the tiled online softmax on the band; see the module doc."""
    check_window_inputs("sliding_window_attention cpu forward", q, k, v, window, key_padding_mask)
    q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    B, Hq, T, _ = q.shape
    o = np.empty((B, Hq, T, v.shape[3]), q.dtype)
    lse = np.empty((B, Hq, T), q.dtype)
    with parallel_items():
        _forward(q, k, v, keep_mask(key_padding_mask, B, k.shape[2]), window, q.dtype.type(default_scale(q, scale)),
                 block_m, block_n, o, lse)
    return o, lse


@numba.njit(**PARALLEL)
def _backward(q, k, v, o, lse, do, keep, window, scale, block_m, block_n, dq, dk, dv):
    """dq (B, Hq, T, D); dk (B, Hq, S, D) and dv (B, Hq, S, Dv) per query head (summed over groups later)."""
    B, Hq = q.shape[:2]
    for item in prange(B * Hq):
        _backward_head(q, k, v, o, lse, do, keep, window, scale, block_m, block_n, dq, dk, dv, item // Hq, item % Hq)


@numba.njit(**FAST_MATH)
def _backward_head(q, k, v, o, lse, do, keep, window, scale, block_m, block_n, dq, dk, dv, b, h):
    """One parallel item: (batch b, query head h)."""
    Hq, T, D = q.shape[1:]
    Hk, S, Hv, Dv = k.shape[1], k.shape[2], v.shape[1], v.shape[3]
    kh, vh = h // (Hq // Hk), h // (Hq // Hv)
    delta = np.empty(T, q.dtype)                                     # D_i = rowsum(dO_i * O_i)
    for i in range(T):
        total = 0.0
        for d in range(Dv):
            total += do[b, h, i, d] * o[b, h, i, d]
        delta[i] = total
    dq[b, h] = 0.0
    p_buffer, ds_buffer = np.empty(block_n * block_m, q.dtype), np.empty(block_n * block_m, q.dtype)
    dk_acc, dv_acc = np.empty((block_n, D), q.dtype), np.empty((block_n, Dv), q.dtype)
    dk_tile, dv_tile = np.empty(block_n * D, q.dtype), np.empty(block_n * Dv, q.dtype)
    dq_tile = np.empty(block_m * D, q.dtype)
    for j0 in range(0, S, block_n):
        n = min(block_n, S - j0)
        kj, vj = k[b, kh, j0:j0 + n], v[b, vh, j0:j0 + n]            # (n, D), (n, Dv)
        dk_acc[:n] = 0.0
        dv_acc[:n] = 0.0
        for i0 in range(j0, min(T, j0 + n - 1 + window), block_m):   # the queries that see these keys
            m = min(block_m, T - i0)
            qi, doi = q[b, h, i0:i0 + m], do[b, h, i0:i0 + m]        # (m, D), (m, Dv)
            pt = tile(p_buffer, n, m)
            np.dot(kj, qi.T, pt)                                     # S^T (n, m)
            for c in range(n):                                       # P^T = e^(scale S^T - L), masked: 0
                first, last = _visible_queries(j0 + c, i0, m, window, keep[b])
                for r in range(first):
                    pt[c, r] = 0.0
                for r in range(first, last):
                    pt[c, r] = exp_neg(lse[b, h, i0 + r] - scale * pt[c, r])
                for r in range(last, m):
                    pt[c, r] = 0.0
            dst = tile(ds_buffer, n, m)
            np.dot(vj, doi.T, dst)                                   # dP^T (n, m) = V_j dO_i^T
            for c in range(n):                                       # scale dS^T = scale P^T (dP^T - D)
                for r in range(m):
                    dst[c, r] = scale * pt[c, r] * (dst[c, r] - delta[i0 + r])
            dv_part, dk_part, dq_part = tile(dv_tile, n, Dv), tile(dk_tile, n, D), tile(dq_tile, m, D)
            np.dot(pt, doi, dv_part)                                 # P^T dO_i
            np.dot(dst, qi, dk_part)                                 # scale dS^T Q_i
            np.dot(dst.T, kj, dq_part)                               # scale dS K_j
            for c in range(n):
                for d in range(Dv):
                    dv_acc[c, d] += dv_part[c, d]
                for d in range(D):
                    dk_acc[c, d] += dk_part[c, d]
            for r in range(m):
                for d in range(D):
                    dq[b, h, i0 + r, d] += dq_part[r, d]
        dk[b, h, j0:j0 + n] = dk_acc[:n]
        dv[b, h, j0:j0 + n] = dv_acc[:n]


def backward(q, k, v, o, lse, do, window, key_padding_mask=None, scale=None, block_m=BLOCK_M, block_n=BLOCK_N):
    """(dQ, dK, dV) from the forward's O and L and the upstream gradient dO; see the module doc."""
    check_window_inputs("sliding_window_attention cpu backward", q, k, v, window, key_padding_mask, do)
    q, k, v, o, lse, do = (np.ascontiguousarray(a, dtype=q.dtype) for a in (q, k, v, o, lse, do))
    (B, Hq, _, D), S, Dv = q.shape, k.shape[2], v.shape[3]
    dq = np.empty_like(q)
    dk, dv = np.empty((B, Hq, S, D), q.dtype), np.empty((B, Hq, S, Dv), q.dtype)
    with parallel_items():
        _backward(q, k, v, o, lse, do, keep_mask(key_padding_mask, B, S), window, q.dtype.type(default_scale(q, scale)),
                  block_m, block_n, dq, dk, dv)
    return dq, sum_head_groups(dk, k.shape[1]), sum_head_groups(dv, v.shape[1])
