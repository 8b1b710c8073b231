"""Row-wise softmax over the last axis on the CPU (Numba), float32, one fused pass each way.

    y_i = e^(a x_i - m) / sum_j e^(a x_j - m),  m = max_j a x_j,  a the scale     (forward)
    dx_i = a y_i (g_i - sum_j g_j y_j)                                           (backward)

With `causal`, row i of each (L, S) block keeps only columns j <= i (attention that cannot look
ahead): the masked columns are never exponentiated, and get exactly 0.

Uses the vectorizable exp of kernels/activations.py. Entries at -inf get exactly 0; a row that is
entirely -inf (a fully masked attention row) gives zeros, not NaN.
"""
import numba
import numpy as np

from kernels.activations import exp_neg
from kernels.common.cpu import FAST_MATH


@numba.njit(**FAST_MATH)
def _softmax_forward(x, out, scale, causal_block):
    rows, n = x.shape
    for r in range(rows):
        width = min(n, r % causal_block + 1) if causal_block else n  # columns this row may see
        m = -np.inf
        for j in range(width):
            m = max(m, scale * x[r, j])
        out[r, width:] = 0.0
        if m == -np.inf:
            out[r, :width] = 0.0
            continue
        total = 0.0
        for j in range(width):
            e = exp_neg(m - scale * x[r, j])
            out[r, j] = e
            total += e
        inv = 1.0 / total
        for j in range(width):
            out[r, j] *= inv


@numba.njit(**FAST_MATH)
def _softmax_backward(y, g, scale, dx):
    rows, n = y.shape
    for r in range(rows):
        dot = 0.0
        for j in range(n):
            dot += np.float64(g[r, j]) * y[r, j]
        for j in range(n):
            dx[r, j] = scale * y[r, j] * (g[r, j] - dot)


def softmax_forward(x: np.ndarray, scale: float = 1.0, causal: bool = False) -> np.ndarray:
    """softmax(scale * x) over the last axis of a float32 array (..., L, S); causal: keep j <= i."""
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    _softmax_forward(rows, out, scale, x.shape[-2] if causal else 0)
    return out.reshape(x.shape)


def softmax_backward(y: np.ndarray, g: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """dL/dx from the softmax output y and the upstream gradient g (float32, same shape)."""
    n = y.shape[-1]
    dx = np.empty((y.size // n, n), dtype=np.float32)
    _softmax_backward(np.ascontiguousarray(y).reshape(-1, n), np.ascontiguousarray(g, dtype=np.float32).reshape(-1, n),
                      scale, dx)
    return dx.reshape(y.shape)
