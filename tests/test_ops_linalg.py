"""matmul in every PyTorch case, and einsum, against PyTorch."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

import minigrad as mg
from book.testing import check_against_torch, random_array

FAST = settings(max_examples=15, deadline=None)

MATMUL_SHAPES = {
    "1d@1d": ((4,), (4,)),
    "1d@2d": ((4,), (4, 3)),
    "2d@1d": ((3, 4), (4,)),
    "2d@2d": ((3, 4), (4, 5)),
    "1x1": ((1, 1), (1, 1)),
    "batched@2d": ((2, 3, 4), (4, 5)),
    "batched4d@2d": ((2, 2, 3, 4), (4, 5)),
    "2d@batched": ((3, 4), (2, 4, 5)),
    "batched@batched": ((2, 3, 4), (2, 4, 5)),
    "batched@1d": ((2, 3, 4), (4,)),
    "1d@batched": ((4,), (2, 4, 5)),
    "broadcast_batch": ((2, 1, 3, 4), (5, 4, 6)),
    "broadcast_both": ((2, 1, 3, 4), (1, 5, 4, 6)),
    "size1_batch_on_right": ((3, 2, 4), (1, 4, 2)),
}


@pytest.mark.parametrize("name", MATMUL_SHAPES)
def test_matmul(name):
    a_shape, b_shape = MATMUL_SHAPES[name]
    a, b = random_array(a_shape, 1), random_array(b_shape, 2)
    check_against_torch(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])
    check_against_torch(mg.matmul, torch.matmul, [a, b], no_grad=(0,))
    check_against_torch(lambda x, y: x.matmul(y), lambda x, y: x.matmul(y), [a, b], no_grad=(1,))


@FAST
@given(shapes_=hnp.mutually_broadcastable_shapes(signature="(n?,k),(k,m?)->(n?,m?)", max_dims=3, max_side=4))
def test_matmul_random_shapes(shapes_):
    """NumPy's matmul signature: optional 1-D operands, broadcast batch dims (PyTorch's rules too)."""
    a_shape, b_shape = shapes_.input_shapes
    check_against_torch(lambda x, y: x @ y, lambda x, y: x @ y, [random_array(a_shape, 3), random_array(b_shape, 4)])


def test_matmul_with_numpy_operand():
    """array @ tensor goes through Tensor.__rmatmul__, not NumPy's own matmul."""
    w = random_array((4, 3), 5)
    check_against_torch(lambda x: w @ x, lambda x: torch.from_numpy(w) @ x, [random_array((3, 2), 6)],
                        dtypes=("float64",))


EINSUMS = {
    "matmul": ("ij,jk->ik", [(3, 4), (4, 5)]),
    "attention_scores": ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    "attention_values": ("bhqk,bhkd->bhqd", [(2, 3, 4, 6), (2, 3, 6, 5)]),
    "implicit_output": ("ij,jk", [(3, 4), (4, 5)]),
    "implicit_transpose": ("ji", [(3, 4)]),
    "ellipsis": ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    "ellipsis_broadcast": ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 6)]),
    "ellipsis_no_batch": ("...ij,...jk->...ik", [(3, 4), (4, 5)]),
    "ellipsis_implicit": ("...ij,...jk", [(2, 3, 4), (2, 4, 5)]),
    "sum_out": ("ij->i", [(3, 4)]),
    "sum_all": ("ij->", [(3, 4)]),
    "outer": ("i,j->ij", [(3,), (4,)]),
    "dot": ("i,i->", [(5,), (5,)]),
    "transpose": ("ij->ji", [(3, 4)]),
    "bilinear": ("bi,ij,bj->b", [(2, 3), (3, 4), (2, 4)]),
    "three_chain": ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    "letter_only_in_one_input": ("ij,k->ik", [(3, 4), (5,)]),
    "spaces": ("b i j , b j k -> b i k", [(2, 3, 4), (2, 4, 5)]),
    # a letter repeated within one operand: its diagonal
    "diagonal": ("ii->i", [(4, 4)]),
    "trace": ("ii->", [(4, 4)]),
    "trace_implicit": ("ii", [(3, 3)]),
    "batched_trace": ("...ii->...", [(2, 3, 4, 4)]),
    "batched_diagonal": ("bii->bi", [(2, 3, 3)]),
    "diagonal_across_a_middle_dim": ("iji->j", [(3, 5, 3)]),
    "triple_diagonal": ("iii->i", [(3, 3, 3)]),
    "diagonal_then_product": ("iij,jk->ik", [(3, 3, 4), (4, 2)]),
    "diagonals_in_both": ("ii,jj->ij", [(3, 3), (2, 2)]),
    "diagonal_kept_twice_by_another_operand": ("ii,i->i", [(4, 4), (4,)]),
}


@pytest.mark.parametrize("name", EINSUMS)
def test_einsum(name):
    equation, shapes_ = EINSUMS[name]
    inputs = [random_array(s, 10 + i) for i, s in enumerate(shapes_)]
    check_against_torch(lambda *ts: mg.einsum(equation, *ts), lambda *ts: torch.einsum(equation, *ts), inputs)


def test_einsum_repeated_letter_needs_equal_sizes():
    with pytest.raises(ValueError, match=r"einsum: subscript 'i' repeats in 'ii' over dims of different sizes"):
        mg.einsum("ii->i", mg.zeros(3, 4))


def test_einsum_operands_as_list_and_partial_grad():
    inputs = [random_array((2, 3), 20), random_array((3, 4), 21)]
    check_against_torch(lambda a, b: mg.einsum("ij,jk->ik", [a, b]), lambda a, b: torch.einsum("ij,jk->ik", [a, b]),
                        inputs, no_grad=(1,))
