"""Reductions and the softmax family against PyTorch, over Hypothesis shapes and every form of `dim`."""
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.backend import np
from book.testing import check_against_torch, random_array, shapes

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
