"""Softmax cross-entropy over rows of logits on the CPU (Numba), float32, without (M, C) temporaries.

    loss_r = logsumexp(z_r) - z_r[y_r]                                   (forward)
    dz_r = g_r (softmax(z_r) - onehot(y_r))                              (backward)

The forward keeps only each row's logsumexp; the backward recomputes the softmax from it. NumPy
would allocate the shifted logits, their exponentials and the gradient, each as large as the logits
(16 MB for 2048 tokens x 2048 classes). Plain case only: class-index targets, no class weights,
no label smoothing; rows whose target is ignored get loss 0 and gradient 0.
"""
import numba
import numpy as np

from kernels.activations import exp_neg
from kernels.common.cpu import FAST_MATH


@numba.njit(**FAST_MATH)
def _forward(z, row_max, y, valid, loss, lse):
    rows, classes = z.shape
    for r in range(rows):
        m = np.float64(row_max[r])
        total = 0.0
        for c in range(classes):
            total += exp_neg(m - z[r, c])
        lse[r] = m + np.log(total)
        loss[r] = lse[r] - z[r, y[r]] if valid[r] else 0.0


@numba.njit(**FAST_MATH)
def _backward(z, y, valid, lse, g, dz):
    rows, classes = z.shape
    for r in range(rows):
        scale = g[r] if valid[r] else 0.0
        for c in range(classes):
            dz[r, c] = scale * exp_neg(lse[r] - z[r, c])
        if valid[r]:
            dz[r, y[r]] -= scale


def cross_entropy_forward(z: np.ndarray, y: np.ndarray, valid: np.ndarray):
    """z (M, C) float32 logits, y (M,) class ids (any value where not valid) -> (loss (M,) float32, lse (M,))."""
    z = np.ascontiguousarray(z)
    loss, lse = np.empty(z.shape[0], dtype=np.float32), np.empty(z.shape[0])
    _forward(z, z.max(axis=1), y, valid, loss, lse)  # NumPy's max is SIMD (and propagates NaN)
    return loss, lse


def cross_entropy_backward(z: np.ndarray, y: np.ndarray, valid: np.ndarray, lse: np.ndarray, g: np.ndarray):
    """dL/dz (M, C) float32 for per-row upstream gradients g (M,)."""
    dz = np.empty(z.shape, dtype=np.float32)
    _backward(np.ascontiguousarray(z), y, valid, lse, np.ascontiguousarray(g, dtype=np.float32), dz)
    return dz
