"""More elementwise math, with torch's names: trigonometric and hyperbolic functions, exponentials and logarithms in
other bases, rounding, remainders, predicates and logic.

Functions defined on floats compute integer inputs in float32, as torch. Rounding and sign are flat almost
everywhere: torch gives them a zero gradient (not none), and so does minigrad. Predicates (isnan, ...) and logical
ops return bool tensors without a gradient.
"""
import math

from minigrad import backend
from minigrad.ops.elementwise import (broadcast_operands, check_same_dtype, float_function, float_operands,
                                      rounded_quotient, sigmoid_array, zero_gradients)
from minigrad.tensor import Tensor, record, tensor_method

__all__ = ["tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "exp2", "expm1", "log2",
           "log10", "log1p", "erf", "atan2", "sign", "trunc", "floor", "ceil", "round", "frac", "isinf", "isnan",
           "isfinite", "logical_not", "logical_and", "logical_or", "logical_xor", "lerp", "copysign", "logaddexp",
           "fmod", "remainder"]


# ---------------------------------------------------------------------------------------------
# Smooth functions of one float: y = f(x), backward g * f'(x)
# ---------------------------------------------------------------------------------------------

def _smooth(name, forward, derivative, doc):
    """The op y = forward(xp, x) with backward g * derivative(xp, x, y), attached to Tensor as `name`."""
    def op(x):
        xp = backend.array_module(x.data)
        out = forward(xp, x.data)
        return record(out, (x,), lambda g: (g * derivative(xp, x.data, out),), name)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return tensor_method(float_function(op))


tan = _smooth("tan", lambda xp, x: xp.tan(x), lambda xp, x, y: 1 + y * y, "tan(x); d/dx = 1 + tan(x)^2.")
asin = _smooth("asin", lambda xp, x: xp.arcsin(x), lambda xp, x, y: 1 / xp.sqrt(1 - x * x),
               "arcsin(x); d/dx = 1 / sqrt(1 - x^2).")
acos = _smooth("acos", lambda xp, x: xp.arccos(x), lambda xp, x, y: -1 / xp.sqrt(1 - x * x),
               "arccos(x); d/dx = -1 / sqrt(1 - x^2).")
atan = _smooth("atan", lambda xp, x: xp.arctan(x), lambda xp, x, y: 1 / (1 + x * x),
               "arctan(x); d/dx = 1 / (1 + x^2).")
sinh = _smooth("sinh", lambda xp, x: xp.sinh(x), lambda xp, x, y: xp.cosh(x), "sinh(x); d/dx = cosh(x).")
cosh = _smooth("cosh", lambda xp, x: xp.cosh(x), lambda xp, x, y: xp.sinh(x), "cosh(x); d/dx = sinh(x).")
asinh = _smooth("asinh", lambda xp, x: xp.arcsinh(x), lambda xp, x, y: 1 / xp.sqrt(x * x + 1),
                "arcsinh(x); d/dx = 1 / sqrt(x^2 + 1).")
acosh = _smooth("acosh", lambda xp, x: xp.arccosh(x), lambda xp, x, y: 1 / xp.sqrt((x - 1) * (x + 1)),
                "arccosh(x) for x >= 1; d/dx = 1 / sqrt(x^2 - 1).")
atanh = _smooth("atanh", lambda xp, x: xp.arctanh(x), lambda xp, x, y: 1 / (1 - x * x),
                "arctanh(x) for |x| < 1; d/dx = 1 / (1 - x^2).")
exp2 = _smooth("exp2", lambda xp, x: xp.exp2(x), lambda xp, x, y: y * math.log(2), "2^x; d/dx = 2^x ln 2.")
expm1 = _smooth("expm1", lambda xp, x: xp.expm1(x), lambda xp, x, y: y + 1,
                "e^x - 1, accurate near 0; d/dx = e^x = y + 1.")
log2 = _smooth("log2", lambda xp, x: xp.log2(x), lambda xp, x, y: 1 / (x * math.log(2)),
               "log_2(x); d/dx = 1 / (x ln 2).")
log10 = _smooth("log10", lambda xp, x: xp.log10(x), lambda xp, x, y: 1 / (x * math.log(10)),
                "log_10(x); d/dx = 1 / (x ln 10).")
log1p = _smooth("log1p", lambda xp, x: xp.log1p(x), lambda xp, x, y: 1 / (1 + x),
                "ln(1 + x), accurate near 0; d/dx = 1 / (1 + x).")
erf = _smooth("erf", lambda xp, x: backend.erf(x), lambda xp, x, y: (2 / math.sqrt(math.pi)) * xp.exp(-x * x),
              "The error function erf(x) = 2/sqrt(pi) int_0^x e^(-t^2) dt; d/dx = 2/sqrt(pi) e^(-x^2).")


@tensor_method
def atan2(input, other):
    """The angle of the point (other, input), in (-pi, pi]; with r^2 = input^2 + other^2,
    d/dinput = other / r^2 and d/dother = -input / r^2."""
    y, x = float_operands(input, other, "atan2")
    xp = backend.array_module(y.data)

    def backward(g):
        r2 = y.data * y.data + x.data * x.data
        return g * x.data / r2, -g * y.data / r2
    return record(xp.arctan2(y.data, x.data), (y, x), backward, "atan2")


@tensor_method
def logaddexp(input, other):
    """log(e^input + e^other) without overflow; d/dinput = 1 / (1 + e^(other - input)) = sigmoid(input - other).
    Floats only, as torch."""
    a, b = broadcast_operands(input, other, "logaddexp")
    if not backend.is_floating(a.dtype):
        raise TypeError(f"logaddexp: needs float tensors, got {a.dtype} (shapes {a.shape} and {b.shape})")
    xp = backend.array_module(a.data)

    def backward(g):
        share_a = sigmoid_array(xp, a.data - b.data)
        return g * share_a, g * (1 - share_a)
    return record(xp.logaddexp(a.data, b.data), (a, b), backward, "logaddexp")


# ---------------------------------------------------------------------------------------------
# Sign and rounding (zero gradient, as torch)
# ---------------------------------------------------------------------------------------------

def _flat(name, forward, doc):
    """The op y = forward(xp, x), zero gradient; integer and bool inputs are already whole and pass unchanged."""
    def op(x):
        xp = backend.array_module(x.data)
        out = forward(xp, x.data) if backend.is_floating(x.dtype) else x.data.copy()
        return record(out, (x,), zero_gradients((x,)), name)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return tensor_method(op)


trunc = _flat("trunc", lambda xp, x: xp.trunc(x), "x rounded toward zero; zero gradient.")
floor = _flat("floor", lambda xp, x: xp.floor(x), "The largest whole number <= x; zero gradient.")
ceil = _flat("ceil", lambda xp, x: xp.ceil(x), "The smallest whole number >= x; zero gradient.")


@tensor_method
def sign(input):
    """-1, 0 or 1 by the sign of x (sign(0) = 0; bools pass unchanged); zero gradient."""
    xp = backend.array_module(input.data)
    out = input.data.copy() if input.dtype == backend.bool_ else xp.sign(input.data)
    return record(out, (input,), zero_gradients((input,)), "sign")


@tensor_method
def round(input, decimals=0):
    """x rounded to `decimals` decimal places, halves to even (round(2.5) = 2), as torch: rint(x * 10^d) / 10^d,
    or rint(x / 10^-d) * 10^-d for negative d. Integers pass unchanged (decimals=0 only); zero gradient."""
    if not backend.is_floating(input.dtype):
        if decimals != 0:
            raise TypeError(f"round: decimals={decimals} needs a float tensor, got {input.dtype} of shape "
                            f"{input.shape}")
        return record(input.data.copy(), (input,), zero_gradients((input,)), "round")
    xp = backend.array_module(input.data)
    if decimals == 0:
        out = xp.rint(input.data)
    else:
        scale = xp.asarray(10.0 ** abs(decimals), dtype=input.dtype)
        out = xp.rint(input.data * scale) / scale if decimals > 0 else xp.rint(input.data / scale) * scale
    return record(out, (input,), zero_gradients((input,)), "round")


@tensor_method
def frac(input):
    """The fractional part x - trunc(x) (with x's sign); d/dx = 1 (the jumps at whole numbers are ignored)."""
    if not backend.is_floating(input.dtype):
        raise TypeError(f"frac: needs a float tensor, got {input.dtype} of shape {input.shape}")
    out = input.data - backend.array_module(input.data).trunc(input.data)
    return record(out, (input,), lambda g: (g,), "frac")


# ---------------------------------------------------------------------------------------------
# Remainders: the dividend's sign (fmod, C's) or the divisor's (remainder, Python's %)
# ---------------------------------------------------------------------------------------------

def _remainder_op(name, rounding_mode, input, other):
    """input - other * q with q = div(input, other, rounding_mode): d/dinput = 1, d/dother = -q."""
    a, b = broadcast_operands(input, other, name)
    q = rounded_quotient(name, a.data, b.data, rounding_mode)
    xp = backend.array_module(a.data)
    with backend.np.errstate(invalid="ignore"):
        out = xp.fmod(a.data, b.data)
    if rounding_mode == "floor":  # torch's remainder: move fmod's result to the divisor's side (keeps -0.0)
        out = xp.where((out != 0) & ((b.data < 0) != (out < 0)), out + b.data, out)
    return record(out, (a, b), lambda g: (g, -g * q), name)


@tensor_method
def fmod(input, other):
    """The remainder of input / other with the dividend's sign (C's fmod): input - other * trunc(input / other).
    d/dinput = 1, d/dother = -trunc(input / other)."""
    return _remainder_op("fmod", "trunc", input, other)


@tensor_method
def remainder(input, other):
    """The remainder with the divisor's sign (Python's %): input - other * floor(input / other).
    d/dinput = 1, d/dother = -floor(input / other)."""
    return _remainder_op("remainder", "floor", input, other)


Tensor.__mod__ = remainder
Tensor.__rmod__ = lambda self, other: remainder(other, self)


# ---------------------------------------------------------------------------------------------
# Interpolation and sign transfer
# ---------------------------------------------------------------------------------------------

@tensor_method
def lerp(input, end, weight):
    """input + weight (end - input), computed as end - (end - input)(1 - weight) where |weight| >= 0.5 (torch's
    formula, exact at weight = 1). weight: a Python number or a tensor; all three broadcast together.
    d/dinput = 1 - weight, d/dend = weight, d/dweight = end - input."""
    start, end = broadcast_operands(input, end, "lerp")
    xp = backend.array_module(start.data)
    if isinstance(weight, Tensor):
        check_same_dtype("lerp", start, weight)
        broadcast_operands(start, weight, "lerp")
        broadcast_operands(end, weight, "lerp")
        w = weight.data
    else:
        w = weight
    diff = end.data - start.data
    out = xp.where(xp.abs(w) < 0.5, start.data + w * diff, end.data - diff * (1 - w)).astype(start.dtype,
                                                                                             copy=False)
    parents = (start, end, weight) if isinstance(weight, Tensor) else (start, end)

    def backward(g):
        grads = (g * (1 - w), g * w)
        return grads + (g * diff,) if len(parents) == 3 else grads
    return record(out, parents, backward, "lerp")


@tensor_method
def copysign(input, other):
    """|input| with the sign of other (its sign bit: -0.0 counts as negative). d/dinput = copysign(input, other)
    / input, which torch sets to 0 where input = 0; other gets a zero gradient."""
    a, b = float_operands(input, other, "copysign")
    xp = backend.array_module(a.data)
    out = xp.copysign(a.data, b.data)

    def backward(g):
        zero = xp.zeros((), dtype=g.dtype)
        with backend.np.errstate(invalid="ignore", divide="ignore"):
            ratio = xp.where(a.data == 0, zero, out / a.data)
        return g * ratio, xp.zeros_like(g)
    return record(out, (a, b), backward, "copysign")


# ---------------------------------------------------------------------------------------------
# Predicates and logic (bool results, no gradient)
# ---------------------------------------------------------------------------------------------

def _predicate(name, doc):
    """The array function `name` of one tensor, as a bool tensor without gradient."""
    def predicate(input):
        return Tensor(getattr(backend.array_module(input.data), name)(input.data))
    predicate.__name__ = predicate.__qualname__ = name
    predicate.__doc__ = doc
    return tensor_method(predicate)


isinf = _predicate("isinf", "True where x is +inf or -inf.")
isnan = _predicate("isnan", "True where x is NaN.")
isfinite = _predicate("isfinite", "True where x is neither infinite nor NaN (always for integers).")
logical_not = _predicate("logical_not", "True where x is 0 (or False), for any dtype.")


def _logical(name):
    """The array function `name` of two tensors (or a tensor and a number) that broadcast, as a bool tensor."""
    def logical(input, other):
        other = other if isinstance(other, Tensor) else Tensor(other)
        try:
            backend.np.broadcast_shapes(input.shape, other.shape)
        except ValueError:
            raise ValueError(f"{name}: shapes {input.shape} and {other.shape} do not broadcast") from None
        return Tensor(getattr(backend.array_module(input.data), name)(input.data, other.data))
    logical.__name__ = logical.__qualname__ = name
    logical.__doc__ = f"Elementwise logical {name.removeprefix('logical_')}; non-zero counts as true."
    return tensor_method(logical)


logical_and = _logical("logical_and")
logical_or = _logical("logical_or")
logical_xor = _logical("logical_xor")
