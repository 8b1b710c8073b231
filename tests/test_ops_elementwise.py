"""Elementwise ops against PyTorch: arithmetic with broadcasting, math, activations, comparisons."""
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings

import minigrad as mg
from minigrad.backend import np
from book.testing import broadcastable_shapes, check_against_torch, random_array, shapes

FAST = settings(max_examples=15, deadline=None)


def positive(shape, seed=0):
    return random_array(shape, seed, low=0.5, high=2.0)


# ---- arithmetic with broadcasting ------------------------------------------------------------

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "maximum": (mg.maximum, torch.maximum),
    "minimum": (mg.minimum, torch.minimum),
    "add_alpha": (lambda a, b: mg.add(a, b, alpha=-2.5), lambda a, b: torch.add(a, b, alpha=-2.5)),
    "method_add": (lambda a, b: a.add(b), lambda a, b: a.add(b)),
    "method_div": (lambda a, b: a.div(b), lambda a, b: a.div(b)),
}


@pytest.mark.parametrize("name", BINARY)
@FAST
@given(shape_pair=broadcastable_shapes())
def test_binary_broadcasting(name, shape_pair):
    mg_fn, torch_fn = BINARY[name]
    a_shape, b_shape = shape_pair.input_shapes
    b = positive(b_shape, 2) if "div" in name else random_array(b_shape, 2)  # keep divisors away from 0
    check_against_torch(mg_fn, torch_fn, [random_array(a_shape, 1), b])


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum", "minimum"])
def test_binary_one_side_without_grad(name):
    mg_fn, torch_fn = BINARY[name]
    check_against_torch(mg_fn, torch_fn, [random_array((3, 4), 1), positive((4,), 2)], no_grad=(1,))
    check_against_torch(mg_fn, torch_fn, [random_array((3, 4), 1), positive((4,), 2)], no_grad=(0,))


SCALAR_OPS = {
    "add": lambda x, s: x + s, "radd": lambda x, s: s + x,
    "sub": lambda x, s: x - s, "rsub": lambda x, s: s - x,
    "mul": lambda x, s: x * s, "rmul": lambda x, s: s * x,
    "div": lambda x, s: x / s, "rdiv": lambda x, s: s / x,
    "pow": lambda x, s: x ** s,
}


@pytest.mark.parametrize("scalar", [2, -1.5, 0.5])
@pytest.mark.parametrize("name", SCALAR_OPS)
def test_python_scalar_either_side(name, scalar):
    fn = SCALAR_OPS[name]
    x = positive((2, 3), 3) if name in ("rdiv", "pow") else random_array((2, 3), 3)
    out = check_against_torch(lambda t: fn(t, scalar), lambda t: fn(t, scalar), [x])
    assert out[0].dtype == mg.float64


@pytest.mark.parametrize("name", SCALAR_OPS)
def test_python_float_keeps_float32(name):
    x = mg.tensor(positive((2, 3), 4).astype("float32"), requires_grad=True)
    out = SCALAR_OPS[name](x, 0.25)
    out.backward(mg.ones_like(out))
    assert out.dtype == mg.float32 and x.grad.dtype == mg.float32


# ---- pow ------------------------------------------------------------------------------------

@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1, -2.5, 1, 0])
def test_pow_tensor_scalar(exponent):
    check_against_torch(lambda x: x ** exponent, lambda x: x ** exponent, [positive((3, 4), 5)])
    check_against_torch(lambda x: mg.pow(x, exponent), lambda x: torch.pow(x, exponent), [positive((3, 4), 5)])


@pytest.mark.parametrize("exponent", [2, 3, 0, 1])
def test_pow_integer_exponent_any_sign_base(exponent):
    x = random_array((4, 5), 6)
    x[0, 0] = 0.0  # d/dx x^k at 0 is 0 (k > 1), 1 (k = 1), 0 (k = 0)
    check_against_torch(lambda t: t ** exponent, lambda t: t ** exponent, [x])


@FAST
@given(shape_pair=broadcastable_shapes())
def test_pow_tensor_tensor(shape_pair):
    a_shape, b_shape = shape_pair.input_shapes
    check_against_torch(lambda a, b: a ** b, lambda a, b: a ** b, [positive(a_shape, 7), random_array(b_shape, 8)])


@pytest.mark.parametrize("base", [2, 0.5, 3.7])
def test_pow_scalar_tensor(base):
    check_against_torch(lambda x: base ** x, lambda x: base ** x, [random_array((3, 4), 9)])


# ---- unary math and activations -------------------------------------------------------------

UNARY = {
    "neg": (lambda x: -x, lambda x: -x),
    "neg_fn": (mg.neg, torch.neg),
    "exp": (mg.exp, torch.exp),
    "log": (mg.log, torch.log),
    "sqrt": (mg.sqrt, torch.sqrt),
    "rsqrt": (mg.rsqrt, torch.rsqrt),
    "abs": (mg.abs, torch.abs),
    "sin": (mg.sin, torch.sin),
    "cos": (mg.cos, torch.cos),
    "tanh": (mg.tanh, torch.tanh),
    "sigmoid": (mg.sigmoid, torch.sigmoid),
    "relu": (mg.relu, torch.relu),
    "gelu": (mg.gelu, TF.gelu),
    "gelu_tanh": (lambda x: mg.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    "silu": (mg.silu, TF.silu),
    "softplus": (mg.softplus, TF.softplus),
    "softplus_beta": (lambda x: mg.softplus(x, beta=2.0, threshold=3.0),
                      lambda x: TF.softplus(x, beta=2.0, threshold=3.0)),
    "softplus_beta_small": (lambda x: mg.softplus(x, beta=0.5, threshold=1.0),
                            lambda x: TF.softplus(x, beta=0.5, threshold=1.0)),
    "method_exp": (lambda x: x.exp(), lambda x: x.exp()),
    "method_tanh": (lambda x: x.tanh(), lambda x: x.tanh()),
}
POSITIVE_ONLY = {"log", "sqrt", "rsqrt"}


@pytest.mark.parametrize("name", UNARY)
@FAST
@given(shape=shapes())
def test_unary(name, shape):
    mg_fn, torch_fn = UNARY[name]
    x = positive(shape, 10) if name in POSITIVE_ONLY else 2 * random_array(shape, 10)
    check_against_torch(mg_fn, torch_fn, [x])


LARGE = np.array([-1000.0, -100.0, -50.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 50.0, 100.0, 1000.0])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "silu", "softplus", "softplus_beta", "gelu", "gelu_tanh",
                                  "relu", "abs"])
def test_activation_large_magnitude(name):
    mg_fn, torch_fn = UNARY[name]
    check_against_torch(mg_fn, torch_fn, [LARGE.copy()])


@pytest.mark.parametrize("name", ["relu", "abs"])
def test_kink_at_zero(name):
    mg_fn, torch_fn = UNARY[name]
    check_against_torch(mg_fn, torch_fn, [np.array([-1.0, 0.0, 0.0, 2.0])])


# ---- maximum / minimum ties -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum_ties_split_gradient(name):
    mg_fn, torch_fn = BINARY[name]
    a = random_array((3, 4), 11)
    b = random_array((3, 4), 12)
    b[0] = a[0]
    b[2, 1] = a[2, 1]
    check_against_torch(mg_fn, torch_fn, [a, b])


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum_ties_broadcast(name):
    mg_fn, torch_fn = BINARY[name]
    a = np.array([[0.5, 1.0, -2.0], [1.0, 1.0, 3.0]])
    b = np.array([1.0, 1.0, 3.0])
    check_against_torch(mg_fn, torch_fn, [a, b])


# ---- clamp ----------------------------------------------------------------------------------

CLAMP_ARGS = [dict(min=-0.5), dict(max=0.3), dict(min=-0.5, max=0.3), dict(min=0.2, max=0.2),
              dict(min=0.3, max=-0.5)]  # min > max: everything becomes max, no gradient passes


@pytest.mark.parametrize("kwargs", CLAMP_ARGS, ids=str)
@FAST
@given(shape=shapes())
def test_clamp(kwargs, shape):
    check_against_torch(lambda x: mg.clamp(x, **kwargs), lambda x: torch.clamp(x, **kwargs),
                        [random_array(shape, 13)])


@pytest.mark.parametrize("kwargs", CLAMP_ARGS, ids=str)
def test_clamp_at_the_bounds(kwargs):
    x = np.array([-1.0, -0.5, 0.0, 0.2, 0.3, 1.0])  # values exactly on min and max
    check_against_torch(lambda t: t.clamp(**kwargs), lambda t: t.clamp(**kwargs), [x])
    check_against_torch(lambda t: t.clip(**kwargs), lambda t: t.clip(**kwargs), [x])


# ---- where, masked_fill ---------------------------------------------------------------------

@FAST
@given(shape_triple=broadcastable_shapes(num_shapes=3))
def test_where(shape_triple):
    c_shape, x_shape, y_shape = shape_triple.input_shapes
    cond = random_array(c_shape, 14) > 0
    check_against_torch(lambda c, x, y: mg.where(c, x, y), lambda c, x, y: torch.where(c, x, y),
                        [cond, random_array(x_shape, 15), random_array(y_shape, 16)])


def test_where_with_python_scalar():
    cond = random_array((3, 4), 17) > 0
    x = random_array((3, 4), 18)
    check_against_torch(lambda c, t: mg.where(c, t, 0.0), lambda c, t: torch.where(c, t, 0.0), [cond, x])
    check_against_torch(lambda c, t: mg.where(c, -1.5, t), lambda c, t: torch.where(c, -1.5, t), [cond, x])


@pytest.mark.parametrize("x, y", [(4, 2), (4.0, 2), (-1, 0.5), (True, False), (7, True)])
def test_where_with_two_python_scalars(x, y):
    """Both branches scalars: torch's values and dtype (int64, the default float32, or bool)."""
    cond = random_array((3, 4), 19) > 0
    ours, theirs = mg.where(mg.tensor(cond), x, y), torch.where(torch.from_numpy(cond), x, y)
    assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_tensor_where_method_takes_self_as_the_taken_branch():
    cond = random_array((3, 4), 20) > 0
    check_against_torch(lambda c, t, u: t.where(c, u), lambda c, t, u: t.where(c, u),
                        [cond, random_array((3, 4), 21), random_array((4,), 22)])
    check_against_torch(lambda c, t: t.where(c, 0.5), lambda c, t: t.where(c, 0.5), [cond, random_array((3, 4), 21)])


@pytest.mark.parametrize("value", [0.0, -1e9, float("-inf"), 2.5])
@FAST
@given(shape_pair=broadcastable_shapes())
def test_masked_fill(value, shape_pair):
    x_shape, m_shape = shape_pair.input_shapes
    if np.broadcast_shapes(x_shape, m_shape) != tuple(x_shape):
        m_shape = x_shape  # the mask must broadcast to x's shape, not the other way round
    mask = random_array(m_shape, 19) > 0
    check_against_torch(lambda x, m: x.masked_fill(m, value), lambda x, m: x.masked_fill(m, value),
                        [random_array(x_shape, 20), mask])


def test_causal_mask_fill():
    mask = np.triu(np.ones((4, 4), dtype=bool), 1)
    check_against_torch(lambda x, m: mg.masked_fill(x, m, float("-inf")).softmax(-1),
                        lambda x, m: x.masked_fill(m, float("-inf")).softmax(-1),
                        [random_array((2, 4, 4), 21), mask])


# ---- comparisons ----------------------------------------------------------------------------

COMPARISONS = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
}


@pytest.mark.parametrize("name", COMPARISONS)
@FAST
@given(shape_pair=broadcastable_shapes())
def test_comparisons(name, shape_pair):
    fn = COMPARISONS[name]
    a_shape, b_shape = shape_pair.input_shapes
    a = np.round(random_array(a_shape, 22))  # rounded so that some entries are equal
    b = np.round(random_array(b_shape, 23))
    out = check_against_torch(fn, fn, [a, b], no_grad=(0, 1))
    assert out[0].dtype == mg.bool_


@pytest.mark.parametrize("name", COMPARISONS)
def test_comparisons_with_scalars_and_methods(name):
    fn = COMPARISONS[name]
    x = np.round(random_array((3, 4), 24))
    check_against_torch(lambda t: fn(t, 0.0), lambda t: fn(t, 0.0), [x])
    check_against_torch(lambda t: fn(1.0, t), lambda t: fn(1.0, t), [x])
    check_against_torch(lambda a, b: getattr(a, name)(b), lambda a, b: getattr(a, name)(b),
                        [x, np.round(random_array((4,), 25))])


def test_logical_ops_on_masks():
    a, b = random_array((3, 4), 26) > 0, random_array((4,), 27) > 0
    check_against_torch(lambda p, q: (p & q, p | q, ~p), lambda p, q: (p & q, p | q, ~p), [a, b])


def test_comparison_of_integer_tensors():
    a = np.arange(12).reshape(3, 4)
    check_against_torch(lambda t: (t > 5, t == 3, t < 2.5), lambda t: (t > 5, t == 3, t < 2.5), [a])


INT_MIXING = {
    "int_plus_float_scalar": lambda t: t + 0.5,
    "float_scalar_times_int": lambda t: 1.5 * t,
    "int_div_int_scalar": lambda t: t / 2,
    "int_scalar_div_int": lambda t: 7 / (t + 1),
    "int_pow_float": lambda t: t ** 0.5,
    "float_pow_int": lambda t: 1.5 ** t,
    "int_plus_int": lambda t: t + 3,
    "int_times_int": lambda t: t * t,
}


@pytest.mark.parametrize("name", INT_MIXING)
def test_integer_tensors_with_scalars_follow_torch_dtypes(name):
    fn = INT_MIXING[name]
    check_against_torch(fn, fn, [np.arange(6).reshape(2, 3)], dtypes=("float32",))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_integer_tensor_promotes_to_the_float_operand(dtype):
    check_against_torch(lambda i, x: i * x + x / (i + 1), lambda i, x: i * x + x / (i + 1),
                        [np.arange(6).reshape(2, 3), random_array((2, 3), 30)], dtypes=(dtype,))


def test_ops_compose_with_mixed_branches():
    """A small expression mixing several ops, so gradients from different paths are summed."""
    def f(lib):
        def fn(x, y):
            z = lib.tanh(x) * y + lib.exp(-x * x) / (1 + y * y) - lib.sigmoid(x - y) ** 2
            return lib.where(z > 0, z, 0.1 * z)
        return fn
    check_against_torch(f(mg), f(torch), [random_array((3, 1), 28), random_array((2, 3, 4), 29)])
