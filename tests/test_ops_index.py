"""gather, scatter_add, index_select, sort, argsort and topk against PyTorch, with repeated indices."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.backend import np
from book.testing import check_against_torch, random_array, shapes

FAST = settings(max_examples=10, deadline=None)


@st.composite
def gather_case(draw):
    """A shape, a dim, and an index no larger than the shape (smaller along other dims), with repeats."""
    shape = draw(shapes(min_dims=1, max_dims=3))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    index_shape = tuple(draw(st.integers(1, n)) if d != dim % len(shape) else draw(st.integers(1, 6))
                        for d, n in enumerate(shape))
    seed = draw(st.integers(0, 1000))
    index = np.random.default_rng(seed).integers(0, shape[dim], size=index_shape)
    return shape, dim, index, seed


@FAST
@given(gather_case())
def test_gather(case):
    shape, dim, index, seed = case
    check_against_torch(lambda x, i: mg.gather(x, dim, i), lambda x, i: torch.gather(x, dim, i),
                        [random_array(shape, seed), index])


def test_gather_repeated_indices_add_gradients():
    index = np.array([[0, 0, 2], [1, 1, 1], [2, 0, 2], [0, 1, 0]])  # (4, 3): rows picked several times
    check_against_torch(lambda x, i: x.gather(0, i), lambda x, i: x.gather(0, i), [random_array((3, 5)), index])


@FAST
@given(gather_case())
def test_scatter_add(case):
    shape, dim, index, seed = case
    target_shape = tuple(max(n, index.shape[d]) if d != dim % len(shape) else n for d, n in enumerate(shape))
    check_against_torch(lambda x, i, s: mg.scatter_add(x, dim, i, s), lambda x, i, s: torch.scatter_add(x, dim, i, s),
                        [random_array(target_shape, seed), index, random_array(index.shape, seed + 1)])


def test_scatter_add_repeated_indices_and_a_larger_src():
    index = np.array([[0, 2, 2, 0], [2, 2, 2, 1]])  # every column hits a row twice
    check_against_torch(lambda x, i, s: x.scatter_add(0, i, s), lambda x, i, s: x.scatter_add(0, i, s),
                        [random_array((3, 4)), index, random_array((2, 4), 1)])
    # src larger than index: only index's part is used (torch's backward refuses this case, so src gets no grad)
    check_against_torch(lambda x, i, s: x.scatter_add(1, i, s), lambda x, i, s: x.scatter_add(1, i, s),
                        [random_array((3, 4)), index, random_array((3, 6), 1)], no_grad=(2,))


@FAST
@given(shapes(min_dims=1, max_dims=3), st.data())
def test_index_select(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    index = np.asarray(data.draw(st.lists(st.integers(0, shape[dim] - 1), min_size=1, max_size=7)))
    check_against_torch(lambda x, i: mg.index_select(x, dim, i), lambda x, i: torch.index_select(x, dim, i),
                        [random_array(shape), index])


def test_index_select_repeated_and_scalar_index():
    check_against_torch(lambda x, i: x.index_select(1, i), lambda x, i: x.index_select(1, i),
                        [random_array((3, 5)), np.array([4, 0, 4, 4, 1])])
    check_against_torch(lambda x, i: x.index_select(0, i), lambda x, i: x.index_select(0, i),
                        [random_array((3, 5)), np.array(2)])


@FAST
@given(shapes(min_dims=0, max_dims=3, max_side=6), st.booleans(), st.data())
def test_sort_and_argsort(shape, descending, data):
    span = max(len(shape), 1)
    dim = data.draw(st.integers(-span, span - 1))
    x = random_array(shape, seed=len(shape))
    check_against_torch(lambda t: mg.sort(t, dim, descending), lambda t: torch.sort(t, dim=dim, descending=descending),
                        [x])
    check_against_torch(lambda t: mg.argsort(t, dim, descending),
                        lambda t: torch.argsort(t, dim=dim, descending=descending), [x])


def test_sort_ties_are_stable():
    x = np.array([[2.0, 1.0, 2.0, 0.0, 1.0, 2.0], [3.0, 3.0, 3.0, 1.0, 1.0, 3.0]])  # many ties
    for descending in (False, True):
        check_against_torch(lambda t: t.sort(-1, descending),
                            lambda t: torch.sort(t, dim=-1, descending=descending, stable=True), [x])
        check_against_torch(lambda t: t.argsort(-1, descending),
                            lambda t: torch.argsort(t, dim=-1, descending=descending, stable=True), [x])


@FAST
@given(shapes(min_dims=1, max_dims=3, max_side=7), st.booleans(), st.data())
def test_topk(shape, largest, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(0, shape[dim]))
    check_against_torch(lambda t: mg.topk(t, k, dim, largest), lambda t: torch.topk(t, k, dim, largest),
                        [random_array(shape, seed=k)])


def test_topk_unsorted_picks_the_same_set():
    x = random_array((4, 9))
    values, indices = mg.topk(mg.tensor(x), 3, dim=1, sorted=False)
    want = torch.topk(torch.from_numpy(x), 3, dim=1).indices.numpy()
    assert indices.dtype == mg.int64
    np.testing.assert_array_equal(np.sort(indices.numpy(), axis=1), np.sort(want, axis=1))
    np.testing.assert_array_equal(values.numpy(), np.take_along_axis(x, indices.numpy(), axis=1))


def test_topk_gradient_goes_to_the_picked_positions():
    check_against_torch(lambda t: t.topk(2, dim=0, largest=False), lambda t: t.topk(2, dim=0, largest=False),
                        [random_array((6, 3))])


@pytest.mark.parametrize("call, message", [
    (lambda x: mg.gather(x, 0, mg.tensor([[3]])), "gather: index out of range"),
    (lambda x: mg.gather(x, 1, mg.tensor([0, 1])), "gather: index of shape"),
    (lambda x: mg.gather(x, 0, mg.tensor([[0.5]])), "gather: index must be an integer"),
    (lambda x: mg.index_select(x, 1, mg.tensor([[0]])), "index_select: index must be 0-d or 1-d"),
    (lambda x: mg.index_select(x, 1, mg.tensor([-1])), "index_select: index out of range"),
    (lambda x: mg.scatter_add(x, 0, mg.tensor([[0, 0, 0, 0, 0]]), mg.zeros(1, 5)), "scatter_add: index of shape"),
    (lambda x: mg.topk(x, 5, dim=0), r"topk: k=5 is out of range"),
])
def test_bad_input_names_the_op(call, message):
    with pytest.raises((IndexError, ValueError, TypeError), match=message):
        call(mg.zeros(3, 4))
