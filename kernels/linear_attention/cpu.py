"""Causal linear attention on the CPU (Numba): the chunked algorithm, forward and backward.

The work is one kernel, the causal product with an optional per-head decay lambda_h = e^(-slope_h):

    out_i = sum_{j<=i} lambda^(i-j) (a_i . b_j) c_j          a, b (B, H, T, F), c (B, H, T, E)

computed chunk by chunk (C positions, chunk t0 .. t0 + n - 1, rows r = 0 .. n - 1):

    intra:  out_c  = (a_c b_c^T * D) c_c,           D_rj = lambda^(r-j) for j <= r, else 0    (an n x n tile)
    inter:  out_c += diag(lambda^(r+1)) a_c S,      S = sum_{j<t0} lambda^(t0-1-j) b_j c_j^T  (F, E)
    carry:  S <- lambda^n S + (b_c * lambda^(n-1-j))^T c_c

Linear attention is lambda = 1 (D = the causal mask) with a = fq, b = fk, c = [V, 1] (the last column gives the
denominator); Lightning Attention (kernels/lightning_attention) is the same kernel with decay. The backward is three
calls of it (kernels/linear_attention, "Backward").

CPU layout: one parallel item per (batch, head), walking its chunks in order with the F x E state in a local
buffer (O(F E) memory, nothing stored per chunk); the tile products are `np.dot` (SciPy's BLAS, one thread per
item, `parallel_items`). A head with grouped keys/values reads head h // group.
float32 and float64 both compile; the decay weights are computed in float64 and stored in the data's dtype.
"""

import numba
import numpy as np
from numba import prange

from kernels.common.cpu import PARALLEL, tile
from kernels.linear_attention import EPS, attention_backward, attention_forward, check_chunk
from kernels.parallel import parallel_items

CHUNK = 64


@numba.njit(**PARALLEL)
def _causal_product(a, b, c, slope, chunk, out):
    B, H, T, F = a.shape
    Hb, Hc, E = b.shape[1], c.shape[1], c.shape[3]
    for item in prange(B * H):
        n_, h = item // H, item % H
        hb, hc = h // (H // Hb), h // (H // Hc)
        s = slope[h]
        decay = np.zeros((chunk, chunk), a.dtype)                        # D_rj = lambda^(r-j), j <= r
        for r in range(chunk):
            for j in range(r + 1):
                decay[r, j] = np.exp(-s * (r - j))
        state = np.zeros((F, E), a.dtype)
        update = np.empty((F, E), a.dtype)
        scores_buffer, weighted_buffer = np.empty(chunk * chunk, a.dtype), np.empty(chunk * F, a.dtype)
        intra_buffer, inter_buffer = np.empty(chunk * E, a.dtype), np.empty(chunk * E, a.dtype)
        for t0 in range(0, T, chunk):
            n = min(chunk, T - t0)
            ac, bc, cc = a[n_, h, t0:t0 + n], b[n_, hb, t0:t0 + n], c[n_, hc, t0:t0 + n]  # (n, F) (n, F) (n, E)
            scores = tile(scores_buffer, n, n)
            np.dot(ac, bc.T, scores)                                     # a_c b_c^T
            for r in range(n):
                for j in range(n):
                    scores[r, j] *= decay[r, j]
            intra, inter = tile(intra_buffer, n, E), tile(inter_buffer, n, E)
            np.dot(scores, cc, intra)                                    # (a_c b_c^T * D) c_c
            np.dot(ac, state, inter)                                     # a_c S
            for r in range(n):
                w = np.exp(-s * (r + 1))
                for e in range(E):
                    out[n_, h, t0 + r, e] = intra[r, e] + w * inter[r, e]
            weighted = tile(weighted_buffer, n, F)                       # b_j lambda^(n-1-j)
            for j in range(n):
                w = np.exp(-s * (n - 1 - j))
                for f in range(F):
                    weighted[j, f] = w * bc[j, f]
            np.dot(weighted.T, cc, update)
            carry = np.exp(-s * n)
            for f in range(F):
                for e in range(E):
                    state[f, e] = carry * state[f, e] + update[f, e]


def causal_product(a, b, c, slope=None, chunk=CHUNK):
    """out (B, H, T, E), out_i = sum_{j<=i} e^(-slope_h (i-j)) (a_i . b_j) c_j; slope (H,) or None (no decay).
    b and c may have fewer heads than a (head h reads h // group)."""
    check_chunk("causal_product cpu", chunk)
    a, b, c = (np.ascontiguousarray(x) for x in (a, b, c))
    B, H, T, _ = a.shape
    slope = np.zeros(H) if slope is None else np.ascontiguousarray(slope, dtype=np.float64)
    out = np.empty((B, H, T, c.shape[3]), a.dtype)
    with parallel_items():
        _causal_product(a, b, c, slope, chunk, out)
    return out


def _product(chunk):
    return lambda a, b, c, slope=None: causal_product(a, b, c, slope, chunk)


def forward(fq, fk, v, causal=True, normalize=True, eps=EPS, chunk=CHUNK):
    """(O (B, Hq, T, Dv), den (B, Hq, T) or None) by the chunked algorithm; see kernels/linear_attention."""
    return attention_forward("linear_attention cpu forward", _product(chunk), fq, fk, v, causal, normalize, eps)


def backward(fq, fk, v, o, den, do, causal=True, normalize=True, eps=EPS, chunk=CHUNK):
    """(dfq, dfk, dV) from the forward's O and den and the upstream gradient dO."""
    return attention_backward("linear_attention cpu backward", _product(chunk), fq, fk, v, o, den, do, causal,
                              normalize, eps)
