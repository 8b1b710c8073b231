"""Elementwise ops: arithmetic with broadcasting, math functions, activations, comparisons.

Each op computes its output on arrays and records a backward that maps the output gradient g to
input gradients (the local derivative times g). Broadcasting is undone centrally by the engine.
"""
import functools
import math

from minigrad import backend
from minigrad.tensor import Tensor, record, tensor_method


# ---------------------------------------------------------------------------------------------
# Operands
# ---------------------------------------------------------------------------------------------

def as_tensor_operand(value, like: Tensor):
    """A Python scalar takes the tensor's dtype (float scalars with integer tensors give float32)."""
    if isinstance(value, Tensor):
        return value
    if backend.is_array(value):
        return Tensor(value)
    dtype = like.dtype
    if isinstance(value, float) and not backend.is_floating(dtype):
        dtype = backend.float32
    xp = backend.array_module(like.data)
    return Tensor(xp.asarray(value, dtype=dtype))


def operands(a, b, op: str):
    """Two tensors of one dtype on one device, or a clear error. Never promotes floats silently."""
    if not isinstance(a, Tensor):
        a = as_tensor_operand(a, b)
    b = as_tensor_operand(b, a)
    if a.device != b.device:
        raise RuntimeError(f"{op}: operands are on different devices ({a.device} and {b.device})")
    if a.dtype != b.dtype:
        a_float, b_float = backend.is_floating(a.dtype), backend.is_floating(b.dtype)
        if a_float and b_float:
            raise TypeError(f"{op}: mixed dtypes {a.dtype} and {b.dtype} (shapes {a.shape} and {b.shape}); "
                            f"minigrad never promotes silently: convert one with .float() or .double()")
        if a_float:
            b = b.type(a.dtype)
        elif b_float:
            a = a.type(b.dtype)
    return a, b


def data_of(t):
    """The array inside a Tensor (other values, e.g. arrays or None, pass through)."""
    return t.data if isinstance(t, Tensor) else t


def check_same_dtype(op, *tensors):
    """All tensors given (None skipped) share one dtype: minigrad never promotes silently."""
    given = [t for t in tensors if t is not None]
    if len({str(t.dtype) for t in given}) > 1:
        raise TypeError(f"{op}: mixed dtypes {[str(t.dtype) for t in given]} (shapes {[t.shape for t in given]}); "
                        f"convert with .float() or .double()")


def broadcast_operands(a, b, op: str):
    """operands(a, b, op) for an elementwise op: their shapes must broadcast together, or a clear error."""
    a, b = operands(a, b, op)
    try:
        backend.np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast (trailing dimensions must be "
                         f"equal or 1)") from None
    return a, b


def float_operands(a, b, op: str):
    """broadcast_operands(a, b, op) for an op defined on floats: two integer operands become float32, as torch."""
    a, b = broadcast_operands(a, b, op)
    if not backend.is_floating(a.dtype):
        a, b = a.float(), b.float()
    return a, b


def data_broadcasting_to(op, what, value, input):
    """The array of `value` (a Tensor or an array, e.g. a mask or a weight; None passes through), checked to
    broadcast to exactly the input's shape, or an error naming the op, `what` and both shapes."""
    data = data_of(value)
    if data is None:
        return None
    try:
        if backend.np.broadcast_shapes(data.shape, input.shape) == input.shape:
            return data
    except ValueError:
        pass
    raise ValueError(f"{op}: {what} of shape {data.shape} does not broadcast to the input's shape {input.shape}")


# ---------------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------------

@tensor_method
def add(a, b, alpha=1):
    a, b = broadcast_operands(a, b, "add")
    if alpha != 1:
        b = b * alpha
    return record(a.data + b.data, (a, b), lambda g: (g, g), "add")


@tensor_method
def sub(a, b):
    a, b = broadcast_operands(a, b, "sub")
    return record(a.data - b.data, (a, b), lambda g: (g, -g), "sub")


@tensor_method
def mul(a, b):
    a, b = broadcast_operands(a, b, "mul")

    def backward(g):
        return (g * b.data if a.requires_grad else None,
                g * a.data if b.requires_grad else None)
    return record(a.data * b.data, (a, b), backward, "mul")


def rounded_quotient(op, a, b, rounding_mode):
    """The arrays a / b rounded toward zero ('trunc') or down ('floor', Python's //). Integers stay integers, and
    an integer division by zero raises, as torch."""
    xp = backend.array_module(a)
    if not backend.is_floating(a.dtype):
        if xp.any(b == 0):
            raise ZeroDivisionError(f"{op}: integer division by zero (shapes {a.shape} and {b.shape})")
        return xp.floor_divide(a, b) if rounding_mode == "floor" else (a - xp.fmod(a, b)) // b
    with backend.np.errstate(divide="ignore", invalid="ignore"):
        return xp.floor_divide(a, b) if rounding_mode == "floor" else xp.trunc(a / b)


def zero_gradients(parents):
    """A backward for ops that are flat almost everywhere (rounding, sign): a zero gradient to every parent."""
    return lambda g: tuple(backend.array_module(g).zeros_like(g) for _ in parents)


@tensor_method
def div(a, b, rounding_mode=None):
    """a / b; d/da = 1 / b, d/db = -a / b^2. rounding_mode='trunc' or 'floor' rounds the quotient (integers stay
    integers) and then has a zero gradient, as torch."""
    if rounding_mode is not None:
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
        a, b = broadcast_operands(a, b, "div")
        out = rounded_quotient("div", a.data, b.data, rounding_mode)
        return record(out, (a, b), zero_gradients((a, b)), "div")
    a, b = float_operands(a, b, "div")
    out = a.data / b.data

    def backward(g):
        return (g / b.data if a.requires_grad else None,
                -g * out / b.data if b.requires_grad else None)
    return record(out, (a, b), backward, "div")


@tensor_method
def pow(a, b):
    """a ** b. d/da = b a^(b-1); d/db = a^b log a (computed only if b requires grad)."""
    if not isinstance(b, Tensor) and not backend.is_array(b):
        exponent = b  # the common case: a Python number, no gradient for it
        if isinstance(exponent, float) and not backend.is_floating(a.dtype):
            a = a.float()  # int ** 0.5 is float32 in PyTorch (NumPy would give float64)
        out = a.data ** exponent

        def backward_scalar(g):
            if exponent == 0:  # x^0 is constant, even at x = 0 where x^-1 would give 0 * inf = nan
                return (backend.array_module(g).zeros_like(g),)
            if exponent == 2:
                return (g * 2 * a.data,)
            return (g * exponent * a.data ** (exponent - 1),)
        return record(out, (a,), backward_scalar, "pow")
    a, b = broadcast_operands(a, b, "pow")
    out = a.data ** b.data

    def backward(g):
        # PyTorch's conventions at the edges: no gradient to a where b == 0, none to b where a == 0 and b >= 0
        xp = backend.array_module(g)
        zero = xp.zeros((), dtype=g.dtype)
        with backend.np.errstate(divide="ignore", invalid="ignore"):
            grad_a = xp.where(b.data == 0, zero, g * b.data * a.data ** (b.data - 1)) if a.requires_grad else None
            grad_b = (xp.where((a.data == 0) & (b.data >= 0), zero, g * out * xp.log(a.data))
                      if b.requires_grad else None)
        return grad_a, grad_b
    return record(out, (a, b), backward, "pow")


@tensor_method
def neg(a):
    return record(-a.data, (a,), lambda g: (-g,), "neg")


def _binary_extremum(a, b, name):
    """Elementwise max or min; at ties the gradient is split evenly, as in PyTorch."""
    a, b = broadcast_operands(a, b, name)
    xp = backend.array_module(a.data)
    pick, wins = (xp.maximum, xp.greater) if name == "maximum" else (xp.minimum, xp.less)

    def backward(g):
        share_a = (wins(a.data, b.data) + 0.5 * (a.data == b.data)).astype(g.dtype)
        return g * share_a, g * (1 - share_a)
    return record(pick(a.data, b.data), (a, b), backward, name)


@tensor_method
def maximum(a, b):
    return _binary_extremum(a, b, "maximum")


@tensor_method
def minimum(a, b):
    return _binary_extremum(a, b, "minimum")


def _reflected(op):
    return lambda self, other: op(other, self)


Tensor.__add__, Tensor.__radd__ = add, _reflected(add)
Tensor.__sub__, Tensor.__rsub__ = sub, _reflected(sub)
Tensor.__mul__, Tensor.__rmul__ = mul, _reflected(mul)
Tensor.__truediv__, Tensor.__rtruediv__ = div, _reflected(div)
Tensor.__floordiv__ = lambda self, other: div(self, other, rounding_mode="floor")
Tensor.__rfloordiv__ = lambda self, other: div(other, self, rounding_mode="floor")
Tensor.__pow__ = pow
Tensor.__neg__ = neg


def _rpow(self, base):
    return pow(as_tensor_operand(base, self), self)


Tensor.__rpow__ = _rpow


# ---------------------------------------------------------------------------------------------
# Comparisons and logic (no gradient)
# ---------------------------------------------------------------------------------------------

def _compare(name, fn):
    def compare(a, b):
        a, b = broadcast_operands(a, b, name)
        return Tensor(fn(a.data, b.data))
    compare.__name__ = name
    return compare


eq = tensor_method(_compare("eq", lambda x, y: x == y))
ne = tensor_method(_compare("ne", lambda x, y: x != y))
lt = tensor_method(_compare("lt", lambda x, y: x < y))
le = tensor_method(_compare("le", lambda x, y: x <= y))
gt = tensor_method(_compare("gt", lambda x, y: x > y))
ge = tensor_method(_compare("ge", lambda x, y: x >= y))
Tensor.__eq__, Tensor.__ne__ = eq, ne
Tensor.__lt__, Tensor.__le__, Tensor.__gt__, Tensor.__ge__ = lt, le, gt, ge
Tensor.__invert__ = lambda self: Tensor(~self.data)


# ---------------------------------------------------------------------------------------------
# Bitwise ops (integer and bool tensors; no gradient)
# ---------------------------------------------------------------------------------------------

def _bitwise_operands(a, b, op):
    """The two arrays of a bitwise op. A Python int takes the tensor's integer dtype (int64 next to a bool
    tensor) and wraps around to its width, as torch: t | 0xFFFFFFFF on int32 is t | -1."""
    tensor = a if isinstance(a, Tensor) else b
    for t in (a, b):
        if isinstance(t, Tensor) and t.dtype.kind not in "biu":
            raise TypeError(f"{op}: needs integer or bool tensors, got {t.dtype} of shape {t.shape}")
    xp = backend.array_module(tensor.data)

    def array(value):
        if isinstance(value, Tensor):
            return value.data
        if isinstance(value, bool):
            return xp.asarray(value)
        if isinstance(value, int):
            dtype = backend.int64 if tensor.dtype == backend.bool_ else tensor.dtype
            bits, signed = backend.np.iinfo(dtype).bits, backend.np.iinfo(dtype).min < 0
            wrapped = value % 2 ** bits
            if signed and wrapped >= 2 ** (bits - 1):
                wrapped -= 2 ** bits
            return xp.asarray(wrapped, dtype=dtype)
        raise TypeError(f"{op}: expected integer or bool tensors or Python ints, got {type(value).__name__}")
    return array(a), array(b)


def _bitwise(name, fn):
    def bitwise(a, b):
        return Tensor(fn(*_bitwise_operands(a, b, name)))
    bitwise.__name__ = name
    return bitwise


bitwise_and = tensor_method(_bitwise("bitwise_and", lambda x, y: x & y))
bitwise_or = tensor_method(_bitwise("bitwise_or", lambda x, y: x | y))
bitwise_xor = tensor_method(_bitwise("bitwise_xor", lambda x, y: x ^ y))
bitwise_left_shift = tensor_method(_bitwise("bitwise_left_shift", lambda x, y: x << y))
bitwise_right_shift = tensor_method(_bitwise("bitwise_right_shift", lambda x, y: x >> y))
Tensor.__and__, Tensor.__rand__ = bitwise_and, lambda self, other: bitwise_and(other, self)
Tensor.__or__, Tensor.__ror__ = bitwise_or, lambda self, other: bitwise_or(other, self)
Tensor.__xor__, Tensor.__rxor__ = bitwise_xor, lambda self, other: bitwise_xor(other, self)
Tensor.__lshift__, Tensor.__rlshift__ = bitwise_left_shift, lambda self, other: bitwise_left_shift(other, self)
Tensor.__rshift__, Tensor.__rrshift__ = bitwise_right_shift, lambda self, other: bitwise_right_shift(other, self)


# ---------------------------------------------------------------------------------------------
# Unary math
# ---------------------------------------------------------------------------------------------

def float_function(op):
    """For an op defined on floats (exp, log, sin, ...): an integer or bool input is computed in the default
    float32, as torch does (integer tensors never require grad, so the conversion needs no backward)."""
    @functools.wraps(op)
    def on_floats(x, *args, **kwargs):
        if not backend.is_floating(x.dtype):
            x = Tensor(x.data.astype(backend.float32))
        return op(x, *args, **kwargs)
    return on_floats


@tensor_method
@float_function
def exp(x):
    out = backend.array_module(x.data).exp(x.data)
    return record(out, (x,), lambda g: (g * out,), "exp")


@tensor_method
@float_function
def log(x):
    out = backend.array_module(x.data).log(x.data)
    return record(out, (x,), lambda g: (g / x.data,), "log")


@tensor_method
@float_function
def sqrt(x):
    out = backend.array_module(x.data).sqrt(x.data)
    return record(out, (x,), lambda g: (g / (2 * out),), "sqrt")


@tensor_method
@float_function
def rsqrt(x):
    """1/sqrt(x); d/dx = -x^(-3/2) / 2."""
    out = 1 / backend.array_module(x.data).sqrt(x.data)
    return record(out, (x,), lambda g: (-0.5 * g * out * out * out,), "rsqrt")


@tensor_method
def abs(x):
    xp = backend.array_module(x.data)
    return record(xp.abs(x.data), (x,), lambda g: (g * xp.sign(x.data),), "abs")


@tensor_method
@float_function
def sin(x):
    xp = backend.array_module(x.data)
    return record(xp.sin(x.data), (x,), lambda g: (g * xp.cos(x.data),), "sin")


@tensor_method
@float_function
def cos(x):
    xp = backend.array_module(x.data)
    return record(xp.cos(x.data), (x,), lambda g: (-g * xp.sin(x.data),), "cos")


@tensor_method
@float_function
def tanh(x):
    out = backend.array_module(x.data).tanh(x.data)
    return record(out, (x,), lambda g: (g * (1 - out * out),), "tanh")


def sigmoid_array(xp, v):
    """1 / (1 + e^-v) without overflow for large |v|."""
    e = xp.exp(-xp.abs(v))
    return xp.where(v >= 0, 1 / (1 + e), e / (1 + e))


@tensor_method
@float_function
def sigmoid(x):
    out = sigmoid_array(backend.array_module(x.data), x.data)
    return record(out, (x,), lambda g: (g * out * (1 - out),), "sigmoid")


@tensor_method
def relu(x):
    xp = backend.array_module(x.data)
    out = xp.maximum(x.data, 0)
    return record(out, (x,), lambda g: (g * (x.data > 0),), "relu")


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


@tensor_method
def gelu(x, approximate="none"):
    """GELU(x) = x Phi(x) (exact, with erf), or the tanh approximation
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) when approximate='tanh'."""
    xp = backend.array_module(x.data)
    v = x.data
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)
        t = xp.tanh(inner)
        out = 0.5 * v * (1 + t)

        def backward(g):
            d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v)
            return (g * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * d_inner),)
    elif approximate == "none" and xp is backend.np and v.dtype == backend.float32:
        from kernels.activations import gelu_backward, gelu_forward  # one fused vectorized pass each way
        out, cdf = gelu_forward(v)

        def backward(g):
            return (gelu_backward(v, cdf, g),)
    elif approximate == "none":
        cdf = 0.5 * (1 + backend.erf(v / math.sqrt(2)))
        out = v * cdf

        def backward(g):
            pdf = xp.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)
            return (g * (cdf + v * pdf),)
    else:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return record(out.astype(v.dtype, copy=False), (x,), backward, "gelu")


@tensor_method
def silu(x):
    """x * sigmoid(x); d/dx = s (1 + x (1 - s))."""
    s = sigmoid_array(backend.array_module(x.data), x.data)
    return record(x.data * s, (x,), lambda g: (g * s * (1 + x.data * (1 - s)),), "silu")


@tensor_method
def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + e^(beta x)) / beta, linear above `threshold` (as torch.nn.functional.softplus)."""
    xp = backend.array_module(x.data)
    bx = beta * x.data
    out = xp.where(bx > threshold, x.data, xp.logaddexp(0, bx) / beta).astype(x.dtype, copy=False)

    def backward(g):
        return (g * xp.where(bx > threshold, 1, sigmoid_array(xp, bx)).astype(g.dtype, copy=False),)
    return record(out, (x,), backward, "softplus")


@tensor_method
def clamp(x, min=None, max=None):
    """Clip to [min, max]; the gradient passes only where x was inside the range (PyTorch's rule)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    xp = backend.array_module(x.data)
    lo = min.data if isinstance(min, Tensor) else min
    hi = max.data if isinstance(max, Tensor) else max
    out = xp.clip(x.data, lo, hi).astype(x.dtype, copy=False)
    inside = xp.ones(x.shape, dtype=bool)
    if lo is not None:
        inside &= x.data >= lo
    if hi is not None:
        inside &= x.data <= hi
    return record(out, (x,), lambda g: (g * inside,), "clamp")


Tensor.clip = clamp


def _scalar_branches(x, y, cond):
    """Two Python scalars as tensors on the condition's device, with torch's dtype for them: bool if both are
    bools, the default float32 if either is a float, int64 otherwise."""
    kinds = {type(x), type(y)}
    dtype = backend.bool_ if kinds == {bool} else backend.float32 if float in kinds else backend.int64
    xp = backend.array_module(cond)
    return Tensor(xp.asarray(x, dtype=dtype)), Tensor(xp.asarray(y, dtype=dtype))


def where(condition, x, y):
    """x where condition else y; each gradient goes to the branch that was taken. x and y may be tensors or
    Python scalars, in any mix."""
    cond = condition.data if isinstance(condition, Tensor) else condition
    if cond.dtype != backend.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {cond.dtype}")
    if not isinstance(x, Tensor) and not isinstance(y, Tensor) and not backend.is_array(x) \
            and not backend.is_array(y):
        x, y = _scalar_branches(x, y, cond)
    x, y = broadcast_operands(x, y, "where")
    xp = backend.array_module(x.data)
    out = xp.where(cond, x.data, y.data)

    def backward(g):
        zero = xp.zeros((), dtype=g.dtype)
        return (xp.where(cond, g, zero) if x.requires_grad else None,
                xp.where(cond, zero, g) if y.requires_grad else None)
    return record(out, (x, y), backward, "where")


Tensor.where = lambda self, condition, other: where(condition, self, other)  # torch: self where condition else other


@tensor_method
def masked_fill(x, mask, value):
    """x with `value` where mask is True (mask broadcasts to x's shape)."""
    m = data_broadcasting_to("masked_fill", "mask", mask, x)
    if m.dtype != backend.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got {m.dtype}")
    xp = backend.array_module(x.data)
    out = xp.where(m, xp.asarray(value, dtype=x.dtype), x.data)
    return record(out, (x,), lambda g: (xp.where(m, xp.zeros((), dtype=g.dtype), g),), "masked_fill")
