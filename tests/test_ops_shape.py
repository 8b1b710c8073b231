"""Shape ops and indexing against PyTorch: each output and each input gradient."""
import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.backend import np
from book.testing import check_against_torch, random_array, shapes

FAST = settings(max_examples=15, deadline=None)


def check(fn, inputs, **kwargs):
    """Most shape ops are spelled the same in both libraries: one lambda serves both."""
    return check_against_torch(fn, fn, inputs, **kwargs)


# ---- reshape, view, flatten, squeeze, unsqueeze ---------------------------------------------

@FAST
@given(shape=shapes())
def test_reshape_and_view(shape):
    x = random_array(shape, 1)
    n = math.prod(shape)
    check(lambda t: t.reshape(tuple(reversed(shape))), [x])
    check(lambda t: t.reshape(-1), [x])
    check(lambda t: t.view(n, 1), [x])
    check(lambda t: t.reshape(1, -1, 1), [x])
    check(lambda t: t.view(shape), [x])


def test_reshape_module_function():
    check_against_torch(lambda t: mg.reshape(t, (4, 3)), lambda t: torch.reshape(t, (4, 3)),
                        [random_array((2, 6), 2)])


@pytest.mark.parametrize("start, end", [(0, -1), (1, -1), (0, 1), (1, 2), (-2, -1), (2, 2), (-3, 1)])
def test_flatten(start, end):
    check(lambda t: t.flatten(start, end), [random_array((2, 3, 1, 4), 3)])
    check(lambda t: t.flatten(start_dim=start, end_dim=end), [random_array((2, 3, 1, 4), 3)])


def test_flatten_0d_and_1d():
    check(lambda t: t.flatten(), [random_array((), 4)])
    check(lambda t: t.flatten(), [random_array((5,), 4)])


@pytest.mark.parametrize("dim", [None, 0, 1, 2, -1, -4, (0, 2), (1, -1)])
def test_squeeze(dim):
    x = random_array((1, 3, 1, 1), 5)
    check(lambda t: t.squeeze() if dim is None else t.squeeze(dim), [x])


def test_squeeze_0d():
    check(lambda t: (t.squeeze(), t.squeeze(0)), [random_array((), 6)])


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -2, -3, -4])
def test_unsqueeze(dim):
    check(lambda t: t.unsqueeze(dim), [random_array((2, 3, 4), 7)])
    check_against_torch(lambda t: mg.unsqueeze(t, dim), lambda t: torch.unsqueeze(t, dim),
                        [random_array((2, 3, 4), 7)])


# ---- permute, transpose, T, mT --------------------------------------------------------------

@FAST
@given(data=st.data(), shape=shapes(min_dims=1))
def test_permute(data, shape):
    perm = data.draw(st.permutations(range(len(shape))))
    signs = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    dims = [d - len(shape) if s else d for d, s in zip(perm, signs)]  # mix negative dims in
    check(lambda t: t.permute(*dims), [random_array(shape, 8)])
    check(lambda t: t.permute(dims), [random_array(shape, 8)])


@pytest.mark.parametrize("dims", [(0, 1), (1, 0), (0, 2), (-1, -2), (1, 1), (0, -1)])
def test_transpose(dims):
    check(lambda t: t.transpose(*dims), [random_array((2, 3, 4), 9)])
    check_against_torch(lambda t: mg.transpose(t, *dims), lambda t: torch.transpose(t, *dims),
                        [random_array((2, 3, 4), 9)])


def test_transpose_0d():
    check(lambda t: t.transpose(0, -1), [random_array((), 10)])


def test_T_and_mT():
    check(lambda t: t.T, [random_array((3, 4), 11)])
    # PyTorch deprecates .T on other than 2-D; minigrad keeps its reversed-dims meaning
    check_against_torch(lambda t: t.T, lambda t: t.permute(2, 1, 0), [random_array((2, 3, 4), 11)])
    check(lambda t: t.mT, [random_array((2, 3, 4), 11)])
    check(lambda t: t.mT, [random_array((3, 4), 11)])


# ---- expand, expand_as, repeat --------------------------------------------------------------

@pytest.mark.parametrize("shape, sizes", [
    ((3, 1), (3, 4)), ((3, 1), (-1, 4)), ((3, 1), (2, 3, 4)), ((3, 1), (2, -1, 5)), ((1,), (4,)),
    ((), (2, 3)), ((1, 1), (1, 1)), ((2, 1, 3), (4, 2, 5, 3)),
])
def test_expand(shape, sizes):
    check(lambda t: t.expand(*sizes), [random_array(shape, 12)])
    check(lambda t: t.expand(sizes), [random_array(shape, 12)])


def test_expand_as():
    check(lambda t, u: t.expand_as(u), [random_array((3, 1), 13), random_array((2, 3, 4), 14)], no_grad=(1,))


@pytest.mark.parametrize("shape, repeats", [
    ((3,), (2,)), ((2, 3), (2, 1)), ((2, 3), (1, 3)), ((2, 3), (2, 2, 3)), ((), (3,)), ((1, 2), (3, 1, 2)),
])
def test_repeat(shape, repeats):
    check(lambda t: t.repeat(*repeats), [random_array(shape, 15)])
    check(lambda t: t.repeat(repeats), [random_array(shape, 15)])


# ---- cat, stack, split, chunk ---------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_cat(dim):
    shapes_ = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    shapes_ = [tuple(n + k if i == dim % 3 else n for i, n in enumerate(s)) for k, s in enumerate(shapes_)]
    xs = [random_array(s, 16 + k) for k, s in enumerate(shapes_)]
    check_against_torch(lambda *ts: mg.cat(ts, dim), lambda *ts: torch.cat(ts, dim), xs)
    check_against_torch(lambda *ts: mg.cat(list(ts), dim=dim), lambda *ts: torch.cat(list(ts), dim=dim), xs,
                        no_grad=(1,))


def test_cat_single_and_same_tensor_twice():
    x = random_array((2, 3), 19)
    check_against_torch(lambda t: mg.cat([t]), lambda t: torch.cat([t]), [x])
    check_against_torch(lambda t: mg.cat([t, t * 2, t], 1), lambda t: torch.cat([t, t * 2, t], 1), [x])


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack(dim):
    xs = [random_array((2, 3), 20 + k) for k in range(3)]
    check_against_torch(lambda *ts: mg.stack(ts, dim), lambda *ts: torch.stack(ts, dim), xs)
    check_against_torch(lambda *ts: mg.stack(list(ts), dim=dim), lambda *ts: torch.stack(list(ts), dim=dim), xs,
                        no_grad=(0, 2))


def test_stack_0d():
    check_against_torch(lambda a, b: mg.stack([a, b]), lambda a, b: torch.stack([a, b]),
                        [random_array((), 23), random_array((), 24)])


@pytest.mark.parametrize("size, dim", [(2, 0), (3, 1), (1, -1), (4, 1), (10, 1), (2, -2)])
def test_split_int(size, dim):
    x = random_array((5, 7), 25)
    check(lambda t: t.split(size, dim), [x])
    check_against_torch(lambda t: mg.split(t, size, dim=dim), lambda t: torch.split(t, size, dim=dim), [x])


@pytest.mark.parametrize("sizes, dim", [([2, 3], 0), ([1, 4, 2], 1), ([7], -1), ([0, 5, 2], 1)])
def test_split_sections(sizes, dim):
    check(lambda t: t.split(sizes, dim), [random_array((5, 7), 26)])


@pytest.mark.parametrize("chunks, dim", [(2, 0), (3, 1), (7, 1), (4, -1), (1, 0), (5, 0)])
def test_chunk(chunks, dim):
    x = random_array((5, 7), 27)
    check(lambda t: t.chunk(chunks, dim), [x])
    check_against_torch(lambda t: mg.chunk(t, chunks, dim), lambda t: torch.chunk(t, chunks, dim), [x])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_unbind(dim):
    check(lambda t: t.unbind(dim), [random_array((3, 4, 2), 30)])


def test_pieces_used_twice_and_backward_twice():
    """Split pieces share one gradient buffer: reusing a piece and retain_graph must still add up."""
    check(lambda t: (lambda a, b: a * b + a)(*t.split(2, 0)), [random_array((4, 3), 31)])
    x = mg.tensor(random_array((4, 3), 32), requires_grad=True)
    xt = torch.tensor(x.data.copy(), requires_grad=True)
    for t in (x, xt):
        a, b = t.unbind(1)[0], t.unbind(1)[2]
        loss = (a * b).sum()
        loss.backward(retain_graph=True)
        loss.backward()
    np.testing.assert_allclose(x.grad.data, xt.grad.numpy(), rtol=1e-6)


def test_only_some_pieces_used():
    """Pieces that do not reach the loss contribute zero gradient, as in PyTorch."""
    check(lambda t: t.split(2, 1)[1] * 3, [random_array((3, 7), 28)])
    check(lambda t: t.chunk(3, 0)[0] + t.chunk(3, 0)[2], [random_array((6, 2), 29)])


# ---- tril, triu, flip -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("diagonal", [0, 1, -1, 2, -3, 5, -5])
@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 3), (2, 3, 4, 4), (2, 1, 3)])
def test_tril_triu(name, diagonal, shape):
    x = random_array(shape, 30)
    check(lambda t: getattr(t, name)(diagonal), [x])
    check_against_torch(lambda t: getattr(mg, name)(t, diagonal=diagonal),
                        lambda t: getattr(torch, name)(t, diagonal=diagonal), [x])


@pytest.mark.parametrize("dims", [(0,), (1,), (-1,), (0, 2), (0, 1, 2), [1, -1]])
def test_flip(dims):
    check(lambda t: t.flip(dims), [random_array((2, 3, 4), 31)])
    check_against_torch(lambda t: mg.flip(t, dims), lambda t: torch.flip(t, dims), [random_array((2, 3, 4), 31)])


# ---- getitem --------------------------------------------------------------------------------

BASIC_INDICES = {
    "int": 1,
    "neg_int": -1,
    "slice": slice(1, 3),
    "slice_step": slice(None, None, 2),
    "slice_neg_start": slice(-2, None),
    "slice_step_3": slice(0, 4, 3),
    "empty_slice": slice(2, 2),
    "tuple": (1, slice(None), -1),
    "row_col": (slice(1, None), slice(None, None, 2)),
    "neg_everything": (-2, slice(-3, -1), -4),
    "none": None,
    "none_in_middle": (slice(None), None, 1),
    "ellipsis": Ellipsis,
    "ellipsis_last": (Ellipsis, -1),
    "ellipsis_middle": (0, Ellipsis, 2),
    "ellipsis_none": (Ellipsis, None, slice(1, 3)),
    "scalar_element": (1, 2, 3),
}


@pytest.mark.parametrize("name", BASIC_INDICES)
def test_getitem_basic(name):
    index = BASIC_INDICES[name]
    check(lambda t: t[index], [random_array((3, 4, 5), 32)])


NEGATIVE_STEPS = {  # PyTorch has no negative steps: the same selection spelled with flip
    "reverse": (lambda t: t[::-1], lambda t: t.flip(0)),
    "reverse_last": (lambda t: t[..., ::-1], lambda t: t.flip(-1)),
    "every_other_backwards": (lambda t: t[:, 3:0:-2], lambda t: t.flip(1)[:, 0:3:2]),
    "mixed": (lambda t: t[-1, ::-2, 1:], lambda t: t.flip(1)[-1, ::2, 1:]),
}


@pytest.mark.parametrize("name", NEGATIVE_STEPS)
def test_getitem_negative_steps(name):
    check_against_torch(*NEGATIVE_STEPS[name], [random_array((3, 4, 5), 32)])


def test_getitem_index_steps_past_the_end():
    check(lambda t: t[1:100:3, -100:2], [random_array((7, 4), 33)])


INT_ARRAY_INDICES = {
    "repeated": np.array([0, 2, 0, 0, 1]),
    "negative": np.array([-1, 0, -1]),
    "2d": np.array([[0, 1], [1, 1], [2, 0]]),
    "0d": np.array(2),
    "empty": np.array([], dtype=np.int64),
}


@pytest.mark.parametrize("name", INT_ARRAY_INDICES)
def test_getitem_integer_array_tensor(name):
    """The index passes through check_against_torch as an int64 tensor on both sides."""
    check(lambda t, i: t[i], [random_array((3, 4), 34), INT_ARRAY_INDICES[name]])
    check(lambda t, i: t[:, i], [random_array((3, 4), 34), INT_ARRAY_INDICES[name]])
    check(lambda t, i: t[..., i], [random_array((2, 3, 4), 35), INT_ARRAY_INDICES[name]])


def test_getitem_integer_lists_and_pairs():
    rows, cols = np.array([0, 2, 2, 0]), np.array([1, 1, 1, 3])
    check(lambda t: t[[0, 0, 2]], [random_array((3, 4), 36)])
    check(lambda t, r, c: t[r, c], [random_array((3, 4), 36), rows, cols])
    check(lambda t, r, c: t[r[:, None], c], [random_array((3, 4), 36), rows, cols])  # broadcast index arrays
    check(lambda t, r: t[1:, r[:2]], [random_array((3, 4), 36), rows])
    check(lambda t, r: t[r, 1:3], [random_array((3, 4, 5), 37), rows])
    check(lambda t, r: t[None, r, ..., 0], [random_array((3, 4, 5), 37), rows])


@pytest.mark.parametrize("where", ["[0, :, r]", "[None, r, ..., 0]", "[r, 0, r]", "[:, r, 1:, 0]", "[r, 1, :, r]",
                                   "[..., r, 0]", "[1, m]", "[m[:3, :4], 2]", "[-1, ..., r, None]"])
def test_getitem_ints_are_applied_before_arrays_like_torch(where):
    """PyTorch applies ints first (x[0, :, r] has shape (4, 3, 6)); NumPy alone would give (3, 4, 6)."""
    fn = eval(f"lambda t, r, m: t{where}")  # noqa: S307 (the index spelled as written)
    check(fn, [random_array((3, 4, 5, 6), 45), np.array([0, 2, 2]), random_array((4, 5), 46) > 0])


def test_getitem_repeated_indices_accumulate_like_embedding():
    tokens = np.array([[1, 4, 1], [0, 1, 4]])
    check(lambda w, i: w[i], [random_array((6, 3), 38), tokens])


BOOL_MASKS = {
    "full": lambda: random_array((3, 4), 39) > 0,
    "rows": lambda: np.array([True, False, True]),
    "none_true": lambda: np.zeros((3, 4), dtype=bool),
    "all_true": lambda: np.ones((3,), dtype=bool),
}


@pytest.mark.parametrize("name", BOOL_MASKS)
def test_getitem_boolean_mask(name):
    check(lambda t, m: t[m], [random_array((3, 4), 40), BOOL_MASKS[name]()])


def test_getitem_boolean_mask_with_slices():
    cols = np.array([True, False, True, True])
    check(lambda t, m: t[:, m], [random_array((3, 4), 41), cols])
    check(lambda t, m: t[1:, m], [random_array((3, 4), 41), cols])
    check(lambda t: t[t > 0], [random_array((3, 4), 42)])


def test_getitem_then_setitem_free_ops_share_gradient():
    """The same tensor indexed twice with overlapping slices: gradients add."""
    check(lambda t: t[1:] * t[:-1] + t[::2].sum(), [random_array((5, 3), 43)])


@example(shape=(1,))
@FAST
@given(shape=shapes(min_dims=1))
def test_getitem_random_slices(shape):
    """Even dims: a positive-step slice from the middle; odd dims reversed (torch: flip, then take all)."""
    index = tuple(slice(n // 2, None, 1 + i % 3) if i % 2 == 0 else slice(None, None, -1) for i, n in enumerate(shape))
    torch_index = tuple(slice(None) if i % 2 else part for i, part in enumerate(index))
    reversed_dims = tuple(range(1, len(shape), 2))
    check_against_torch(lambda t: t[index], lambda t: t.flip(reversed_dims)[torch_index], [random_array(shape, 44)])


@st.composite
def mixed_index(draw):
    """A shape and an index mixing ints, slices, lists, tuples, None and at most one Ellipsis; the list and tuple
    indices share one length (or have length 1), so they broadcast together as torch requires."""
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple))
    length = draw(st.integers(1, 3))
    parts, dim, ellipsis_used = [], 0, False
    while dim < len(shape):
        n = shape[dim]
        kind = draw(st.sampled_from(["int", "slice", "list", "tuple", "none", "ellipsis"]))
        if kind == "none":
            parts.append(None)
            continue
        if kind == "ellipsis":
            if ellipsis_used:
                continue
            ellipsis_used = True
            parts.append(Ellipsis)
            dim = len(shape) - draw(st.integers(0, len(shape) - dim))  # the dims it spans
            continue
        if kind == "int":
            parts.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            start, stop = draw(st.integers(-n, n)), draw(st.integers(-n, n))
            parts.append(slice(start, stop, draw(st.integers(1, 3))))
        else:
            size = draw(st.sampled_from([1, length]))
            positions = draw(st.lists(st.integers(-n, n - 1), min_size=size, max_size=size))
            parts.append(positions if kind == "list" else tuple(positions))
        dim += 1
    return shape, tuple(parts)


@settings(max_examples=200, deadline=None)
@given(mixed_index())
@example(((2, 5, 6, 5), (1, (0, 2), slice(None), [1, 3])))
@example(((2, 5, 6, 5), (None, 1, [0, 2], None, [1, 3])))
@example(((2, 5, 6, 5), (slice(None), [0, 2], None, [1, 3])))
@example(((2, 5, 6, 5), ((0, 1), (0, 2))))
def test_getitem_mixed_indices_match_torch(case):
    """Lists and tuples inside an index are array indices; where the broadcast index dims go (in place when the
    array indices are adjacent, first otherwise; ints applied first) follows torch, forward and backward."""
    shape, index = case
    check(lambda t: t[index], [random_array(shape, 47)])
