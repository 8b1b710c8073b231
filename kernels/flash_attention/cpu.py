"""FlashAttention on the CPU (Numba): the tiled online softmax, forward and backward, in O(T) extra memory.

Forward (FlashAttention-2, Algorithm 1), for each tile Q_i of `block_m` queries, over the tiles K_j, V_j of
`block_n` keys (a causal tile stops at the diagonal):

    S = scale * Q_i K_j^T (+ mask)            m' = max(m, rowmax S)
    P = e^(S - m')                            l = e^(m - m') l + rowsum P
    O = e^(m - m') O + P V_j                  m = m'
    finally O /= l and L = m + log l: only L is stored for the backward, never P.

Backward (Algorithm 2), with D = rowsum(dO * O) (the softmax Jacobian's row term, from O instead of P):

    P = e^(scale * Q_i K_j^T - L)    dV_j += P^T dO_i    dP = dO_i V_j^T    dS = P * (dP - D_i)
    dQ_i += scale dS K_j             dK_j += scale dS^T Q_i

CPU layout choices:
- The score tile is computed transposed, S^T = K_j Q_i^T (keys x queries): each query's running max, sum and
  rescale factor then update as whole vectors along a contiguous row, which LLVM vectorizes (a max *within* a
  row is a reduction it does not vectorize).
- The products of tiles are `np.dot` inside `njit`: Numba calls SciPy's BLAS (sgemm/dgemm) on them, so the
  O(T^2 D) work runs at GEMM speed. Q (and dO) tiles are transposed once into contiguous (D, m) copies that
  carry the scale: OpenBLAS multiplies K_j Q_i^T about 1.7x faster from such a copy than from a transposed view.
  The parallelism is ours (a `prange` over tiles), so SciPy's OpenBLAS is kept single-threaded while a kernel
  runs (`kernels.parallel.parallel_items`): nested BLAS threads would only fight.
- Forward: one parallel item per (batch, query head, query tile). Backward: one item per (batch, query head),
  looping over key tiles and, inside, over query tiles: S and P are computed once for dQ, dK and dV (5 GEMMs per
  tile pair instead of the 7 of two separate passes) and dQ accumulates without atomics, since the item owns
  that head's dQ. B * Hq items are plenty for a few CPU cores.
- Keys and values shared by several query heads: the forward reads head h // group; the backward writes dK and dV
  per query head, and the groups are summed afterwards (no two items write the same memory).
- float32 and float64 both compile (one specialization each); the row statistics are kept in the data's dtype.
"""

import numba
import numpy as np
from numba import prange

from kernels.activations import exp_neg_like
from kernels.common import check_inputs, default_scale, keep_mask, sum_head_groups
from kernels.common.cpu import FAST_MATH, PARALLEL, first_visible_query, tile
from kernels.parallel import parallel_items

BLOCK_M, BLOCK_N = 64, 64
BACKWARD_BLOCK_N = 128  # each key tile streams all of a head's Q and dO tiles: fewer, larger key tiles


# ---- pieces of a tile -------------------------------------------------------------------------------

@numba.njit(**FAST_MATH)
def _online_softmax(st, j0, i0, causal, keep, row_max, row_sum, alpha, shift, tile_sum):
    """Turn the transposed tile of scaled scores st (n keys, m queries) into e^(st - m') in place.

    Updates each query's running max (row_max) and sum (row_sum); alpha = e^(m - m') rescales what was
    accumulated before this tile. Masked entries become exactly 0.
    """
    n, m = st.shape
    tile_max = shift  # the buffer first holds the new maxima
    for r in range(m):
        tile_max[r] = row_max[r]
    for c in range(n):
        first = first_visible_query(j0 + c, i0, m, causal, keep)
        for r in range(first):
            st[c, r] = -np.inf
        for r in range(m):
            tile_max[r] = np.maximum(tile_max[r], st[c, r])  # np.maximum vectorizes (`a if a > b else b` does not)
    for r in range(m):
        new = tile_max[r]
        alpha[r] = 0.0 if row_max[r] == -np.inf else exp_neg_like(new - row_max[r])
        row_max[r] = new
        shift[r] = 0.0 if new == -np.inf else new  # a query with no visible key yet: e^(-inf - 0) = 0
        tile_sum[r] = 0.0
    for c in range(n):
        for r in range(m):
            p = exp_neg_like(shift[r] - st[c, r])
            st[c, r] = p
            tile_sum[r] += p
    for r in range(m):
        row_sum[r] = alpha[r] * row_sum[r] + tile_sum[r]


# ---- forward ----------------------------------------------------------------------------------------

@numba.njit(**FAST_MATH)
def _forward_tile(q, k, v, keep, causal, scale, block_n, o, lse, b, h, i0, m):
    """Rows i0 .. i0 + m of o[b, h] and lse[b, h]."""
    Hq, S, Dv = q.shape[1], k.shape[2], v.shape[3]
    kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])         # the key and value heads of query head h
    qt = np.empty((q.shape[3], m), q.dtype)                             # scale Q_i^T (D, m)
    for r in range(m):
        for d in range(q.shape[3]):
            qt[d, r] = scale * q[b, h, i0 + r, d]
    scores, pv, acc = np.empty(block_n * m, q.dtype), np.empty((m, Dv), q.dtype), np.zeros((m, Dv), q.dtype)
    row_max, row_sum = np.full(m, -np.inf, q.dtype), np.zeros(m, q.dtype)
    alpha, shift, tile_sum = np.empty(m, q.dtype), np.empty(m, q.dtype), np.empty(m, q.dtype)
    stop = min(S, i0 + m) if causal else S                            # causal: no key past the last query
    for j0 in range(0, stop, block_n):
        n = min(block_n, stop - j0)
        st = tile(scores, n, m)
        np.dot(k[b, kh, j0:j0 + n], qt, st)                             # S^T (n, m) = scale K_j Q_i^T
        _online_softmax(st, j0, i0, causal, keep[b], row_max, row_sum, alpha, shift, tile_sum)
        np.dot(st.T, v[b, vh, j0:j0 + n], pv)                           # (m, Dv) = P V_j
        for r in range(m):
            for d in range(Dv):
                acc[r, d] = alpha[r] * acc[r, d] + pv[r, d]
    for r in range(m):
        empty = row_sum[r] == 0                                         # the query sees no key
        inv = 0.0 if empty else 1.0 / row_sum[r]
        for d in range(Dv):
            o[b, h, i0 + r, d] = acc[r, d] * inv
        lse[b, h, i0 + r] = -np.inf if empty else row_max[r] + np.log(row_sum[r])


@numba.njit(**PARALLEL)
def _forward(q, k, v, keep, causal, scale, block_m, block_n, o, lse):
    """One parallel item per (batch, query head, query tile). The item's work is a plain function, not part of
    the parallel loop's body: that keeps Numba's parallel compilation short."""
    B, Hq, T, _ = q.shape
    tiles = (T + block_m - 1) // block_m
    for item in prange(B * Hq * tiles):
        b, h = item // (Hq * tiles), (item // tiles) % Hq
        i0 = (tiles - 1 - item % tiles) * block_m  # the last (causal: costliest) tiles first
        _forward_tile(q, k, v, keep, causal, scale, block_n, o, lse, b, h, i0, min(block_m, T - i0))


def forward(q, k, v, causal=False, key_padding_mask=None, scale=None, block_m=BLOCK_M, block_n=BLOCK_N):
    """(O (B, Hq, T, Dv), L (B, Hq, T)) by the tiled online softmax; see the module doc."""
    check_inputs("flash_attention cpu forward", q, k, v, key_padding_mask)
    q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    B, Hq, T, _ = q.shape
    o, lse = np.empty((B, Hq, T, v.shape[3]), q.dtype), np.empty((B, Hq, T), q.dtype)
    keep, scale = keep_mask(key_padding_mask, B, k.shape[2]), q.dtype.type(default_scale(q, scale))
    with parallel_items():
        _forward(q, k, v, keep, bool(causal), scale, block_m, block_n, o, lse)
    return o, lse


# ---- backward ---------------------------------------------------------------------------------------

@numba.njit(**FAST_MATH)
def _backward_head(q, k, v, o, lse, do, keep, causal, scale, block_m, block_n, dq, dk, dv, b, h):
    """dq[b, h], and dk[b, h], dv[b, h]: the gradients of the key and value rows as query head h reads them."""
    Hq, T, D = q.shape[1], q.shape[2], q.shape[3]
    S, Dv = k.shape[2], v.shape[3]
    kh, vh = h // (Hq // k.shape[1]), h // (Hq // v.shape[1])
    delta = np.empty(T, q.dtype)                                        # D_i = rowsum(dO_i * O_i)
    q_t, do_t = np.empty(T * D, q.dtype), np.empty(T * Dv, q.dtype)   # scale Q_i^T, dO_i^T, tile after tile
    for i0 in range(0, T, block_m):
        m = min(block_m, T - i0)
        qt, dot = tile(q_t[i0 * D:], D, m), tile(do_t[i0 * Dv:], Dv, m)
        for r in range(m):
            total = 0.0
            for d in range(Dv):
                total += do[b, h, i0 + r, d] * o[b, h, i0 + r, d]
                dot[d, r] = do[b, h, i0 + r, d]
            delta[i0 + r] = total
            for d in range(D):
                qt[d, r] = scale * q[b, h, i0 + r, d]
                dq[b, h, i0 + r, d] = 0.0
    p_buffer, ds_buffer = np.empty(block_n * block_m, q.dtype), np.empty(block_n * block_m, q.dtype)
    dk_buffer, dv_buffer, dq_buffer = (np.empty(block_n * D, q.dtype), np.empty(block_n * Dv, q.dtype),
                                       np.empty(block_m * D, q.dtype))
    for j0 in range(0, S, block_n):
        n = min(block_n, S - j0)
        kj, vj = k[b, kh, j0:j0 + n], v[b, vh, j0:j0 + n]               # (n, D), (n, Dv)
        for c in range(n):
            for d in range(D):
                dk[b, h, j0 + c, d] = 0.0
            for d in range(Dv):
                dv[b, h, j0 + c, d] = 0.0
        first_tile = (j0 // block_m) * block_m if causal else 0         # causal: queries i >= j0 only
        for i0 in range(first_tile, T, block_m):
            m = min(block_m, T - i0)
            qi, doi = q[b, h, i0:i0 + m], do[b, h, i0:i0 + m]           # (m, D), (m, Dv)
            pt = tile(p_buffer, n, m)
            np.dot(kj, tile(q_t[i0 * D:], D, m), pt)                   # S^T (n, m) = scale K_j Q_i^T
            for c in range(n):                                          # P^T = e^(S^T - L); masked: 0
                first = first_visible_query(j0 + c, i0, m, causal, keep[b])
                for r in range(first):
                    pt[c, r] = 0.0
                for r in range(first, m):
                    pt[c, r] = exp_neg_like(lse[b, h, i0 + r] - pt[c, r])
            dst = tile(ds_buffer, n, m)
            np.dot(vj, tile(do_t[i0 * Dv:], Dv, m), dst)               # dP^T (n, m) = V_j dO_i^T
            for c in range(n):                                          # scale dS^T = scale P^T (dP^T - D)
                for r in range(m):
                    dst[c, r] = scale * pt[c, r] * (dst[c, r] - delta[i0 + r])
            dv_part, dk_part, dq_part = tile(dv_buffer, n, Dv), tile(dk_buffer, n, D), tile(dq_buffer, m, D)
            np.dot(pt, doi, dv_part)                                    # P^T dO_i
            np.dot(dst, qi, dk_part)                                    # scale dS^T Q_i
            np.dot(dst.T, kj, dq_part)                                  # scale dS K_j
            for c in range(n):
                for d in range(Dv):
                    dv[b, h, j0 + c, d] += dv_part[c, d]
                for d in range(D):
                    dk[b, h, j0 + c, d] += dk_part[c, d]
            for r in range(m):
                for d in range(D):
                    dq[b, h, i0 + r, d] += dq_part[r, d]


@numba.njit(**PARALLEL)
def _backward(q, k, v, o, lse, do, keep, causal, scale, block_m, block_n, dq, dk, dv):
    """One parallel item per (batch, query head): dq (B, Hq, T, D); dk (B, Hq, S, D), dv (B, Hq, S, Dv)."""
    B, Hq = q.shape[0], q.shape[1]
    for item in prange(B * Hq):
        _backward_head(q, k, v, o, lse, do, keep, causal, scale, block_m, block_n, dq, dk, dv, item // Hq, item % Hq)


def backward(q, k, v, o, lse, do, causal=False, key_padding_mask=None, scale=None, block_m=BLOCK_M,
             block_n=BACKWARD_BLOCK_N):
    """(dQ, dK, dV) from the forward's O and L and the upstream gradient dO; see the module doc."""
    check_inputs("flash_attention cpu backward", q, k, v, key_padding_mask, do)
    q, k, v, o, lse, do = (np.ascontiguousarray(a, dtype=q.dtype) for a in (q, k, v, o, lse, do))
    (B, Hq, _, D), S, Dv = q.shape, k.shape[2], v.shape[3]
    dq = np.empty_like(q)
    dk, dv = np.empty((B, Hq, S, D), q.dtype), np.empty((B, Hq, S, Dv), q.dtype)
    with parallel_items():
        _backward(q, k, v, o, lse, do, keep_mask(key_padding_mask, B, S), bool(causal),
                  q.dtype.type(default_scale(q, scale)), block_m, block_n, dq, dk, dv)
    return dq, sum_head_groups(dk, k.shape[1]), sum_head_groups(dv, v.shape[1])
