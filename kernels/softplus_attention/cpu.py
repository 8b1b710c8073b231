"""Softplus attention (LSSA / LSSAR) on the CPU (Numba): two tiled passes over the keys, no running max.

Forward, for each tile Q_i of `block_m` queries (one parallel item), over the key tiles K_j (V_j) it sees:

    pass 1:  X = s Q_i K_j^T,  Z += rowsum softplus(X),  x_max = max(x_max, rowmax X)
             u_max = n softplus(x_max) / Z - 1   (LSSAR; <= 0: a uniform row, which keeps A)
    pass 2:  A = softplus(X) / Z,  W = A (LSSA)  or  (relu(n A - 1) / u_max)^p (LSSAR),
             O += W V_j,  Zw += rowsum W;   finally O /= Zw.

Softmax needs a running max because e^x overflows; softplus grows linearly, so Z is a plain sum and pass 2 can
weigh each key exactly once Z is known. (For LSSA pass 2 could be folded into pass 1, O = (sum P V) / Z; the two
passes are kept so LSSA and LSSAR share one kernel.)

Backward, per (batch, query head), with D_i = dO_i . O_i, Zw_i = rowsum(W), dW = (dO V^T - D) / Zw:
    LSSAR first makes a pass over all tiles for E_i = sum_j A_ij dA_ij (dA from dW as in the package doc);
    then over key tiles K_j (outer) and the query tiles that see them (inner):
        dX = s * sigmoid(X) * (dA - E) / Z,   dV_j += (W / Zw)^T dO_i,   dK_j += dX^T Q_i,   dQ_i += dX K_j
Score tiles are transposed (keys x queries) and multiplied by `np.dot` (BLAS), as kernels/flash_attention/cpu.py.
softplus and sigmoid use NumPy's exp / log1p (exact in float64; this kernel is not tuned for speed).
"""
import numba
import numpy as np
from numba import prange

from kernels.common import keep_mask, sum_head_groups
from kernels.common.cpu import FAST_MATH, PARALLEL, first_visible_query, tile
from kernels.parallel import parallel_items
from kernels.softplus_attention import check_softplus_inputs, row_scales, visible_counts

BLOCK_M, BLOCK_N = 64, 64


@numba.njit(**FAST_MATH)
def softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), exact for every x."""
    return (x if x > 0 else 0.0) + np.log1p(np.exp(-abs(x)))


@numba.njit(**FAST_MATH)
def sigmoid(x):
    e = np.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@numba.njit(**FAST_MATH)
def weight(a, count, u_max, power):
    """The final (unnormalized) weight of an entry with A = a: a itself for LSSA and uniform rows (u_max <= 0),
    else (relu(n a - 1) / u_max)^p."""
    if u_max <= 0:
        return a
    u = count * a - 1.0
    return (u / u_max) ** power if u > 0 else 0.0


@numba.njit(**FAST_MATH)
def weight_gradient(a, dw, count, u_max, power):
    """dA from dW (see `weight`): dW itself, or n p (u / u_max)^(p-1) / u_max dW where u > 0."""
    if u_max <= 0:
        return dw
    u = count * a - 1.0
    return count * power * (u / u_max) ** (power - 1.0) / u_max * dw if u > 0 else 0.0


@numba.njit(**PARALLEL)
def _forward(q, k, v, keep, causal, scales, counts, reweight, power, block_m, block_n, o, stats):
    B, Hq, T = q.shape[:3]
    tiles = (T + block_m - 1) // block_m
    for item in prange(B * Hq * tiles):
        _forward_tile(q, k, v, keep, causal, scales, counts, reweight, power, block_m, block_n, o, stats,
                      item // (Hq * tiles), (item // tiles) % Hq, (item % tiles) * block_m)


@numba.njit(**FAST_MATH)
def _forward_tile(q, k, v, keep, causal, scales, counts, reweight, power, block_m, block_n, o, stats, b, h, i0):
    """One parallel item of the forward: the queries i0 .. i0 + m - 1 of (batch b, head h)."""
    Hq, T = q.shape[1], q.shape[2]
    Hk, S, Hv, Dv = k.shape[1], k.shape[2], v.shape[1], v.shape[3]
    m = min(block_m, T - i0)
    kh, vh = h // (Hq // Hk), h // (Hq // Hv)
    qi = q[b, h, i0:i0 + m]                                          # (m, D)
    scores = np.empty(block_n * m, q.dtype)
    pv = np.empty((m, Dv), q.dtype)
    acc = np.zeros((m, Dv), q.dtype)
    z, x_max = np.zeros(m, q.dtype), np.full(m, -np.inf, q.dtype)
    u_max, total = np.zeros(m, q.dtype), np.zeros(m, q.dtype)
    stop = min(S, i0 + m) if causal else S
    for j0 in range(0, stop, block_n):                               # pass 1: Z and the largest score
        n = min(block_n, stop - j0)
        st = tile(scores, n, m)
        np.dot(k[b, kh, j0:j0 + n], qi.T, st)                          # S^T (n, m)
        for c in range(n):
            for r in range(first_visible_query(j0 + c, i0, m, causal, keep[b]), m):
                x = scales[b, i0 + r] * st[c, r]
                z[r] += softplus(x)
                x_max[r] = max(x_max[r], x)
    if reweight:
        for r in range(m):
            if z[r] > 0:
                u_max[r] = counts[b, i0 + r] * (softplus(x_max[r]) / z[r]) - 1.0
    for j0 in range(0, stop, block_n):                               # pass 2: the weights and O
        n = min(block_n, stop - j0)
        st = tile(scores, n, m)
        np.dot(k[b, kh, j0:j0 + n], qi.T, st)
        for c in range(n):
            first = first_visible_query(j0 + c, i0, m, causal, keep[b])
            for r in range(first):
                st[c, r] = 0.0
            for r in range(first, m):
                w = weight(softplus(scales[b, i0 + r] * st[c, r]) / z[r], counts[b, i0 + r], u_max[r], power)
                st[c, r] = w
                total[r] += w
        np.dot(st.T, v[b, vh, j0:j0 + n], pv)                          # W V_j (m, Dv)
        for r in range(m):
            for d in range(Dv):
                acc[r, d] += pv[r, d]
    for r in range(m):
        inv = 1.0 / total[r] if total[r] > 0 else 0.0                 # no visible key: O = 0
        for d in range(Dv):
            o[b, h, i0 + r, d] = acc[r, d] * inv
        stats[0, b, h, i0 + r] = z[r]
        stats[1, b, h, i0 + r] = u_max[r]
        stats[2, b, h, i0 + r] = total[r]


def _rows(q, k, causal, key_padding_mask, scale, length_scaled):
    counts = visible_counts(q, k, causal, key_padding_mask)                      # (B, T)
    return np.ascontiguousarray(row_scales(q, counts, scale, length_scaled)), counts


def forward(q, k, v, causal=True, key_padding_mask=None, scale=None, length_scaled=True, power=None,
            block_m=BLOCK_M, block_n=BLOCK_N):
    """(O (B, Hq, T, Dv), stats (3, B, Hq, T)) by two tiled passes; see kernels/softplus_attention."""
    check_softplus_inputs("softplus_attention cpu forward", q, k, v, key_padding_mask, power)
    q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    B, Hq, T, _ = q.shape
    scales, counts = _rows(q, k, causal, key_padding_mask, scale, length_scaled)
    o, stats = np.empty((B, Hq, T, v.shape[3]), q.dtype), np.empty((3, B, Hq, T), q.dtype)
    with parallel_items():
        _forward(q, k, v, keep_mask(key_padding_mask, B, k.shape[2]), bool(causal), scales, counts, power is not None,
                 float(power or 1), block_m, block_n, o, stats)
    return o, stats


@numba.njit(**FAST_MATH)
def _row_terms(q, k, v, do, keep, causal, scales, counts, z, u_max, total, delta, power, block_m, block_n, b, h, kh,
               vh, st_buffer, dp_buffer, e_row):
    """E_i = sum_j A_ij dA_ij for every query of (b, h), into e_row: a pass over all (query, key) tiles."""
    T, S = q.shape[2], k.shape[2]
    for i0 in range(0, T, block_m):
        m = min(block_m, T - i0)
        qi, doi = q[b, h, i0:i0 + m], do[b, h, i0:i0 + m]
        stop = min(S, i0 + m) if causal else S
        for j0 in range(0, stop, block_n):
            n = min(block_n, stop - j0)
            st, dpt = tile(st_buffer, n, m), tile(dp_buffer, n, m)
            np.dot(k[b, kh, j0:j0 + n], qi.T, st)
            np.dot(v[b, vh, j0:j0 + n], doi.T, dpt)                        # dO V^T, transposed
            for c in range(n):
                for r in range(first_visible_query(j0 + c, i0, m, causal, keep), m):
                    i = i0 + r
                    a = softplus(scales[i] * st[c, r]) / z[i]
                    e_row[i] += a * weight_gradient(a, (dpt[c, r] - delta[i]) / total[i], counts[i], u_max[i], power)


@numba.njit(**FAST_MATH)
def _gradient_tile(wt, dxt, j0, i0, causal, keep, scales, counts, z, u_max, total, delta, e_row, power):
    """In place, on transposed (keys x queries) tiles: raw scores -> W / Zw, and dO V^T -> dX = s dL/dx."""
    n, m = wt.shape
    for c in range(n):
        first = first_visible_query(j0 + c, i0, m, causal, keep)
        for r in range(first):
            wt[c, r] = 0.0
            dxt[c, r] = 0.0
        for r in range(first, m):
            i = i0 + r
            x = scales[i] * wt[c, r]
            a = softplus(x) / z[i]
            da = weight_gradient(a, (dxt[c, r] - delta[i]) / total[i], counts[i], u_max[i], power)
            wt[c, r] = weight(a, counts[i], u_max[i], power) / total[i]
            dxt[c, r] = scales[i] * sigmoid(x) * (da - e_row[i]) / z[i]


@numba.njit(**PARALLEL)
def _backward(q, k, v, o, stats, do, keep, causal, scales, counts, reweight, power, block_m, block_n, dq, dk, dv):
    """dq (B, Hq, T, D); dk (B, Hq, S, D) and dv (B, Hq, S, Dv) per query head (summed over groups later)."""
    B, Hq = q.shape[:2]
    for item in prange(B * Hq):
        _backward_head(q, k, v, o, stats, do, keep, causal, scales, counts, reweight, power, block_m, block_n,
                       dq, dk, dv, item // Hq, item % Hq)


@numba.njit(**FAST_MATH)
def _backward_head(q, k, v, o, stats, do, keep, causal, scales, counts, reweight, power, block_m, block_n, dq, dk,
                   dv, b, h):
    """One parallel item of the backward: (batch b, query head h)."""
    Hq, T, D = q.shape[1:]
    Hk, S, Hv, Dv = k.shape[1], k.shape[2], v.shape[1], v.shape[3]
    kh, vh = h // (Hq // Hk), h // (Hq // Hv)
    z, u_max, total = stats[0, b, h], stats[1, b, h], stats[2, b, h]
    delta, e_row = np.empty(T, q.dtype), np.zeros(T, q.dtype)      # D_i = dO_i . O_i,  E_i
    for i in range(T):
        acc = 0.0
        for d in range(Dv):
            acc += do[b, h, i, d] * o[b, h, i, d]
        delta[i] = acc
    st_buffer, dp_buffer = np.empty(block_n * block_m, q.dtype), np.empty(block_n * block_m, q.dtype)
    if reweight:                                                     # E_i needs all keys of row i first
        _row_terms(q, k, v, do, keep[b], causal, scales[b], counts[b], z, u_max, total, delta, power, block_m,
                   block_n, b, h, kh, vh, st_buffer, dp_buffer, e_row)
    dq[b, h] = 0.0
    dk_acc, dv_acc = np.empty((block_n, D), q.dtype), np.empty((block_n, Dv), q.dtype)
    dk_tile, dv_tile, dq_tile = np.empty(block_n * D, q.dtype), np.empty(block_n * Dv, q.dtype), \
        np.empty(block_m * D, q.dtype)
    for j0 in range(0, S, block_n):
        n = min(block_n, S - j0)
        kj, vj = k[b, kh, j0:j0 + n], v[b, vh, j0:j0 + n]
        dk_acc[:n] = 0.0
        dv_acc[:n] = 0.0
        for i0 in range((j0 // block_m) * block_m if causal else 0, T, block_m):
            m = min(block_m, T - i0)
            qi, doi = q[b, h, i0:i0 + m], do[b, h, i0:i0 + m]
            wt, dxt = tile(st_buffer, n, m), tile(dp_buffer, n, m)
            np.dot(kj, qi.T, wt)                                     # raw scores^T, then the weights
            np.dot(vj, doi.T, dxt)                                   # dO V^T, then s dX
            _gradient_tile(wt, dxt, j0, i0, causal, keep[b], scales[b], counts[b], z, u_max, total, delta, e_row,
                           power)
            dv_part, dk_part, dq_part = tile(dv_tile, n, Dv), tile(dk_tile, n, D), tile(dq_tile, m, D)
            np.dot(wt, doi, dv_part)                                 # (W / Zw)^T dO_i
            np.dot(dxt, qi, dk_part)                                 # dX^T Q_i
            np.dot(dxt.T, kj, dq_part)                               # dX K_j
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


def backward(q, k, v, o, stats, do, causal=True, key_padding_mask=None, scale=None, length_scaled=True, power=None,
             block_m=BLOCK_M, block_n=BLOCK_N):
    """(dQ, dK, dV) from the forward's O and stats and the upstream gradient dO; see kernels/softplus_attention."""
    check_softplus_inputs("softplus_attention cpu backward", q, k, v, key_padding_mask, power, do)
    q, k, v, o, stats, do = (np.ascontiguousarray(a, dtype=q.dtype) for a in (q, k, v, o, stats, do))
    (B, Hq, _, D), S, Dv = q.shape, k.shape[2], v.shape[3]
    scales, counts = _rows(q, k, causal, key_padding_mask, scale, length_scaled)
    dq = np.empty_like(q)
    dk, dv = np.empty((B, Hq, S, D), q.dtype), np.empty((B, Hq, S, Dv), q.dtype)
    with parallel_items():
        _backward(q, k, v, o, stats, do, keep_mask(key_padding_mask, B, S), bool(causal), scales, counts,
                  power is not None, float(power or 1), block_m, block_n, dq, dk, dv)
    return dq, sum_head_groups(dk, k.shape[1]), sum_head_groups(dv, v.shape[1])
