"""Row-wise softmax over the last axis on the CPU (Numba), float32, one fused pass each way.

    y_i = e^(x_i - m) / sum_j e^(x_j - m),  m = max_j x_j      (forward)
    dx_i = y_i (g_i - sum_j g_j y_j)                            (backward)

Uses the vectorizable exp of kernels/activations.py. Entries at -inf get exactly 0; a row that is
entirely -inf (a fully masked attention row) gives zeros, not NaN.
"""
import numba
import numpy as np

from kernels.activations import _FAST, exp_neg


@numba.njit(**_FAST)
def _softmax_forward(x, out):
    rows, n = x.shape
    for r in range(rows):
        m = -np.inf
        for j in range(n):
            m = max(m, np.float64(x[r, j]))
        if m == -np.inf:
            out[r, :] = 0.0
            continue
        total = 0.0
        for j in range(n):
            e = exp_neg(m - x[r, j])
            out[r, j] = e
            total += e
        scale = 1.0 / total
        for j in range(n):
            out[r, j] *= scale


@numba.njit(**_FAST)
def _softmax_backward(y, g, dx):
    rows, n = y.shape
    for r in range(rows):
        dot = 0.0
        for j in range(n):
            dot += np.float64(g[r, j]) * y[r, j]
        for j in range(n):
            dx[r, j] = y[r, j] * (g[r, j] - dot)


def softmax_forward(x: np.ndarray) -> np.ndarray:
    """softmax over the last axis of a float32 array."""
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    _softmax_forward(rows, out)
    return out.reshape(x.shape)


def softmax_backward(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dx from the softmax output y and the upstream gradient g (float32, same shape)."""
    n = y.shape[-1]
    dx = np.empty((y.size // n, n), dtype=np.float32)
    _softmax_backward(np.ascontiguousarray(y).reshape(-1, n), np.ascontiguousarray(g, dtype=np.float32).reshape(-1, n), dx)
    return dx.reshape(y.shape)
