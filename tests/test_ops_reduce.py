"""Reductions and the softmax family against PyTorch, over Hypothesis shapes and every form of `dim`."""
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.backend import np
from book.testing import broadcastable_shapes, check_against_torch, random_array, shapes

FAST = settings(max_examples=15, deadline=None)


@st.composite
def shape_and_dim(draw, min_dims=0, allow_none=True, allow_tuple=True):
    """A shape and a `dim` for it: None, a non-negative or negative int, or a tuple of distinct dims."""
    shape = draw(shapes(min_dims=min_dims))
    span = max(len(shape), 1)  # a 0-d tensor accepts dim 0 and -1, as in PyTorch
    single = st.integers(-span, span - 1)
    options = [single]
    if allow_none:
        options.append(st.none())
    if allow_tuple and shape:
        options.append(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True)
                       .flatmap(lambda ds: st.tuples(*(st.sampled_from([d, d - len(shape)]) for d in ds))))
    return shape, draw(st.one_of(*options))


def torch_dim(dim, shape):
    """torch's spelling of 'every dim' for ops that do not accept dim=None."""
    if dim is None:
        return tuple(range(len(shape))) if shape else 0
    return dim


# ---- sum, mean, var, std, logsumexp, amax, amin -----------------------------------------------

def _with_dim(name, **extra):
    """(minigrad fn, torch fn) factories taking (dim, keepdim). torch.logsumexp has no dim=None."""
    def mg_fn(dim, keepdim):
        return lambda x: getattr(mg, name)(x, dim=dim, keepdim=keepdim, **extra)

    def torch_fn(dim, keepdim, shape):
        if name == "logsumexp":
            dim = torch_dim(dim, shape)
        return lambda x: getattr(torch, name)(x, dim=dim, keepdim=keepdim, **extra)
    return mg_fn, torch_fn


REDUCTIONS = {
    "sum": _with_dim("sum"),
    "mean": _with_dim("mean"),
    "var": _with_dim("var"),
    "var_c0": _with_dim("var", correction=0),
    "std": _with_dim("std"),
    "std_c0": _with_dim("std", correction=0),
    "logsumexp": _with_dim("logsumexp"),
    "amax": _with_dim("amax"),
    "amin": _with_dim("amin"),
}


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")  # var/std over one element with correction=1: nan
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", REDUCTIONS)
@FAST
@given(case=shape_and_dim())
@example(case=((), None))
@example(case=((), 0))
@example(case=((1, 3), (0, -1)))
def test_reduction(name, keepdim, case):
    shape, dim = case
    mg_fn, torch_fn = REDUCTIONS[name]
    check_against_torch(mg_fn(dim, keepdim), torch_fn(dim, keepdim, shape), [random_array(shape, 1)])


def test_methods_and_unbiased_flag():
    x = random_array((3, 4), 2)
    check_against_torch(lambda t: (t.sum(1), t.mean(-1, keepdim=True), t.var(0, unbiased=False), t.std(unbiased=True)),
                        lambda t: (t.sum(1), t.mean(-1, keepdim=True), t.var(0, unbiased=False), t.std(unbiased=True)),
                        [x])


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")
@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 1)])
def test_std_of_constant_rows_has_zero_gradient(dim):
    """std = 0 (all values equal): PyTorch defines the gradient as 0 there, not 0/0."""
    x = np.ones((3, 4))
    x[1] = random_array(4, 3)
    kwargs = {} if dim is None else dict(dim=dim)
    check_against_torch(lambda t: t.std(**kwargs, correction=0), lambda t: t.std(**kwargs, correction=0), [x])
    check_against_torch(lambda t: t.std(**kwargs), lambda t: t.std(**kwargs), [x])


def test_sum_of_integers_and_bools_is_int64():
    check_against_torch(lambda t: (t.sum(), t.sum(0)), lambda t: (t.sum(), t.sum(0)),
                        [np.arange(12, dtype=np.int32).reshape(3, 4)])
    check_against_torch(lambda m: (m.sum(), m.sum(-1)), lambda m: (m.sum(), m.sum(-1)),
                        [random_array((3, 4), 4) > 0])


@pytest.mark.parametrize("name", ["amax", "amin"])
@pytest.mark.parametrize("dim", [None, 0, 1, (0, 1), -1])
def test_amax_amin_ties_share_gradient(name, dim):
    x = np.array([[1.0, 3.0, 3.0, -2.0], [0.5, 0.5, -4.0, 3.0], [-4.0, 2.0, -4.0, -4.0]])
    kwargs = {} if dim is None else dict(dim=dim)
    check_against_torch(lambda t: getattr(mg, name)(t, **kwargs), lambda t: getattr(torch, name)(t, **kwargs), [x])


# ---- max / min ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["max", "min"])
@FAST
@given(shape=shapes())
def test_max_min_without_dim(name, shape):
    check_against_torch(lambda t: getattr(t, name)(), lambda t: getattr(t, name)(), [random_array(shape, 5)])


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_without_dim_split_ties_like_torch(name):
    x = np.array([[1.0, 3.0, -4.0], [3.0, 0.0, 3.0], [-4.0, 2.0, -4.0]])
    check_against_torch(lambda t: getattr(mg, name)(t), lambda t: getattr(torch, name)(t), [x])


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["max", "min"])
@FAST
@given(case=shape_and_dim(allow_none=False, allow_tuple=False))
@example(case=((), -1))
def test_max_min_with_dim(name, keepdim, case):
    shape, dim = case
    out = check_against_torch(lambda t: getattr(mg, name)(t, dim, keepdim=keepdim),
                              lambda t: getattr(torch, name)(t, dim, keepdim=keepdim), [random_array(shape, 6)])
    assert out[0].shape == out[1].shape and out[1].dtype == mg.int64


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["argmax", "argmin"])
@FAST
@given(case=shape_and_dim(allow_tuple=False))
@example(case=((), 0))
@example(case=((), None))
def test_argmax_argmin(name, keepdim, case):
    shape, dim = case
    x = np.round(random_array(shape, 7))  # ties: both libraries return the first extremum
    check_against_torch(lambda t: getattr(mg, name)(t, dim, keepdim=keepdim),
                        lambda t: getattr(torch, name)(t, dim, keepdim=keepdim), [x])


# ---- softmax, log_softmax -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@FAST
@given(case=shape_and_dim(allow_none=False, allow_tuple=False))
@example(case=((), 0))
def test_softmax_every_dim(name, case):
    shape, dim = case
    x = 3 * random_array(shape, 8)
    check_against_torch(lambda t: getattr(mg, name)(t, dim), lambda t: getattr(torch, name)(t, dim), [x])
    check_against_torch(lambda t: getattr(t, name)(dim), lambda t: getattr(t, name)(dim), [x])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_with_minus_inf_entries(name, dim):
    x = random_array((4, 5), 9)
    x[0, 1] = x[2, 3] = x[1, 0] = x[3, 4] = x[3, 0] = -np.inf  # no row or column is fully -inf
    check_against_torch(lambda t: getattr(mg, name)(t, dim), lambda t: getattr(torch, name)(t, dim), [x])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0) and -inf - -inf, as PyTorch computes them
@pytest.mark.parametrize("name", ["logsumexp", "log_softmax"])
def test_fully_minus_inf_row_matches_torch_nan(name):
    """logsumexp of an all -inf row is -inf (gradient nan) and log_softmax is nan, in both libraries."""
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 1.0]])
    check_against_torch(lambda t: getattr(mg, name)(t, 1), lambda t: getattr(torch, name)(t, 1), [x])


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_min_with_dim_ties_pick_first_index(name, dim):
    x = np.array([[1.0, 3.0, 3.0, -4.0], [3.0, -4.0, 3.0, -4.0], [-4.0, 3.0, 3.0, 1.0]])
    check_against_torch(lambda t: getattr(t, name)(dim), lambda t: getattr(t, name)(dim), [x])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_large_logits(name):
    x = np.array([[1000.0, 0.0, -1000.0], [-5000.0, -5000.0, -5000.0], [88.0, 89.0, 90.0]])
    check_against_torch(lambda t: getattr(mg, name)(t, -1), lambda t: getattr(torch, name)(t, -1), [x])


@pytest.mark.parametrize("dtype", [mg.float64, mg.float32])
def test_softmax_of_fully_masked_row_is_zero(dtype):
    """A deliberate difference from PyTorch: softmax of a row that is entirely -inf (e.g. a fully masked
    attention row) is 0 in minigrad, where PyTorch gives NaN. The gradient through that row is 0 too."""
    data = random_array((3, 4), 10).astype(dtype)
    data[1] = -np.inf
    x = mg.tensor(data, requires_grad=True)
    y = x.softmax(-1)
    y.backward(random_array((3, 4), 11).astype(dtype))
    assert y.dtype == dtype and x.grad.dtype == dtype
    np.testing.assert_array_equal(y.data[1], np.zeros(4))
    np.testing.assert_array_equal(x.grad.data[1], np.zeros(4))
    assert torch.softmax(torch.from_numpy(data), -1)[1].isnan().all()  # what PyTorch does instead
    # the other rows still match PyTorch
    check_against_torch(lambda t: t.softmax(-1), lambda t: t.softmax(-1), [np.delete(data.astype("float64"), 1, 0)])


# ---- cumsum ---------------------------------------------------------------------------------

@FAST
@given(case=shape_and_dim(allow_none=False, allow_tuple=False))
@example(case=((), 0))
@example(case=((), -1))
def test_cumsum(case):
    shape, dim = case
    check_against_torch(lambda t: mg.cumsum(t, dim), lambda t: torch.cumsum(t, dim), [random_array(shape, 12)])
    check_against_torch(lambda t: t.cumsum(dim=dim), lambda t: t.cumsum(dim=dim), [random_array(shape, 12)])


# ---- sum(dtype=), prod, any, all, var_mean, std_mean, isclose, allclose ---------------------

def with_zeros(shape, seed):
    """A normal array with about a third of its entries set to 0 (rows with one zero and with several)."""
    x = random_array(shape, seed)
    x[np.random.default_rng(seed).random(shape) < 0.35] = 0.0
    return x


def test_sum_with_dtype_casts_first_and_keeps_the_input_gradient_dtype():
    """sum(float32, dtype=float64) sums in float64; the gradient comes back float32 (cast back to compare)."""
    check_against_torch(lambda t: (t.sum(dtype=mg.float64).float(), mg.sum(t, 1, dtype=mg.float64).float()),
                        lambda t: (t.sum(dtype=torch.float64).float(), torch.sum(t, 1, dtype=torch.float64).float()),
                        [random_array((3, 4), 20)], dtypes=("float32",))
    ints = np.arange(12, dtype=np.int32).reshape(3, 4)
    check_against_torch(lambda t: (t.sum(dtype=mg.float32), t.sum(0, dtype=mg.int32)),
                        lambda t: (t.sum(dtype=torch.float32), t.sum(0, dtype=torch.int32)), [ints],
                        dtypes=("float32",))


@pytest.mark.parametrize("keepdim", [False, True])
@FAST
@given(case=shape_and_dim(allow_tuple=False), seed=st.integers(0, 100))
@example(case=((), None), seed=0)
@example(case=((), -1), seed=0)
@example(case=((4, 3), 0), seed=3)
def test_prod_with_zeros_has_torch_exact_gradient(keepdim, case, seed):
    shape, dim = case
    x = with_zeros(shape, seed)
    if dim is None:
        check_against_torch(lambda t: mg.prod(t), lambda t: torch.prod(t), [x])
    else:
        check_against_torch(lambda t: t.prod(dim, keepdim=keepdim), lambda t: t.prod(dim, keepdim=keepdim), [x])


@pytest.mark.parametrize("dim", [None, 0, 1])
def test_prod_rows_with_no_one_and_two_zeros(dim):
    x = np.array([[2.0, -3.0, 0.5, 4.0], [2.0, 0.0, 0.5, 4.0], [0.0, -3.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    kwargs = {} if dim is None else dict(dim=dim)
    check_against_torch(lambda t: t.prod(**kwargs), lambda t: t.prod(**kwargs), [x])
    check_against_torch(lambda t: t.prod(**kwargs, dtype=mg.float64).float(),
                        lambda t: t.prod(**kwargs, dtype=torch.float64).float(), [x], dtypes=("float32",))


def test_prod_of_integers_is_int64_and_rejects_a_tuple_dim():
    ints = np.arange(1, 7, dtype=np.int32).reshape(2, 3)
    check_against_torch(lambda t: (t.prod(), t.prod(1)), lambda t: (t.prod(), t.prod(1)), [ints])
    with pytest.raises(TypeError, match="prod: dim must be an int"):
        mg.prod(mg.tensor(ints), dim=(0, 1))


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["any", "all"])
@FAST
@given(case=shape_and_dim(), seed=st.integers(0, 100))
@example(case=((), None), seed=0)
@example(case=((2, 3), (0, -1)), seed=1)
def test_any_all(name, keepdim, case, seed):
    shape, dim = case
    mask = random_array(shape, seed) > -0.8  # mostly True: all() is sometimes True
    check_against_torch(lambda m: getattr(mg, name)(m, dim, keepdim=keepdim),
                        lambda m: getattr(torch, name)(m, dim, keepdim=keepdim), [mask])
    floats = np.round(random_array(shape, seed))  # any / all of numbers: non-zero counts as True
    check_against_torch(lambda t: getattr(t, name)(), lambda t: getattr(t, name)(), [floats], no_grad=(0,))


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")
@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["var_mean", "std_mean"])
@FAST
@given(case=shape_and_dim())
@example(case=((), None))
@example(case=((3, 1), (0, 1)))
def test_var_mean_std_mean(name, keepdim, correction, case):
    shape, dim = case
    out = check_against_torch(lambda t: getattr(mg, name)(t, dim, correction=correction, keepdim=keepdim),
                              lambda t: getattr(torch, name)(t, dim, correction=correction, keepdim=keepdim),
                              [random_array(shape, 21)])
    assert isinstance(out[0], mg.Tensor) and len(out) == 2


@FAST
@given(shapes=broadcastable_shapes(), seed=st.integers(0, 100), equal_nan=st.booleans())
def test_isclose_allclose(shapes, seed, equal_nan):
    a_shape, b_shape = shapes.input_shapes
    a = np.round(random_array(a_shape, seed))  # small integers: many pairs are equal up to the noise below
    b = np.round(random_array(b_shape, seed + 1)) + random_array(b_shape, seed + 2) * 1e-5
    for rtol, atol in [(1e-5, 1e-8), (0.0, 2e-5), (1e-3, 0.0)]:
        check_against_torch(lambda x, y: mg.isclose(x, y, rtol, atol, equal_nan),
                            lambda x, y: torch.isclose(x, y, rtol, atol, equal_nan), [a, b], no_grad=(0, 1))
        for t_a, t_b in [(a, b), (a, a + 1e-6)]:
            got = mg.allclose(mg.tensor(t_a), mg.tensor(t_b), rtol, atol, equal_nan)
            assert got is torch.allclose(torch.tensor(t_a), torch.tensor(t_b), rtol, atol, equal_nan)


@pytest.mark.parametrize("equal_nan", [False, True])
def test_isclose_nan_and_inf(equal_nan):
    a = np.array([np.nan, np.inf, -np.inf, np.inf, 1.0, 0.0, 1e-9])
    b = np.array([np.nan, np.inf, np.inf, 1e30, 1.0 + 1e-6, 1e-9, 0.0])
    check_against_torch(lambda x, y: x.isclose(y, equal_nan=equal_nan),
                        lambda x, y: x.isclose(y, equal_nan=equal_nan), [a, b], no_grad=(0, 1))
    assert mg.allclose(mg.tensor(a), mg.tensor(a), equal_nan=equal_nan) is equal_nan
    with pytest.raises(TypeError, match="isclose: dtypes float32 and float64"):
        mg.isclose(mg.ones(2), mg.ones(2, dtype=mg.float64))
