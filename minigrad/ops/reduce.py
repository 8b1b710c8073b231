"""Reductions (sum, mean, max, var, logsumexp, ...) and the softmax family.

A reduction's backward spreads the output gradient back over the reduced axes: for sum that is a
broadcast, for mean a broadcast divided by N, for max it goes to the positions of the maxima.
softmax and log_softmax use fused backward formulas instead of a chain of small ops:
    y = softmax(x):     dx = y * (g - sum(g * y))
    y = log_softmax(x): dx = g - softmax(x) * sum(g)
"""
import builtins
import math
from collections import namedtuple

from minigrad import backend
from minigrad.tensor import Tensor, record, tensor_method

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def normalize_dims(dim, ndim: int, op: str):
    """dim (None, int or tuple, negatives allowed) -> a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    span = builtins.max(ndim, 1)
    out = []
    for d in dims:
        if not -span <= d < span:
            raise IndexError(f"{op}: dimension {d} is out of range for a tensor with {ndim} dimensions")
        out.append(d % span)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dimension repeated in {dim}")
    return tuple(sorted(out)) if ndim else ()


def expand_reduced(g, shape, axes, keepdim):
    """Broadcast a reduced gradient back to the input's shape."""
    xp = backend.array_module(g)
    if not keepdim and axes:
        g = xp.expand_dims(g, axes)
    return xp.broadcast_to(g, shape)


def with_dtype(x, dtype):
    """x cast to `dtype` first, as torch's dtype= argument of sum, prod and cumprod (the cast's backward returns
    the gradient in x's own dtype); dtype None keeps x, with bool and small ints widened to int64 as torch does."""
    if dtype is not None:
        return x.type(dtype)
    return x if backend.is_floating(x.dtype) or x.dtype == backend.int64 else x.type(backend.int64)


@tensor_method
def sum(x, dim=None, keepdim=False, *, dtype=None):
    x = with_dtype(x, dtype)
    axes = normalize_dims(dim, x.ndim, "sum")
    out = x.data.sum(axis=axes, keepdims=keepdim, dtype=x.dtype)
    return record(out, (x,), lambda g: (expand_reduced(g, x.shape, axes, keepdim),), "sum")


@tensor_method
def mean(x, dim=None, keepdim=False):
    if not backend.is_floating(x.dtype):
        raise TypeError(f"mean: input dtype must be floating point, got {x.dtype}; call .float() first")
    axes = normalize_dims(dim, x.ndim, "mean")
    count = 1
    for a in axes:
        count *= x.shape[a]
    out = x.data.mean(axis=axes, keepdims=keepdim)
    return record(out, (x,), lambda g: (expand_reduced(g / count, x.shape, axes, keepdim),), "mean")


def _extremum(x, dim, keepdim, pick, name):
    """max/min. Without dim: the value, gradient shared evenly among ties (like torch).
    With dim: (values, indices), gradient to the returned index."""
    xp = backend.array_module(x.data)
    if dim is None:
        if x.data.size == 0:
            raise RuntimeError(f"{name}: the input is empty; give a dim or a non-empty tensor")
        out = (xp.max if pick == "max" else xp.min)(x.data)

        def backward_all(g):
            hit = x.data == out
            return (hit * (g / hit.sum(dtype=g.dtype)),)
        return record(out, (x,), backward_all, name)
    axis = normalize_dims(dim, x.ndim, name)[0] if x.ndim else None
    arg = (xp.argmax if pick == "max" else xp.argmin)(x.data, axis=axis, keepdims=True)
    values = xp.take_along_axis(x.data, arg, axis=axis) if x.ndim else x.data

    def backward(g):
        full = xp.zeros(x.shape, dtype=g.dtype)
        if not x.ndim:
            return (g,)
        xp.put_along_axis(full, arg, g if keepdim else xp.expand_dims(g, axis), axis=axis)
        return (full,)
    indices = arg
    if not keepdim and x.ndim:
        values, indices = xp.squeeze(values, axis), xp.squeeze(arg, axis)
    return ValuesIndices(record(values, (x,), backward, name), Tensor(indices.astype(backend.int64)))


@tensor_method
def max(x, dim=None, keepdim=False):
    return _extremum(x, dim, keepdim, "max", "max")


@tensor_method
def min(x, dim=None, keepdim=False):
    return _extremum(x, dim, keepdim, "min", "min")


def _amax_amin(x, dim, keepdim, pick, name):
    xp = backend.array_module(x.data)
    axes = normalize_dims(dim, x.ndim, name)
    out = (xp.max if pick == "max" else xp.min)(x.data, axis=axes, keepdims=True)

    def backward(g):
        hit = x.data == out
        g = g if keepdim else xp.expand_dims(g, axes)
        return (hit * (g / hit.sum(axis=axes, keepdims=True, dtype=g.dtype)),)
    return record(out if keepdim else xp.squeeze(out, axes), (x,), backward, name)


@tensor_method
def amax(x, dim=None, keepdim=False):
    return _amax_amin(x, dim, keepdim, "max", "amax")


@tensor_method
def amin(x, dim=None, keepdim=False):
    return _amax_amin(x, dim, keepdim, "min", "amin")


def _arg_extremum(x, dim, keepdim, pick):
    """Index of the first max/min along dim; dim=None indexes the flattened tensor (keepdim: all dims 1)."""
    xp = backend.array_module(x.data)
    find = xp.argmax if pick == "max" else xp.argmin
    if dim is None:
        index = xp.asarray(find(x.data), dtype=backend.int64)
        return Tensor(index.reshape((1,) * x.ndim) if keepdim else index)
    axis = normalize_dims(dim, x.ndim, "arg" + pick)[0] if x.ndim else None
    return Tensor(xp.asarray(find(x.data, axis=axis, keepdims=keepdim), dtype=backend.int64))


@tensor_method
def argmax(x, dim=None, keepdim=False):
    return _arg_extremum(x, dim, keepdim, "max")


@tensor_method
def argmin(x, dim=None, keepdim=False):
    return _arg_extremum(x, dim, keepdim, "min")


def _variance(x, dim, keepdim, correction, unbiased, op):
    """The variance array and its backward g -> dx, shared by var and std.
    N - correction <= 0 divides by 0 and gives nan/inf, as in PyTorch (which also warns)."""
    if unbiased is not None:
        correction = 1 if unbiased else 0
    xp = backend.array_module(x.data)
    axes = normalize_dims(dim, x.ndim, op)
    count = 1
    for a in axes:
        count *= x.shape[a]
    centered = x.data - x.data.mean(axis=axes, keepdims=True)
    denom = builtins.max(count - correction, 0)
    with backend.np.errstate(divide="ignore", invalid="ignore"):
        out = ((centered * centered).sum(axis=axes, keepdims=keepdim) / denom).astype(x.dtype, copy=False)

    def backward(g):
        g = g if keepdim else xp.expand_dims(g, axes)
        with backend.np.errstate(invalid="ignore"):
            return (2 / denom if denom else math.inf) * g * centered
    return out, backward


@tensor_method
def var(x, dim=None, keepdim=False, correction=1, unbiased=None):
    """sum((x - mean)^2) / (N - correction); d/dx = 2 (x - mean) / (N - correction)."""
    out, backward = _variance(x, dim, keepdim, correction, unbiased, "var")
    return record(out, (x,), lambda g: (backward(g),), "var")


@tensor_method
def std(x, dim=None, keepdim=False, correction=1, unbiased=None):
    """sqrt(var). d/dvar = 1 / (2 std), taken as 0 where std = 0 (constant values), as in PyTorch."""
    xp = backend.array_module(x.data)
    variance, backward_var = _variance(x, dim, keepdim, correction, unbiased, "std")
    out = xp.sqrt(variance)

    def backward(g):
        with backend.np.errstate(divide="ignore", invalid="ignore"):
            g_var = xp.where(out == 0, xp.zeros((), dtype=g.dtype), g / (2 * out))
        return (backward_var(g_var),)
    return record(out, (x,), backward, "std")


@tensor_method
def logsumexp(x, dim, keepdim=False):
    """log sum exp(x), computed as m + log sum exp(x - m) with m the max; d/dx = softmax(x)."""
    xp = backend.array_module(x.data)
    axes = normalize_dims(dim, x.ndim, "logsumexp")
    m = xp.max(x.data, axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    out = xp.log(xp.exp(x.data - m).sum(axis=axes, keepdims=True)) + m

    def backward(g):
        g = g if keepdim else xp.expand_dims(g, axes)
        return (g * xp.exp(x.data - out),)
    return record(out if keepdim else xp.squeeze(out, axes), (x,), backward, "logsumexp")


def softmax_array(data, dim):
    """Stable softmax of an array: exp(x - max) / sum exp(x - max). Fully -inf rows give 0, not NaN."""
    xp = backend.array_module(data)
    m = xp.max(data, axis=dim, keepdims=True)
    e = xp.exp(data - xp.where(xp.isfinite(m), m, 0))
    total = e.sum(axis=dim, keepdims=True)
    return e / xp.where(total == 0, 1, total)


@tensor_method
def softmax(x, dim):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j). Fused backward: dx = y * (g - sum(g * y))."""
    axis = normalize_dims(dim, x.ndim, "softmax")[0] if x.ndim else None
    if axis == x.ndim - 1 and x.data.size and backend.uses_cpu_kernels(x.data):
        from kernels.softmax import softmax_backward, softmax_forward  # one fused pass each way
        y = softmax_forward(x.data)
        return record(y, (x,), lambda g: (softmax_backward(y, g),), "softmax")
    y = softmax_array(x.data, dim)
    return record(y, (x,), lambda g: (y * (g - (g * y).sum(axis=dim, keepdims=True)),), "softmax")


@tensor_method
def log_softmax(x, dim):
    """x - logsumexp(x). Fused backward: dx = g - softmax(x) * sum(g)."""
    xp = backend.array_module(x.data)
    normalize_dims(dim, x.ndim, "log_softmax")
    m = xp.max(x.data, axis=dim, keepdims=True)
    shifted = x.data - m
    out = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
    return record(out, (x,), lambda g: (g - xp.exp(out) * g.sum(axis=dim, keepdims=True),), "log_softmax")


@tensor_method
def cumsum(x, dim):
    """Running sum along dim. Backward: the reversed running sum of g."""
    xp = backend.array_module(x.data)
    dims = normalize_dims(dim, x.ndim, "cumsum")
    if not x.ndim:  # a 0-d tensor is its own running sum
        return record(x.data.copy(), (x,), lambda g: (g,), "cumsum")
    axis = dims[0]
    out = xp.cumsum(x.data, axis=axis)

    def backward(g):
        return (xp.flip(xp.cumsum(xp.flip(g, axis), axis=axis), axis),)
    return record(out, (x,), backward, "cumsum")



# ---------------------------------------------------------------------------------------------
# prod, the logical reductions any / all / allclose, and var_mean / std_mean
# ---------------------------------------------------------------------------------------------

def exclusive_cumprod(data, axis, reverse=False):
    """The product of the entries strictly before each position along axis (strictly after, with reverse);
    1 where there are none."""
    xp = backend.array_module(data)
    if reverse:
        return xp.flip(exclusive_cumprod(xp.flip(data, axis), axis), axis)
    out = xp.ones_like(data)
    if data.shape[axis] > 1:
        after_first = tuple(slice(1, None) if d == axis else slice(None) for d in range(data.ndim))
        before_last = tuple(slice(None, -1) if d == axis else slice(None) for d in range(data.ndim))
        out[after_first] = xp.cumprod(data[before_last], axis=axis)
    return out


@tensor_method
def prod(x, dim=None, keepdim=False, *, dtype=None):
    """The product over one dim, or over every entry when dim is None (torch.prod reduces one int dim).

    Backward without dividing by x, so it is exact where x has zeros (torch's convention):
        dx_i = g * prod_{j<i} x_j * prod_{j>i} x_j        (the products before and after i along dim)
    """
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool)):
        raise TypeError(f"prod: dim must be an int or None (torch.prod reduces one dimension), got {dim!r}")
    x = with_dtype(x, dtype)
    whole = dim is None or x.ndim == 0
    axis = 0 if whole else normalize_dims(dim, x.ndim, "prod")[0]
    if dim is not None and whole:
        normalize_dims(dim, 0, "prod")  # a 0-d tensor accepts dim 0 and -1
    data = x.data.reshape(-1) if whole else x.data
    out = data.prod(axis=axis, keepdims=True, dtype=data.dtype)
    shape = () if whole else out.shape if keepdim else x.shape[:axis] + x.shape[axis + 1:]

    def backward(g):
        others = exclusive_cumprod(data, axis) * exclusive_cumprod(data, axis, reverse=True)
        return ((g.reshape(out.shape) * others).reshape(x.shape),)
    return record(out.reshape(shape), (x,), backward, "prod")


def _logical(x, dim, keepdim, name):
    """any / all over dim: bool, or uint8 for a uint8 input, as torch. Not differentiable."""
    xp = backend.array_module(x.data)
    axes = normalize_dims(dim, x.ndim, name)
    out = xp.asarray(getattr(xp, name)(x.data, axis=axes, keepdims=keepdim))
    return Tensor(out.astype(x.dtype if x.dtype == backend.np.uint8 else backend.bool_))


@tensor_method
def any(x, dim=None, keepdim=False):
    return _logical(x, dim, keepdim, "any")


@tensor_method
def all(x, dim=None, keepdim=False):
    return _logical(x, dim, keepdim, "all")


@tensor_method
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input - other| <= atol + rtol * |other| elementwise, as a bool tensor; equal infinities are close, NaN
    is close to NaN only with equal_nan. Both tensors must have one dtype (torch refuses to mix them)."""
    if input.dtype != other.dtype:
        raise TypeError(f"isclose: dtypes {input.dtype} and {other.dtype} differ (shapes {input.shape} and "
                        f"{other.shape}); expected one dtype")
    xp = backend.array_module(input.data)
    try:
        return Tensor(xp.isclose(input.data, other.data, rtol=rtol, atol=atol, equal_nan=equal_nan))
    except ValueError:
        raise ValueError(f"isclose: shapes {input.shape} and {other.shape} do not broadcast") from None


@tensor_method
def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """True when every entry is close (isclose); a Python bool, as torch.allclose."""
    return bool(isclose(input, other, rtol, atol, equal_nan).data.all())


def var_mean(x, dim=None, *, correction=1, keepdim=False, unbiased=None):
    """(var, mean) over dim, as torch.var_mean; the gradients of both reach x."""
    return var(x, dim, keepdim, correction, unbiased), mean(x, dim, keepdim)


def std_mean(x, dim=None, *, correction=1, keepdim=False, unbiased=None):
    """(std, mean) over dim, as torch.std_mean."""
    return std(x, dim, keepdim, correction, unbiased), mean(x, dim, keepdim)
