"""cumprod, cummax, cummin and logcumsumexp against PyTorch: every dim of Hypothesis shapes (0-d and size-1 dims
included), zeros for cumprod, ties and NaN for cummax / cummin, large magnitudes for logcumsumexp."""
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.backend import np
from book.testing import check_against_torch, random_array, shapes

FAST = settings(max_examples=15, deadline=None)


@st.composite
def shape_and_dim(draw):
    """A shape (0-d included) and one dim of it, non-negative or negative; a 0-d tensor takes 0 and -1."""
    shape = draw(shapes())
    span = max(len(shape), 1)
    return shape, draw(st.integers(-span, span - 1)), draw(st.integers(0, 1000))


def with_zeros(shape, seed):
    """About a third of the entries 0: rows with no zero, one zero, and several."""
    x = random_array(shape, seed)
    x[np.random.default_rng(seed).random(shape) < 0.35] = 0.0
    return x


# ---- cumprod --------------------------------------------------------------------------------

@FAST
@given(case=shape_and_dim())
@example(case=((), 0, 0))
@example(case=((6, 3), 0, 4))
def test_cumprod(case):
    shape, dim, seed = case
    check_against_torch(lambda t: mg.cumprod(t, dim), lambda t: torch.cumprod(t, dim), [random_array(shape, seed)])
    check_against_torch(lambda t: t.cumprod(dim=dim), lambda t: t.cumprod(dim=dim), [with_zeros(shape, seed)])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumprod_gradient_is_exact_at_zeros(dim):
    """Rows with no zero, a zero first, in the middle, last, and two zeros: torch's gradient, not x/0."""
    x = np.array([[2.0, -1.5, 0.5, 3.0, 1.2], [0.0, -1.5, 0.5, 3.0, 1.2], [2.0, -1.5, 0.0, 3.0, 1.2],
                  [2.0, -1.5, 0.5, 3.0, 0.0], [2.0, 0.0, 0.5, 0.0, 1.2], [0.0, 0.0, 0.0, 0.0, 0.0]])
    check_against_torch(lambda t: t.cumprod(dim), lambda t: t.cumprod(dim), [x])


def test_cumprod_dtype_and_integers():
    x = random_array((3, 4), 1)
    check_against_torch(lambda t: t.cumprod(1, dtype=mg.float64).float(),
                        lambda t: t.cumprod(1, dtype=torch.float64).float(), [x], dtypes=("float32",))
    ints = np.arange(1, 13, dtype=np.int32).reshape(3, 4)
    check_against_torch(lambda t: (t.cumprod(0), t.cumprod(1, dtype=mg.int32)),
                        lambda t: (t.cumprod(0), t.cumprod(1, dtype=torch.int32)), [ints])


# ---- cummax, cummin -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cummax", "cummin"])
@FAST
@given(case=shape_and_dim())
@example(case=((), -1, 0))
@example(case=((1, 7), 1, 2))
def test_cummax_cummin(name, case):
    """Rounded values tie often: the latest tied position wins, in the indices and in the gradient."""
    shape, dim, seed = case
    x = np.round(random_array(shape, seed))
    check_against_torch(lambda t: getattr(mg, name)(t, dim), lambda t: getattr(torch, name)(t, dim), [x])
    check_against_torch(lambda t: getattr(t, name)(dim), lambda t: getattr(t, name)(dim), [random_array(shape, seed)])


@pytest.mark.parametrize("name", ["cummax", "cummin"])
def test_cummax_cummin_ties_nan_and_integers(name):
    x = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, -1.0], [1.0, np.nan, 5.0, np.nan, 2.0, -9.0]])
    check_against_torch(lambda t: getattr(t, name)(1), lambda t: getattr(t, name)(1), [x])
    ints = np.array([[4, 1, 4, 7, 0], [2, 2, 9, 1, 9]], dtype=np.int32)
    check_against_torch(lambda t: getattr(t, name)(-1), lambda t: getattr(t, name)(-1), [ints])


# ---- logcumsumexp ---------------------------------------------------------------------------

@FAST
@given(case=shape_and_dim())
@example(case=((), 0, 0))
def test_logcumsumexp(case):
    shape, dim, seed = case
    check_against_torch(lambda t: mg.logcumsumexp(t, dim), lambda t: torch.logcumsumexp(t, dim),
                        [3 * random_array(shape, seed)])
    check_against_torch(lambda t: t.logcumsumexp(dim), lambda t: t.logcumsumexp(dim), [random_array(shape, seed)])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # -inf - -inf in the backward, as torch computes it
def test_logcumsumexp_is_stable_for_large_and_minus_inf_entries():
    x = np.array([[1000.0, -1000.0, 1001.0, 0.0], [-800.0, -790.0, -1000.0, -805.0], [-np.inf, 0.0, -np.inf, 2.0]])
    check_against_torch(lambda t: t.logcumsumexp(1), lambda t: t.logcumsumexp(1), [x])
    with pytest.raises(TypeError, match="logcumsumexp: input dtype must be floating point"):
        mg.logcumsumexp(mg.tensor([1, 2]), 0)
