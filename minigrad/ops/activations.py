"""More activation functions, with torch.nn.functional's names and signatures (relu, gelu, silu and softplus are in
elementwise.py); minigrad.nn.functional re-exports them.

minigrad has no in-place ops: `inplace=True` is accepted, as by dropout, and returns a new tensor.
At the kinks the gradient takes torch's side, stated in each docstring (e.g. leaky_relu at 0 has slope
negative_slope, hardtanh has zero gradient at min_val and max_val).
"""
from minigrad import backend
from minigrad.ops.elementwise import sigmoid_array
from minigrad.ops.reduce import softmax
from minigrad.tensor import record

SELU_ALPHA = 1.6732632423543772848170429916717  # Klambauer et al., 2017: the fixed point of mean 0, variance 1
SELU_SCALE = 1.0507009873554804934193349852946


def _elu(name, x, alpha, scale=1.0, input_scale=1.0):
    """scale * x for x > 0, scale * alpha * (e^(input_scale x) - 1) for x <= 0 (torch's elu kernel, which celu and
    selu share). d/dx = scale for x > 0, scale * alpha * input_scale * e^(input_scale x) for x <= 0."""
    xp = backend.array_module(x.data)
    v = x.data
    positive = v > 0
    negative_part = xp.minimum(v, 0) * input_scale                      # no overflow in e^ on the positive side
    out = xp.where(positive, scale * v, (scale * alpha) * xp.expm1(negative_part)).astype(v.dtype, copy=False)

    def backward(g):
        slope = xp.where(positive, scale, (scale * alpha * input_scale) * xp.exp(negative_part))
        return (g * slope.astype(g.dtype, copy=False),)
    return record(out, (x,), backward, name)


def elu(input, alpha=1.0, inplace=False):
    """ELU (Clevert et al., 2015): x if x > 0 else alpha (e^x - 1); the slope at 0 is alpha (torch's side)."""
    return _elu("elu", input, alpha)


def celu(input, alpha=1.0, inplace=False):
    """CELU (Barron, 2017): max(0, x) + min(0, alpha (e^(x / alpha) - 1)); d/dx = e^(x / alpha) for x <= 0."""
    if alpha == 0:
        raise ZeroDivisionError("celu: alpha must not be 0 (the input is scaled by 1 / alpha)")
    return _elu("celu", input, alpha, input_scale=1 / alpha)


def selu(input, inplace=False):
    """SELU (Klambauer et al., 2017): SELU_SCALE * elu(x, SELU_ALPHA)."""
    return _elu("selu", input, SELU_ALPHA, scale=SELU_SCALE)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x if x > 0 else negative_slope * x; d/dx = 1 for x > 0, negative_slope for x <= 0."""
    xp = backend.array_module(input.data)
    positive = input.data > 0
    out = xp.where(positive, input.data, input.data * negative_slope)
    return record(out, (input,), lambda g: (xp.where(positive, g, g * negative_slope),), "leaky_relu")


def _hardtanh(name, x, min_val, max_val):
    """x clipped to [min_val, max_val]; d/dx = 1 strictly inside, 0 at and beyond the bounds (torch's hardtanh,
    unlike clamp, which passes the gradient at the bounds)."""
    if min_val > max_val:
        raise ValueError(f"{name}: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    xp = backend.array_module(x.data)
    inside = (x.data > min_val) & (x.data < max_val)
    out = xp.clip(x.data, min_val, max_val).astype(x.dtype, copy=False)
    return record(out, (x,), lambda g: (g * inside,), name)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """x clipped to [min_val, max_val], with zero gradient at and beyond the bounds."""
    return _hardtanh("hardtanh", input, min_val, max_val)


def relu6(input, inplace=False):
    """min(max(x, 0), 6) = hardtanh(x, 0, 6): zero gradient at 0 and at 6."""
    return _hardtanh("relu6", input, 0.0, 6.0)


def hardsigmoid(input, inplace=False):
    """min(max(x + 3, 0), 6) / 6 (Howard et al., 2019); d/dx = 1/6 for -3 < x < 3, else 0."""
    xp = backend.array_module(input.data)
    v = input.data
    out = (xp.clip(v + 3, 0, 6) / 6).astype(v.dtype, copy=False)
    inside = (v > -3) & (v < 3)
    return record(out, (input,), lambda g: (g * inside / 6,), "hardsigmoid")


def hardswish(input, inplace=False):
    """x * min(max(x + 3, 0), 6) / 6 (Howard et al., 2019); d/dx = 0 for x <= -3, x / 3 + 1/2 for -3 < x < 3,
    1 for x >= 3 (torch's sides at -3 and 3)."""
    xp = backend.array_module(input.data)
    v = input.data
    out = (v * xp.clip(v + 3, 0, 6) / 6).astype(v.dtype, copy=False)

    def backward(g):
        return (xp.where(v <= -3, 0, xp.where(v < 3, g * (v / 3 + 0.5), g)).astype(g.dtype, copy=False),)
    return record(out, (input,), backward, "hardswish")


def softsign(input):
    """x / (1 + |x|); d/dx = 1 / (1 + |x|)^2."""
    denominator = 1 + backend.array_module(input.data).abs(input.data)
    return record(input.data / denominator, (input,), lambda g: (g / (denominator * denominator),), "softsign")


def logsigmoid(input):
    """log(sigmoid(x)) = min(x, 0) - log(1 + e^-|x|), without overflow; d/dx = sigmoid(-x)."""
    xp = backend.array_module(input.data)
    v = input.data
    out = xp.minimum(v, 0) - xp.log1p(xp.exp(-xp.abs(v)))
    return record(out, (input,), lambda g: (g * sigmoid_array(xp, -v),), "logsigmoid")


def mish(input, inplace=False):
    """Mish (Misra, 2019): x tanh(softplus(x)); with t = tanh(softplus(x)), d/dx = t + x sigmoid(x) (1 - t^2)."""
    xp = backend.array_module(input.data)
    v = input.data
    t = xp.tanh(xp.logaddexp(0, v))
    return record(v * t, (input,), lambda g: (g * (t + v * sigmoid_array(xp, v) * (1 - t * t)),), "mish")


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """softmax(-x) along dim: the smallest entries get the most weight."""
    if dim is None:
        raise TypeError("softmin: pass dim explicitly (torch's implicit choice of dim is deprecated)")
    return softmax(-(input if dtype is None else input.type(dtype)), dim)
