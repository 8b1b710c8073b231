"""minigrad/ops/math.py (and div's rounding modes) against PyTorch: forward, backward, dtypes, edge values."""
import pytest
import torch
from hypothesis import given, settings

import minigrad as mg
from minigrad.backend import np
from book.testing import broadcastable_shapes, check_against_torch, random_array, shapes

FAST = settings(max_examples=10, deadline=None)


def inside(low, high):
    """Inputs drawn from [low, high), e.g. inside a function's domain."""
    return lambda shape, seed: random_array(shape, seed, low=low, high=high)


def normal(shape, seed):
    return 2 * random_array(shape, seed)


def away_from_zero(shape, seed):
    """Normal draws pushed at least 0.5 from 0 (divisors)."""
    x = random_array(shape, seed)
    return np.where(x < 0, x - 0.5, x + 0.5)


# ---- smooth unary functions -----------------------------------------------------------------

UNARY = {  # name: (input draw)
    "tan": inside(-1.2, 1.2), "asin": inside(-0.95, 0.95), "acos": inside(-0.95, 0.95), "atan": normal,
    "sinh": normal, "cosh": normal, "asinh": normal, "acosh": inside(1.1, 4.0), "atanh": inside(-0.95, 0.95),
    "exp2": normal, "expm1": normal, "log2": inside(0.1, 4.0), "log10": inside(0.1, 4.0),
    "log1p": inside(-0.9, 4.0), "erf": normal, "frac": normal,
}


@pytest.mark.parametrize("name", UNARY)
@FAST
@given(shape=shapes())
def test_unary(name, shape):
    x = UNARY[name](shape, 1)
    check_against_torch(getattr(mg, name), getattr(torch, name), [x])
    check_against_torch(lambda t: getattr(t, name)(), lambda t: getattr(t, name)(), [x], dtypes=("float32",))


@pytest.mark.parametrize("name", ["tan", "atan", "sinh", "exp2", "expm1", "log2", "log1p", "erf", "atan2",
                                  "copysign"])
def test_float_functions_of_integers_are_float32(name):
    ints = np.arange(1, 7).reshape(2, 3)
    args = (ints, ints[::-1].copy()) if name in ("atan2", "copysign") else (ints,)
    check_against_torch(getattr(mg, name), getattr(torch, name), list(args), dtypes=("float32",))
    assert getattr(mg, name)(*map(mg.tensor, args)).dtype == mg.float32


def test_small_arguments_keep_their_accuracy():
    tiny = np.array([1e-12, -1e-9, 1e-6, 0.0])
    for name in ("expm1", "log1p", "asinh", "atanh", "sinh", "tan", "erf"):
        check_against_torch(getattr(mg, name), getattr(torch, name), [tiny], tolerances={
            "float64": dict(rtol=1e-12, atol=0)})


# ---- binary smooth functions ----------------------------------------------------------------

BINARY = {
    "atan2": (mg.atan2, torch.atan2, normal, normal),
    "logaddexp": (mg.logaddexp, torch.logaddexp, normal, normal),
    "copysign": (mg.copysign, torch.copysign, normal, normal),
    "fmod": (mg.fmod, torch.fmod, normal, away_from_zero),
    "remainder": (mg.remainder, torch.remainder, normal, away_from_zero),
    "mod_operator": (lambda a, b: a % b, lambda a, b: a % b, normal, away_from_zero),
    "method_fmod": (lambda a, b: a.fmod(b), lambda a, b: a.fmod(b), normal, away_from_zero),
    "method_atan2": (lambda a, b: a.atan2(b), lambda a, b: a.atan2(b), normal, normal),
}


@pytest.mark.parametrize("name", BINARY)
@FAST
@given(shape_pair=broadcastable_shapes())
def test_binary_broadcasting(name, shape_pair):
    mg_fn, torch_fn, draw_a, draw_b = BINARY[name]
    a_shape, b_shape = shape_pair.input_shapes
    check_against_torch(mg_fn, torch_fn, [draw_a(a_shape, 2), draw_b(b_shape, 3)])


@pytest.mark.parametrize("name", ["atan2", "logaddexp", "copysign", "fmod", "remainder"])
def test_binary_one_side_without_grad(name):
    mg_fn, torch_fn, draw_a, draw_b = BINARY[name]
    inputs = [draw_a((3, 4), 4), draw_b((4,), 5)]
    check_against_torch(mg_fn, torch_fn, inputs, no_grad=(0,))
    check_against_torch(mg_fn, torch_fn, inputs, no_grad=(1,))


@pytest.mark.parametrize("scalar", [2, -1.5, 0.75])
@pytest.mark.parametrize("name", ["fmod", "remainder", "copysign"])
def test_binary_with_python_scalar(name, scalar):
    """(torch's atan2 and logaddexp take no Python number; minigrad's accept one like every binary op.)"""
    mg_fn, torch_fn = getattr(mg, name), getattr(torch, name)
    check_against_torch(lambda t: mg_fn(t, scalar), lambda t: torch_fn(t, scalar), [normal((3, 4), 6)])


@pytest.mark.parametrize("scalar", [7, -2.5])
def test_mod_operator_reflected(scalar):
    """scalar % t: torch has no derivative for its divisor, so the gradient is checked against a full tensor."""
    x = away_from_zero((3, 4), 7)
    check_against_torch(lambda t: scalar % t, lambda t: scalar % t, [x], no_grad=(0,))
    check_against_torch(lambda t: scalar % t, lambda t: torch.full_like(t, scalar) % t, [x])


def test_remainder_signs_and_exact_multiples():
    """fmod takes the dividend's sign, remainder the divisor's; exact multiples give 0 (and -0.0 for fmod)."""
    a = np.array([5.5, -5.5, 5.5, -5.5, 6.0, -6.0, 0.0, -0.0, 1e-20])
    b = np.array([2.0, 2.0, -2.0, -2.0, 3.0, 3.0, 2.0, -2.0, 3.0])
    for mg_fn, torch_fn in [(mg.fmod, torch.fmod), (mg.remainder, torch.remainder)]:
        out = check_against_torch(mg_fn, torch_fn, [a, b])
        np.testing.assert_array_equal(np.signbit(out[0].data), np.signbit(torch_fn(torch.from_numpy(a),
                                                                                  torch.from_numpy(b)).numpy()))


def test_integer_remainders_stay_integers():
    a, b = np.arange(-7, 8).reshape(3, 5), np.array([3, -3, 2, -2, 5])
    for name in ("fmod", "remainder"):
        check_against_torch(getattr(mg, name), getattr(torch, name), [a, b], dtypes=("float32",))
    check_against_torch(lambda x, y: (x % y, x % 4, 9 % y), lambda x, y: (x % y, x % 4, 9 % y), [a, b],
                        dtypes=("float32",))


@pytest.mark.parametrize("op", [mg.fmod, mg.remainder, lambda a, b: a // b,
                                lambda a, b: mg.div(a, b, rounding_mode="trunc")])
def test_integer_division_by_zero_raises(op):
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        op(mg.tensor([1, 2]), mg.tensor([1, 0]))


def test_float_division_by_zero_gives_torchs_inf_and_nan():
    a, b = np.array([1.0, -1.0, 0.0, 2.0]), np.array([0.0, 0.0, 0.0, -0.0])
    check_against_torch(lambda x, y: (mg.fmod(x, y), mg.remainder(x, y), mg.div(x, y, rounding_mode="trunc"),
                                      mg.div(x, y, rounding_mode="floor")),
                        lambda x, y: (torch.fmod(x, y), torch.remainder(x, y), torch.div(x, y, rounding_mode="trunc"),
                                      torch.div(x, y, rounding_mode="floor")), [a, b], no_grad=(0, 1))


# ---- division with rounding modes, // -------------------------------------------------------

@pytest.mark.parametrize("mode", ["trunc", "floor", None])
@FAST
@given(shape_pair=broadcastable_shapes())
def test_div_rounding_modes(mode, shape_pair):
    """Rounded quotients have zero gradient in torch; the unrounded one has the usual one."""
    a_shape, b_shape = shape_pair.input_shapes
    check_against_torch(lambda a, b: mg.div(a, b, rounding_mode=mode),
                        lambda a, b: torch.div(a, b, rounding_mode=mode),
                        [3 * random_array(a_shape, 8), away_from_zero(b_shape, 9)])
    check_against_torch(lambda a, b: a.div(b, rounding_mode=mode), lambda a, b: a.div(b, rounding_mode=mode),
                        [3 * random_array(a_shape, 8), away_from_zero(b_shape, 9)], dtypes=("float32",))


def test_floor_division_operator():
    """x // y is torch.floor_divide; its values equal div(rounding_mode='floor'), whose zero gradient it takes
    (torch's floor_divide has no backward at all)."""
    a, b = 3 * random_array((3, 4), 10), away_from_zero((4,), 11)
    check_against_torch(lambda x, y: x // y, lambda x, y: x // y, [a, b], no_grad=(0, 1))
    check_against_torch(lambda x, y: x // y, lambda x, y: torch.div(x, y, rounding_mode="floor"), [a, b])
    check_against_torch(lambda x: (x // 0.7, 5 // x, x // -2), lambda x: (x // 0.7, 5 // x, x // -2), [a],
                        no_grad=(0,))


def test_integer_division_modes_stay_integers():
    a, b = np.arange(-7, 8).reshape(3, 5), np.array([3, -3, 2, -2, 5])
    for mode in ("trunc", "floor"):
        check_against_torch(lambda x, y: (mg.div(x, y, rounding_mode=mode), mg.div(x, 2, rounding_mode=mode)),
                            lambda x, y: (torch.div(x, y, rounding_mode=mode), torch.div(x, 2, rounding_mode=mode)),
                            [a, b], dtypes=("float32",))
    check_against_torch(lambda x, y: (x // y, x // 2.5, x / y), lambda x, y: (x // y, x // 2.5, x / y), [a, b],
                        dtypes=("float32",))


def test_div_rejects_an_unknown_rounding_mode():
    with pytest.raises(ValueError, match="div: rounding_mode"):
        mg.div(mg.tensor([1.0]), mg.tensor([2.0]), rounding_mode="round")


# ---- sign and rounding: zero gradient -------------------------------------------------------

HALVES = np.array([-2.5, -1.5, -0.5, -0.0, 0.0, 0.5, 1.5, 2.5, 3.49, -3.51, 1e-300, 7.0, -7.0])

ROUNDING = {
    "sign": (mg.sign, torch.sign), "trunc": (mg.trunc, torch.trunc), "floor": (mg.floor, torch.floor),
    "ceil": (mg.ceil, torch.ceil), "round": (mg.round, torch.round),
    "round_2": (lambda x: mg.round(x, decimals=2), lambda x: torch.round(x, decimals=2)),
    "round_-1": (lambda x: x.round(decimals=-1), lambda x: x.round(decimals=-1)),
    "method_floor": (lambda x: x.floor(), lambda x: x.floor()),
}


@pytest.mark.parametrize("name", ROUNDING)
@FAST
@given(shape=shapes())
def test_rounding_has_zero_gradient(name, shape):
    mg_fn, torch_fn = ROUNDING[name]
    check_against_torch(mg_fn, torch_fn, [10 * random_array(shape, 12)])


@pytest.mark.parametrize("name", ROUNDING)
def test_rounding_at_halves_and_signed_zeros(name):
    """Halves round to even; sign(0) = 0; -0.0 keeps its sign bit as in torch."""
    mg_fn, torch_fn = ROUNDING[name]
    out = check_against_torch(mg_fn, torch_fn, [HALVES.copy()])
    want = torch_fn(torch.from_numpy(HALVES)).numpy()
    np.testing.assert_array_equal(np.signbit(out[0].data), np.signbit(want))


def test_round_decimals_matches_torchs_scaling():
    x = np.array([1.005, 2.675, 0.125, -0.375, 1234.5678, 15.0, 25.0, -35.0, 1e-8])
    for decimals in (1, 2, 3, -1, -2):
        check_against_torch(lambda t: t.round(decimals=decimals), lambda t: t.round(decimals=decimals), [x],
                            tolerances={"float64": dict(rtol=0, atol=0), "float32": dict(rtol=0, atol=0)})


def test_rounding_integers_and_bools_pass_unchanged():
    ints = np.arange(-3, 4)
    for name in ("sign", "trunc", "floor", "ceil", "round"):
        check_against_torch(getattr(mg, name), getattr(torch, name), [ints], dtypes=("float32",))
    check_against_torch(mg.sign, torch.sign, [np.array([True, False])], dtypes=("float32",))


def test_frac_keeps_the_sign_and_passes_the_gradient():
    check_against_torch(mg.frac, torch.frac, [HALVES.copy()])
    with pytest.raises(TypeError, match="frac: needs a float tensor"):
        mg.frac(mg.tensor([1, 2]))


# ---- lerp -----------------------------------------------------------------------------------

@FAST
@given(shape_triple=broadcastable_shapes(num_shapes=3))
def test_lerp_tensor_weight_broadcasts(shape_triple):
    s, e, w = shape_triple.input_shapes
    check_against_torch(mg.lerp, torch.lerp, [random_array(s, 13), random_array(e, 14), random_array(w, 15)])


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 1.0, -0.7, 2])
@FAST
@given(shape_pair=broadcastable_shapes())
def test_lerp_scalar_weight(weight, shape_pair):
    s, e = shape_pair.input_shapes
    check_against_torch(lambda a, b: a.lerp(b, weight), lambda a, b: a.lerp(b, weight),
                        [random_array(s, 16), random_array(e, 17)])


def test_lerp_is_exact_at_the_ends():
    start, end = np.array([0.1, 1e8, -3.3]), np.array([1e-8, 0.7, 1e20])
    for weight in (0.0, 1.0):
        check_against_torch(lambda a, b: mg.lerp(a, b, weight), lambda a, b: torch.lerp(a, b, weight), [start, end],
                            tolerances={"float64": dict(rtol=0, atol=0), "float32": dict(rtol=0, atol=0)})


def test_lerp_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match="lerp"):
        mg.lerp(mg.tensor([1.0]), mg.tensor([2.0]), mg.tensor([0.5], dtype=mg.float64))


# ---- copysign, logaddexp edges --------------------------------------------------------------

def test_copysign_zero_and_signed_zero():
    """copysign(0, y) has zero gradient in torch; -0.0 counts as negative."""
    a = np.array([0.0, -0.0, 1.5, -2.0, 3.0, 0.0])
    b = np.array([-1.0, 1.0, -0.0, 0.0, -4.0, -0.0])
    out = check_against_torch(mg.copysign, torch.copysign, [a, b])
    np.testing.assert_array_equal(np.signbit(out[0].data), np.signbit(b))


def test_logaddexp_of_integers_raises_as_in_torch():
    with pytest.raises(NotImplementedError):
        torch.logaddexp(torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(TypeError, match="logaddexp: needs float tensors, got int64"):
        mg.logaddexp(mg.tensor([1]), mg.tensor([2]))


def test_logaddexp_large_and_equal_arguments():
    a = np.array([1000.0, -1000.0, 0.0, 3.0, -50.0, 700.0])
    b = np.array([999.0, -1000.0, 0.0, 3.0, 50.0, -700.0])
    check_against_torch(mg.logaddexp, torch.logaddexp, [a, b])


# ---- predicates and logical ops ------------------------------------------------------------

SPECIAL = np.array([0.0, -0.0, 1.5, -np.inf, np.inf, np.nan, 1e30, -1e-40])


@pytest.mark.parametrize("name", ["isinf", "isnan", "isfinite"])
def test_predicates(name):
    out = check_against_torch(getattr(mg, name), getattr(torch, name), [SPECIAL.copy()])
    assert out[0].dtype == mg.bool_ and not out[0].requires_grad
    check_against_torch(lambda t: getattr(t, name)(), lambda t: getattr(t, name)(), [np.arange(4)],
                        dtypes=("float32",))


LOGICAL = ["logical_and", "logical_or", "logical_xor"]


@pytest.mark.parametrize("name", LOGICAL)
@FAST
@given(shape_pair=broadcastable_shapes())
def test_logical_binary(name, shape_pair):
    a_shape, b_shape = shape_pair.input_shapes
    a = np.round(random_array(a_shape, 18))  # zeros and non-zeros
    b = random_array(b_shape, 19) > 0
    out = check_against_torch(getattr(mg, name), getattr(torch, name), [a, b])
    assert out[0].dtype == mg.bool_
    ints = np.arange(-2, 3)
    check_against_torch(lambda x, y: getattr(x, name)(y), lambda x, y: getattr(x, name)(y), [ints, ints[::-1].copy()],
                        dtypes=("float32",))


def test_logical_not_of_any_dtype():
    for x in (SPECIAL.copy(), np.arange(-2, 3), np.array([True, False])):
        check_against_torch(mg.logical_not, torch.logical_not, [x])
        check_against_torch(lambda t: t.logical_not(), lambda t: t.logical_not(), [x], dtypes=("float32",))


def test_logical_ops_reject_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"logical_and: shapes \(2, 3\) and \(4,\)"):
        mg.logical_and(mg.ones(2, 3), mg.ones(4))
