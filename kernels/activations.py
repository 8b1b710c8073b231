"""Fused elementwise activations on the CPU (Numba), one pass over memory instead of several.

GELU(x) = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2,  GELU'(x) = Phi(x) + x * phi(x),
phi(x) = exp(-x^2 / 2) / sqrt(2 pi). NumPy has no erf, and SciPy's runs on one core; these loops
run in parallel and compute in float64 whatever the storage dtype.
"""
import math

import numba
import numpy as np

INV_SQRT2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@numba.njit(parallel=True, cache=True)
def _gelu_forward(x, out, cdf):
    for i in numba.prange(x.size):
        c = 0.5 * (1.0 + math.erf(x[i] * INV_SQRT2))
        cdf[i] = c
        out[i] = x[i] * c


@numba.njit(parallel=True, cache=True)
def _gelu_backward(x, cdf, g, dx):
    for i in numba.prange(x.size):
        v = x[i]
        dx[i] = g[i] * (cdf[i] + v * math.exp(-0.5 * v * v) * INV_SQRT_2PI)


def gelu_forward(x: np.ndarray):
    """(GELU(x), Phi(x)) with x's shape and dtype; Phi is kept for the backward pass."""
    flat = np.ascontiguousarray(x).reshape(-1)
    out, cdf = np.empty_like(flat), np.empty_like(flat)
    _gelu_forward(flat, out, cdf)
    return out.reshape(x.shape), cdf.reshape(x.shape)


def gelu_backward(x: np.ndarray, cdf: np.ndarray, g: np.ndarray):
    """dL/dx = g * (Phi(x) + x phi(x))."""
    dx = np.empty(x.size, dtype=x.dtype)
    _gelu_backward(np.ascontiguousarray(x).reshape(-1), cdf.reshape(-1),
                   np.ascontiguousarray(g, dtype=x.dtype).reshape(-1), dx)
    return dx.reshape(x.shape)
