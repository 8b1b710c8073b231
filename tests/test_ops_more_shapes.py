"""roll, diag, diagonal, unflatten, unfold, repeat_interleave, meshgrid, clone, take_along_dim, masked_select,
nonzero, scatter, scatter_reduce, empty and full_like against PyTorch, over Hypothesis shapes (0-d, size-1 and
odd sizes) with repeated indices where an op allows them."""
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.backend import np
from book.testing import broadcastable_shapes, check_against_torch, random_array, shapes

FAST = settings(max_examples=15, deadline=None)


@st.composite
def shape_and_dim(draw, min_dims=0, max_dims=4):
    shape = draw(shapes(min_dims=min_dims, max_dims=max_dims))
    span = max(len(shape), 1)
    return shape, draw(st.integers(-span, span - 1)), draw(st.integers(0, 1000))


# ---- roll, diagonal, diag, unflatten, unfold, clone -----------------------------------------

@FAST
@given(case=shape_and_dim(), shift=st.integers(-7, 7), second=st.integers(-3, 9))
@example(case=((), 0, 0), shift=2, second=1)
def test_roll(case, shift, second):
    shape, dim, seed = case
    x = random_array(shape, seed)
    check_against_torch(lambda t: t.roll(shift), lambda t: t.roll(shift), [x])  # dims None: the flattened tensor
    check_against_torch(lambda t: mg.roll(t, shift, dim), lambda t: torch.roll(t, shift, dim), [x])
    if len(shape) >= 2:
        check_against_torch(lambda t: t.roll((shift, second), (0, -1)), lambda t: t.roll((shift, second), (0, -1)),
                            [x])


@st.composite
def diagonal_case(draw):
    shape = draw(shapes(min_dims=2, max_dims=4))
    dim1, dim2 = draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=2, max_size=2)
                      .filter(lambda d: d[0] % len(shape) != d[1] % len(shape)))
    return shape, draw(st.integers(-6, 6)), dim1, dim2


@FAST
@given(case=diagonal_case())
@example(case=((3, 5), 0, 0, 1))
@example(case=((2, 4, 3), -1, 2, 0))
def test_diagonal(case):
    shape, offset, dim1, dim2 = case
    check_against_torch(lambda t: mg.diagonal(t, offset, dim1, dim2), lambda t: torch.diagonal(t, offset, dim1, dim2),
                        [random_array(shape, 1)])
    check_against_torch(lambda t: t.diagonal(offset=offset, dim1=dim1, dim2=dim2),
                        lambda t: t.diagonal(offset=offset, dim1=dim1, dim2=dim2), [random_array(shape, 2)])


@FAST
@given(shape=shapes(min_dims=1, max_dims=2, max_side=6), offset=st.integers(-7, 7))
def test_diag(shape, offset):
    check_against_torch(lambda t: mg.diag(t, offset), lambda t: torch.diag(t, offset), [random_array(shape, 3)])
    check_against_torch(lambda t: t.diag(diagonal=offset), lambda t: t.diag(diagonal=offset), [random_array(shape, 4)])


@st.composite
def unflatten_case(draw):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=12))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[dim]
    first = draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    sizes = draw(st.sampled_from([(first, n // first), (-1, n // first), (first, -1), (1, n, 1), (n,)]))
    return shape, dim, sizes


@FAST
@given(case=unflatten_case())
def test_unflatten(case):
    shape, dim, sizes = case
    check_against_torch(lambda t: t.unflatten(dim, sizes), lambda t: t.unflatten(dim, sizes), [random_array(shape, 5)])
    check_against_torch(lambda t: mg.unflatten(t, dim, sizes), lambda t: torch.unflatten(t, dim, sizes),
                        [random_array(shape, 5)])


def test_unflatten_rejects_sizes_that_do_not_split():
    with pytest.raises(ValueError, match=r"unflatten: sizes \(4, 2\) do not split dimension 1 of size 6"):
        mg.zeros(2, 6).unflatten(1, (4, 2))


@FAST
@given(case=shape_and_dim(max_dims=3), size=st.integers(0, 5), step=st.integers(1, 3))
@example(case=((), 0, 0), size=1, step=1)
@example(case=((7,), 0, 0), size=3, step=1)  # overlapping windows: gradients add up
@example(case=((4, 5, 2), 1, 0), size=2, step=2)
def test_unfold(case, size, step):
    shape, dim, seed = case
    size = min(size, shape[dim] if shape else 1)
    check_against_torch(lambda t: t.unfold(dim, size, step), lambda t: t.unfold(dim, size, step),
                        [random_array(shape, seed)])


def test_unfold_rejects_a_window_larger_than_the_dim():
    with pytest.raises(ValueError, match="unfold: size 5 and step 1 do not fit dimension 1 of size 4"):
        mg.zeros(2, 4).unfold(1, 5, 1)


@FAST
@given(shape=shapes())
def test_clone(shape):
    check_against_torch(lambda t: t.clone() * 2, lambda t: t.clone() * 2, [random_array(shape, 6)])
    data = random_array(shape, 6)
    x = mg.tensor(data.copy())
    mg.clone(x).data[...] = 0  # a copy: x keeps its values
    np.testing.assert_array_equal(x.data, data)


# ---- repeat_interleave, meshgrid ------------------------------------------------------------

@FAST
@given(case=shape_and_dim(max_dims=3), repeats=st.integers(0, 3))
@example(case=((), 0, 0), repeats=2)
def test_repeat_interleave(case, repeats):
    shape, dim, seed = case
    x = random_array(shape, seed)
    check_against_torch(lambda t: t.repeat_interleave(repeats), lambda t: t.repeat_interleave(repeats), [x])
    check_against_torch(lambda t: mg.repeat_interleave(t, repeats, dim),
                        lambda t: torch.repeat_interleave(t, repeats, dim), [x])
    n = shape[dim] if shape else 1
    counts = np.random.default_rng(seed).integers(0, 4, size=n)  # one count per entry, zeros included
    check_against_torch(lambda t, c: t.repeat_interleave(c, dim=dim), lambda t, c: t.repeat_interleave(c, dim=dim),
                        [x, counts])


def test_repeat_interleave_of_counts_alone():
    check_against_torch(lambda c: mg.repeat_interleave(c), lambda c: torch.repeat_interleave(c),
                        [np.array([2, 0, 3, 1])])


@pytest.mark.parametrize("indexing", ["ij", "xy"])
@FAST
@given(sizes=st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=1, max_size=3))
def test_meshgrid(indexing, sizes):
    """None stands for a 0-d tensor. The gradient of each grid sums back to its 1-D tensor."""
    arrays = [random_array(() if n is None else (n,), k) for k, n in enumerate(sizes)]
    check_against_torch(lambda *t: mg.meshgrid(*t, indexing=indexing),
                        lambda *t: torch.meshgrid(*t, indexing=indexing), arrays)
    check_against_torch(lambda *t: mg.meshgrid(list(t), indexing=indexing),
                        lambda *t: torch.meshgrid(list(t), indexing=indexing), arrays)


# ---- take_along_dim, masked_select, nonzero --------------------------------------------------

@st.composite
def take_along_case(draw):
    """An input shape, a dim, and indices broadcastable with it outside dim (size 1 on either side)."""
    shape = draw(shapes(min_dims=1, max_dims=3))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    index_shape = tuple(draw(st.integers(1, 5)) if d == dim % len(shape) else draw(st.sampled_from([n, 1]))
                        for d, n in enumerate(shape))
    shape = tuple(draw(st.sampled_from([n, 1])) if d != dim % len(shape) and index_shape[d] != 1 else n
                  for d, n in enumerate(shape))
    seed = draw(st.integers(0, 1000))
    index = np.random.default_rng(seed).integers(0, shape[dim], size=index_shape)  # repeats included
    return shape, dim, index, seed


@FAST
@given(case=take_along_case())
def test_take_along_dim(case):
    shape, dim, index, seed = case
    x = random_array(shape, seed)
    check_against_torch(lambda t, i: mg.take_along_dim(t, i, dim), lambda t, i: torch.take_along_dim(t, i, dim),
                        [x, index])
    flat = np.random.default_rng(seed).integers(0, x.size, size=(3, 2))
    check_against_torch(lambda t, i: t.take_along_dim(i), lambda t, i: t.take_along_dim(i), [x, flat])


@FAST
@given(case=broadcastable_shapes(), seed=st.integers(0, 1000))
def test_masked_select(case, seed):
    x_shape, mask_shape = case.input_shapes
    mask = random_array(mask_shape, seed + 1) > 0
    check_against_torch(lambda t, m: mg.masked_select(t, m), lambda t, m: torch.masked_select(t, m),
                        [random_array(x_shape, seed), mask])


@FAST
@given(shape=shapes(), seed=st.integers(0, 1000))
@example(shape=(), seed=0)
def test_nonzero(shape, seed):
    x = np.round(random_array(shape, seed))  # about a third zeros
    check_against_torch(lambda t: t.nonzero(), lambda t: t.nonzero(), [x], no_grad=(0,))
    check_against_torch(lambda t: mg.nonzero(t, as_tuple=True), lambda t: torch.nonzero(t, as_tuple=True), [x],
                        no_grad=(0,))


# ---- scatter, scatter_reduce ----------------------------------------------------------------

@st.composite
def scatter_case(draw, unique):
    """(input shape, dim, index, src shape, seed): index no larger than input outside dim, src at least
    index's shape; with unique, no position is written twice (scatter's result is then defined)."""
    shape = draw(shapes(min_dims=1, max_dims=3))
    dim = draw(st.integers(-len(shape), len(shape) - 1)) % len(shape)
    n = shape[dim]
    index_shape = tuple(draw(st.integers(1, n if unique else 6)) if d == dim else draw(st.integers(1, m))
                        for d, m in enumerate(shape))
    seed = draw(st.integers(0, 1000))
    rng = np.random.default_rng(seed)
    if unique:  # along dim, a random choice of distinct positions for every other coordinate
        index = np.argsort(rng.random(index_shape[:dim] + (n,) + index_shape[dim + 1:]), axis=dim)
        index = np.take(index, np.arange(index_shape[dim]), axis=dim)
    else:
        index = rng.integers(0, n, size=index_shape)
    src_shape = tuple(m + draw(st.integers(0, 1)) for m in index_shape)
    return shape, dim, index, src_shape, seed


@FAST
@given(case=scatter_case(unique=True))
def test_scatter(case):
    shape, dim, index, src_shape, seed = case
    x, src = random_array(shape, seed), random_array(index.shape, seed + 1)
    check_against_torch(lambda t, i, s: mg.scatter(t, dim, i, s), lambda t, i, s: torch.scatter(t, dim, i, s),
                        [x, index, src])
    larger = random_array(src_shape, seed + 2)  # torch's backward refuses a src larger than index: forward only
    check_against_torch(lambda t, i, s: t.scatter(dim, i, s), lambda t, i, s: t.scatter(dim, i, s),
                        [x, index, larger], no_grad=(2,))
    check_against_torch(lambda t, i: t.scatter(dim, i, 2.5), lambda t, i: t.scatter(dim, i, 2.5), [x, index])
    check_against_torch(lambda t, i: t.scatter(dim, i, value=-1.0), lambda t, i: t.scatter(dim, i, value=-1.0),
                        [x, index])


def test_scatter_with_repeated_index_takes_torch_gradient():
    """Two writes to one position: the result differs by write order, but the gradients are defined: the input
    gets none there and every src entry gets g at its position (torch's gather)."""
    index = np.array([[0, 1, 0], [0, 1, 2]])
    check_against_torch(lambda t, i, s: (t.scatter(0, i, s) * 0).sum() + t.scatter(0, i, s)[1:].sum(),
                        lambda t, i, s: (t.scatter(0, i, s) * 0).sum() + t.scatter(0, i, s)[1:].sum(),
                        [random_array((3, 3), 1), index, random_array((2, 3), 2)])


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@FAST
@given(case=scatter_case(unique=False))
def test_scatter_reduce(reduce, include_self, case):
    shape, dim, index, src_shape, seed = case
    x = random_array(shape, seed)
    for src, no_grad in [(random_array(index.shape, seed + 1), ()), (random_array(src_shape, seed + 2), (0, 2))]:
        check_against_torch(lambda t, i, s: mg.scatter_reduce(t, dim, i, s, reduce, include_self=include_self),
                            lambda t, i, s: torch.scatter_reduce(t, dim, i, s, reduce, include_self=include_self),
                            [x, index, src], no_grad=no_grad)  # a src larger than index: torch has no backward


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["prod", "amax", "amin", "mean"])
def test_scatter_reduce_ties_and_zeros(reduce, include_self):
    """Small integers tie often (amax / amin share g among the tied entries) and include zeros (prod's
    gradient without dividing by 0): rows of the index collide on purpose."""
    x = np.array([[1.0, 0.0, 2.0, -1.0], [2.0, 2.0, 0.0, 1.0], [0.0, 1.0, 2.0, 2.0]])
    src = np.array([[2.0, 0.0, 2.0, 1.0], [1.0, 2.0, 0.0, 0.0], [2.0, 1.0, 0.0, 2.0], [0.0, 2.0, 2.0, -1.0]])
    index = np.array([[0, 2, 1, 1], [0, 2, 1, 2], [0, 0, 1, 2], [2, 2, 1, 1]])
    check_against_torch(lambda t, i, s: t.scatter_reduce(0, i, s, reduce, include_self=include_self),
                        lambda t, i, s: t.scatter_reduce(0, i, s, reduce, include_self=include_self),
                        [x, index, src])


def test_scatter_reduce_of_integers_and_bad_reduce():
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    index = np.array([[0, 1, 0, 2], [2, 1, 0, 0]])
    for reduce in ["sum", "prod", "mean", "amax", "amin"]:
        for include_self in (True, False):
            check_against_torch(lambda t, i: t.scatter_reduce(0, i, i * 3 - 1, reduce, include_self=include_self),
                                lambda t, i: t.scatter_reduce(0, i, i * 3 - 1, reduce, include_self=include_self),
                                [x, index])
    with pytest.raises(ValueError, match="scatter_reduce: reduce must be one of"):
        mg.zeros(3).scatter_reduce(0, mg.tensor([0]), mg.ones(1), "max")


# ---- empty, full_like -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [None, "float64", "int64", "bool"])
def test_empty_and_full_like(dtype):
    """empty's values are unspecified: only its shape and dtype are compared."""
    mg_dtype = None if dtype is None else getattr(mg, "bool_" if dtype == "bool" else dtype)
    t_dtype = None if dtype is None else getattr(torch, dtype)
    made, want = mg.empty(2, 3, dtype=mg_dtype), torch.empty(2, 3, dtype=t_dtype)
    assert made.shape == tuple(want.shape) and made.dtype == want.numpy().dtype
    assert mg.empty((4,)).shape == (4,) and mg.empty(2, requires_grad=True).requires_grad
    like = random_array((3, 1, 2), 7).astype(np.float32)
    made, want = mg.full_like(mg.tensor(like), 2, dtype=mg_dtype), torch.full_like(torch.from_numpy(like), 2,
                                                                                    dtype=t_dtype)
    assert made.dtype == want.numpy().dtype
    np.testing.assert_array_equal(made.data, want.numpy())
