"""FlashAttention (Dao et al., 2022; FlashAttention-2, Dao, 2023): exact softmax attention in O(T) memory.

    O = softmax(scale * Q K^T + M) V,     L = logsumexp(scale * Q K^T + M)   (per query row)

Three implementations of the same function, one per module, each with `forward` and `backward`:

| module | what it is | arrays |
|---|---|---|
| `reference.py` | the definition: the whole (T, S) score matrix, plain softmax and its Jacobian | NumPy |
| `cpu.py` | the tiled algorithm, Numba `njit(parallel=True)`, BLAS on tiles | NumPy, float32 / float64 |
| `cuda.py` | the tiled algorithm, Numba CUDA, kernels built by factories | CuPy / Numba device arrays |

    o, lse = forward(q, k, v, causal=False, key_padding_mask=None, scale=None)
    dq, dk, dv = backward(q, k, v, o, lse, do, causal=False, key_padding_mask=None, scale=None)  # cpu, cuda
    dq, dk, dv = backward(q, k, v, do, causal=False, key_padding_mask=None, scale=None)          # reference

Shapes: q (B, Hq, T, D), k (B, Hk, S, D), v (B, Hv, S, Dv); o (B, Hq, T, Dv), lse (B, Hq, T).
- Heads: Hq must be a multiple of Hk and of Hv. Query head h reads key head h // (Hq // Hk) and value head
  h // (Hq // Hv): Hk = Hv = Hq is multi-head attention, Hk = Hv < Hq grouped-query (GQA), Hk = Hv = 1
  multi-query (MQA), Hk != Hv the DiffQKV layouts.
- `causal`: query i sees keys j <= i (top-left aligned, as PyTorch's `is_causal`).
- `key_padding_mask`: bool (B, S), True = the key is real. Padded keys are seen by no query.
- A query that sees no key at all gets o = 0, lse = -inf and zero gradients (never NaN).
- `scale` defaults to 1 / sqrt(D).

The same layout (reference / cpu / cuda, `forward` and `backward`, `check_inputs`) is the template for the other
attention variants in kernels/.
"""
import math

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


def array_module(a):
    """numpy, or cupy for a CuPy array (the kernels never import minigrad's backend)."""
    if type(a).__module__.startswith("cupy"):
        import cupy
        return cupy
    import numpy
    return numpy


def repeat_heads(x, heads):
    """(B, H, T, E) -> (B, heads, T, E): head h of the result is head h // (heads // H) of x."""
    return x if x.shape[1] == heads else array_module(x).repeat(x, heads // x.shape[1], axis=1)


def sum_head_groups(x, heads):
    """(B, Hq, T, E) -> (B, heads, T, E), summing each group of Hq // heads query heads (repeat_heads' gradient)."""
    B, Hq, T, E = x.shape
    return x if heads == Hq else x.reshape(B, heads, Hq // heads, T, E).sum(axis=2)
