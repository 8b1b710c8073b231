"""The toolbox the attention variants of kernels/ share: the array layout, its checks, and head bookkeeping.

Every variant (flash, linear, lightning, sliding_window, softplus) takes arrays in one layout,

    q (B, Hq, T, D), k (B, Hk, S, D), v (B, Hv, S, Dv)  ->  o (B, Hq, T, Dv)

with grouped heads (query head h reads key head h // (Hq // Hk) and value head h // (Hq // Hv)) and an optional
key_padding_mask, bool (B, S), True = a real key. Its reference, cpu and cuda modules import what they share from
here, never from a sibling variant; what only one variant needs stays in that variant.

This module is NumPy/CuPy only (the references and minigrad import it without loading Numba). The Numba pieces
shared by the CPU kernels (the fast-math settings, `tile`, `first_visible_query`) are in kernels/common/cpu.py.
"""
import math

import numpy as np

FLOAT_DTYPES = ("float32", "float64")


def default_scale(q, scale):
    """scale, or 1 / sqrt(D) when it is None."""
    return 1.0 / math.sqrt(q.shape[3]) if scale is None else float(scale)


def check_inputs(op, q, k, v, key_padding_mask=None, do=None):
    """Raise a ValueError / TypeError naming `op` unless the arrays follow the layout above (NumPy or CuPy)."""
    shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"{op}: expected q (B, Hq, T, D), k (B, Hk, S, D), v (B, Hv, S, Dv); got {shapes}")
    (B, Hq, T, D), (Bk, Hk, S, Dk), (Bv, Hv, Sv, Dv) = q.shape, k.shape, v.shape
    if Bk != B or Bv != B or Dk != D or Sv != S:
        raise ValueError(f"{op}: batch sizes, k/v lengths and q/k head dims must agree; got {shapes}")
    if min(T, S, D, Dv, Hk, Hv) == 0:
        raise ValueError(f"{op}: empty dimension in {shapes}")
    if Hq % Hk or Hq % Hv:
        raise ValueError(f"{op}: the query heads ({Hq}) must be a multiple of the key heads ({Hk}) and of the "
                         f"value heads ({Hv}); got {shapes}")
    dtypes = {str(a.dtype) for a in (q, k, v) + (() if do is None else (do,))}
    if len(dtypes) != 1 or not dtypes <= set(FLOAT_DTYPES):
        raise TypeError(f"{op}: q, k, v{', do' if do is not None else ''} must share one dtype, float32 or float64; "
                        f"got {sorted(dtypes)}")
    if do is not None and tuple(do.shape) != (B, Hq, T, Dv):
        raise ValueError(f"{op}: the output gradient should have shape {(B, Hq, T, Dv)}, got {tuple(do.shape)}")
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (B, S) or str(key_padding_mask.dtype) != "bool":
            raise ValueError(f"{op}: key_padding_mask must be bool of shape (B, S) = {(B, S)}, got "
                             f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")


def check_feature_inputs(op, fq, fk, v, do=None):
    """Linear and Lightning attention's layout: fq (B, Hq, T, F), fk (B, Hk, T, F), v (B, Hv, T, Dv), as
    check_inputs' q, k, v, with one sequence length T for all three (self-attention)."""
    check_inputs(op, fq, fk, v, do=do)
    if fq.shape[2] != fk.shape[2]:
        raise ValueError(f"{op}: queries and keys must have one length T (self-attention); got fq "
                         f"{tuple(fq.shape)}, fk {tuple(fk.shape)}")


def array_module(a):
    """numpy, or cupy for a CuPy array (the kernels never import minigrad's backend)."""
    if type(a).__module__.startswith("cupy"):
        import cupy
        return cupy
    return np


def repeat_heads(x, heads):
    """(B, H, T, E) -> (B, heads, T, E): head h of the result is head h // (heads // H) of x."""
    return x if x.shape[1] == heads else array_module(x).repeat(x, heads // x.shape[1], axis=1)


def sum_head_groups(x, heads):
    """(B, Hq, T, E) -> (B, heads, T, E), summing each group of Hq // heads query heads (repeat_heads' gradient)."""
    B, Hq, T, E = x.shape
    return x if heads == Hq else x.reshape(B, heads, Hq // heads, T, E).sum(axis=2)


def keep_mask(key_padding_mask, B, S, xp=np):
    """The kernels' `keep` (B, S), bool and contiguous: keep[b, j] says key j of batch b is real (all True without
    a mask). xp: numpy or cupy, the module the kernel's arrays live in."""
    return xp.ones((B, S), dtype=bool) if key_padding_mask is None else xp.ascontiguousarray(key_padding_mask)
