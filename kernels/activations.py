"""GELU on the CPU in one fused pass each way (Numba), for float32 arrays.

    GELU(x) = x Phi(x),    Phi(x) = (1 + erf(x / sqrt 2)) / 2
    GELU'(x) = Phi(x) + x phi(x),    phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

A chain of NumPy calls makes one pass over memory per operation, and NumPy has no erf (SciPy's is
a scalar loop). Here each element is read once and written once, and the loop is vectorized by
LLVM (AVX) because it uses only +, *, /, min and copysign:
- erf from Abramowitz & Stegun 7.1.26: erf(z) = 1 - t (a1 + t (a2 + ... a5 t)) e^(-z^2),
  t = 1 / (1 + p z), |error| < 1.5e-7 (a few float32 ulps);
- e^(-u) as (e^(-u/32))^32 with a degree-9 Taylor polynomial for e^(-u/32).
Arithmetic is float64 inside the loop. `error_model="numpy"` lets division skip Python's
ZeroDivisionError check, which would otherwise block vectorization (the settings are
kernels.common.cpu.FAST_MATH, shared by every CPU kernel).
float64 inputs are not handled here: minigrad keeps the exact erf for them (gradient checks).

The e^(-u) polynomials live here, and only here: `exp_neg` (float64) for the fused kernels, and
`exp_neg_like`, which picks a float32 version for float32 data (the attention kernels).
"""
import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

from kernels.common.cpu import FAST_MATH

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@numba.njit(inline="always", **FAST_MATH)
def exp_neg(u):
    """e^(-u) for u >= 0 (also u = inf): relative error < 2e-10 for u <= 10, < 1e-3 up to 40; 0 from 40 on.
    NaN in, NaN out (the comparisons are written so that a NaN u falls through to the polynomial)."""
    y = -(40.0 if u > 40.0 else u) * (1.0 / 32.0)  # in [-1.25, 0]
    p = 1 + y * (1 + y * (1 / 2 + y * (1 / 6 + y * (1 / 24 + y * (1 / 120 + y * (1 / 720 + y * (
        1 / 5040 + y * (1 / 40320 + y / 362880))))))))  # sum of y^k / k!, k <= 9 (Horner)
    p = p * p  # ^2
    p = p * p  # ^4
    p = p * p  # ^8
    p = p * p  # ^16
    return 0.0 if u >= 40.0 else p * p  # ^32


_f32 = np.float32


@numba.njit(inline="always", **FAST_MATH)
def exp_neg_float32(u):
    """e^(-u) for u >= 0 in float32 arithmetic (twice exp_neg's SIMD lanes), by the same method: a Taylor polynomial
    of e^y at y = -u/16 (degree 7), squared four times. Relative error < 1.5e-6 for u <= 5 (the squarings multiply
    the float32 rounding by 16); absolute error < 1e-6 everywhere; 0 from u = 40 on."""
    y = -(_f32(40.0) if u > _f32(40.0) else u) * _f32(1.0 / 16.0)  # in [-2.5, 0]
    p = _f32(1) + y * (_f32(1) + y * (_f32(1 / 2) + y * (_f32(1 / 6) + y * (_f32(1 / 24) + y * (_f32(1 / 120) + y * (
        _f32(1 / 720) + y * _f32(1 / 5040)))))))
    p = p * p
    p = p * p
    p = p * p
    return _f32(0.0) if u >= _f32(40.0) else p * p


def exp_neg_like(u):
    """e^(-u) in u's precision: float32 arithmetic for float32, exp_neg's float64 otherwise (inside njit only)."""
    raise NotImplementedError("exp_neg_like is for Numba-compiled code")


@overload(exp_neg_like, jit_options=FAST_MATH)
def _exp_neg_like(u):
    if u == types.float32:
        return lambda u: exp_neg_float32(u)
    return lambda u: exp_neg(u)


@numba.njit(inline="always", **FAST_MATH)
def normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2 with the Abramowitz & Stegun erf."""
    z = min(abs(x) * _INV_SQRT2, 6.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    erfc = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - erfc * exp_neg(z * z)
    return 0.5 + 0.5 * math.copysign(erf, x)


@numba.njit(**FAST_MATH)
def _gelu_forward(x, out, cdf):
    for i in range(x.size):
        v = np.float64(x[i])
        c = normal_cdf(v)
        cdf[i] = c
        out[i] = v * c


@numba.njit(**FAST_MATH)
def _gelu_backward(x, cdf, g, dx):
    for i in range(x.size):
        v = np.float64(x[i])
        dx[i] = g[i] * (cdf[i] + v * exp_neg(0.5 * v * v) * _INV_SQRT_2PI)


def _flat(a, dtype):
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def gelu_forward(x: np.ndarray):
    """(GELU(x), Phi(x)) for a float32 array; Phi is kept for the backward pass."""
    if x.dtype != np.float32:
        raise TypeError(f"gelu_forward: expected a float32 array, got {x.dtype}")
    flat = _flat(x, np.float32)
    out, cdf = np.empty_like(flat), np.empty_like(flat)
    _gelu_forward(flat, out, cdf)
    return out.reshape(x.shape), cdf.reshape(x.shape)


def gelu_backward(x: np.ndarray, cdf: np.ndarray, g: np.ndarray):
    """dL/dx = g (Phi(x) + x phi(x)), float32."""
    dx = np.empty(x.size, dtype=np.float32)
    _gelu_backward(_flat(x, np.float32), _flat(cdf, np.float32), _flat(g, np.float32), dx)
    return dx.reshape(x.shape)
