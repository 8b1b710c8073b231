"""Scans: running products, maxima, minima and log-sum-exps along one dim (cumsum is in reduce.py).

Output k of a scan depends on inputs 0..k, so each backward gathers, for input i, the gradients of the
outputs k >= i:
    y = cumprod(x):       dx_i = sum_{k>=i} g_k prod_{j<=k, j!=i} x_j
    y = cummax(x):        dx_j = sum of g_k over the k whose running maximum came from j
    y = logcumsumexp(x):  dx_i = sum_{k>=i} g_k exp(x_i - y_k)
"""
from minigrad import backend
from minigrad.ops.index import add_at_along
from minigrad.ops.reduce import ValuesIndices, normalize_dims, with_dtype
from minigrad.tensor import Tensor, record, tensor_method


def _scan_axis(x, dim, op):
    """The axis a scan runs along; a 0-d tensor (dim 0 or -1) is scanned as a 1-element 1-D one."""
    if x.ndim == 0:
        normalize_dims(dim, 0, op)
        return 0
    return normalize_dims(dim, x.ndim, op)[0]


def _reverse_cumsum(data, axis):
    """sum_{k>=i} data_k along axis."""
    xp = backend.array_module(data)
    return xp.flip(xp.cumsum(xp.flip(data, axis), axis=axis), axis)


@tensor_method
def cumprod(input, dim, *, dtype=None):
    """Running product along dim. Exact at zeros, as torch (no division by a zero x). With z the first zero
    of a row (n if none), the gradient of x_i is

        i < z:  sum_{k>=i} g_k y_k / x_i                        (y_k = 0 from z on, so only k < z count)
        i = z:  prod_{j<z} x_j * sum_{k>=z} g_k prod_{z<j<=k} x_j
        i > z:  0                                                (every product it is in holds x_z = 0)
    """
    x = with_dtype(input, dtype)
    axis = _scan_axis(x, dim, "cumprod")
    xp = backend.array_module(x.data)
    data = x.data.reshape(-1) if x.ndim == 0 else x.data
    out = xp.cumprod(data, axis=axis, dtype=data.dtype)

    def backward(g):
        g = g.reshape(data.shape)
        position = xp.arange(data.shape[axis]).reshape((-1,) + (1,) * (data.ndim - axis - 1))
        zero = data == 0
        first_zero = xp.where(zero.any(axis=axis, keepdims=True), xp.argmax(zero, axis=axis, keepdims=True),
                              data.shape[axis])
        before = position < first_zero
        one = xp.ones((), dtype=data.dtype)
        with backend.np.errstate(divide="ignore", invalid="ignore"):
            grad = xp.where(before, _reverse_cumsum(g * out, axis) / xp.where(before, data, one), 0)
        after_zero = xp.cumprod(xp.where(position > first_zero, data, one), axis=axis)  # prod_{z<j<=k} x_j
        at_zero = xp.where(before, data, one).prod(axis=axis, keepdims=True) \
            * (g * after_zero * (position >= first_zero)).sum(axis=axis, keepdims=True)
        grad = xp.where(position == first_zero, at_zero, grad)
        return (grad.astype(g.dtype, copy=False).reshape(x.shape),)
    return record(out.reshape(x.shape), (x,), backward, "cumprod")


def _running_extremum(input, dim, pick, name):
    """(values, indices) of the running max or min. At ties the latest position wins, and a NaN, once met,
    stays the value with the index of the latest NaN (torch's convention). Backward: g to the indices."""
    axis = _scan_axis(input, dim, name)
    xp = backend.array_module(input.data)
    data = input.data.reshape(-1) if input.ndim == 0 else input.data
    values = (xp.maximum if pick == "max" else xp.minimum).accumulate(data, axis=axis)
    position = xp.arange(data.shape[axis]).reshape((-1,) + (1,) * (data.ndim - axis - 1))
    reached = (data == values) | (data != data)  # data != data: NaN
    indices = xp.maximum.accumulate(xp.where(reached, position, 0), axis=axis).astype(backend.int64)

    def backward(g):
        return (add_at_along(data.shape, axis, indices, g.reshape(data.shape)).reshape(input.shape),)
    values = record(values.reshape(input.shape), (input,), backward, name)
    return ValuesIndices(values, Tensor(indices.reshape(input.shape)))


@tensor_method
def cummax(input, dim):
    return _running_extremum(input, dim, "max", "cummax")


@tensor_method
def cummin(input, dim):
    return _running_extremum(input, dim, "min", "cummin")


def _logcumsumexp_array(data, axis, reverse=False):
    """log sum_{j<=k} exp(data_j) (j >= k with reverse), one stable logaddexp at a time."""
    xp = backend.array_module(data)
    if reverse:
        return xp.flip(_logcumsumexp_array(xp.flip(data, axis), axis), axis)
    return xp.logaddexp.accumulate(data, axis=axis)


@tensor_method
def logcumsumexp(input, dim):
    """y_k = log sum_{j<=k} exp(x_j) along dim.

    Backward, kept in log space as torch does (g may have either sign, so its positive and negative parts
    go separately): dx_i = exp(x_i + log sum_{k>=i} g+_k exp(-y_k)) - exp(x_i + log sum_{k>=i} g-_k exp(-y_k)).
    """
    if not backend.is_floating(input.dtype):
        raise TypeError(f"logcumsumexp: input dtype must be floating point, got {input.dtype}")
    axis = _scan_axis(input, dim, "logcumsumexp")
    xp = backend.array_module(input.data)
    data = input.data.reshape(-1) if input.ndim == 0 else input.data
    out = _logcumsumexp_array(data, axis)

    def backward(g):
        g = g.reshape(data.shape)
        minus_inf = xp.asarray(-xp.inf, dtype=g.dtype)
        with backend.np.errstate(divide="ignore"):
            log_abs = xp.log(xp.abs(g))
        parts = [_logcumsumexp_array(xp.where(sign, log_abs, minus_inf) - out, axis, reverse=True)
                 for sign in (g > 0, g < 0)]
        return ((xp.exp(parts[0] + data) - xp.exp(parts[1] + data)).reshape(input.shape),)
    return record(out.reshape(input.shape), (input,), backward, "logcumsumexp")
