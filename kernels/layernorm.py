"""LayerNorm over the last axis on the CPU (Numba), float32 storage, float64 row statistics.

    y = x_hat * w + b,   x_hat = (x - mean) * rstd,   rstd = 1 / sqrt(var + eps)          (forward)
    dx = rstd * (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)),  g_hat = g * w       (backward)
    dw = sum over rows of g * x_hat,   db = sum over rows of g

Each row is read a few times while it sits in cache, instead of one NumPy pass over all rows per
operation. The forward keeps mean and rstd per row (not x_hat) for the backward.
"""
import math

import numba
import numpy as np

from kernels.common.cpu import FAST_MATH


@numba.njit(**FAST_MATH)
def _layer_norm_forward(x, w, b, eps, out, mean, rstd):
    rows, n = x.shape
    for r in range(rows):
        total = 0.0
        for j in range(n):
            total += x[r, j]
        mu = total / n
        sq = 0.0
        for j in range(n):
            c = x[r, j] - mu
            sq += c * c
        inv = 1.0 / math.sqrt(sq / n + eps)
        mean[r], rstd[r] = mu, inv
        for j in range(n):
            out[r, j] = (x[r, j] - mu) * inv * w[j] + b[j]


@numba.njit(**FAST_MATH)
def _layer_norm_backward(x, w, mean, rstd, g, dx, dw, db):
    rows, n = x.shape
    for r in range(rows):
        mu, inv = mean[r], rstd[r]
        sum_g = 0.0
        sum_gx = 0.0
        for j in range(n):
            x_hat = (x[r, j] - mu) * inv
            g_hat = g[r, j] * w[j]
            sum_g += g_hat
            sum_gx += g_hat * x_hat
            dw[j] += g[r, j] * x_hat
            db[j] += g[r, j]
        mean_g, mean_gx = sum_g / n, sum_gx / n
        for j in range(n):
            x_hat = (x[r, j] - mu) * inv
            dx[r, j] = inv * (g[r, j] * w[j] - mean_g - x_hat * mean_gx)


def layer_norm_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float):
    """x (M, N) float32, w and b (N,) -> (y, mean, rstd); mean and rstd (M,) float64."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    mean, rstd = np.empty(x.shape[0]), np.empty(x.shape[0])
    _layer_norm_forward(x, w, b, eps, out, mean, rstd)
    return out, mean, rstd


def layer_norm_backward(x: np.ndarray, w: np.ndarray, mean, rstd, g: np.ndarray):
    """(dx (M, N), dw (N,), db (N,)) in float32."""
    x, g = np.ascontiguousarray(x), np.ascontiguousarray(g, dtype=np.float32)
    dx = np.empty_like(x)
    dw, db = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    _layer_norm_backward(x, w, mean, rstd, g, dx, dw, db)
    return dx, dw.astype(np.float32), db.astype(np.float32)
