"""torch's dtype rules where a PyTorch user relies on them: float functions of integer tensors, the dtype `full`
infers from its fill value, and linspace with an integer dtype. Each compared with torch, value and dtype."""
import pytest
import torch

import minigrad as mg
from minigrad.backend import np


def assert_same(ours, theirs):
    assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch."), (ours.dtype, theirs.dtype)
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6, atol=0)


FLOAT_FUNCTIONS = ["exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid"]


@pytest.mark.parametrize("name", FLOAT_FUNCTIONS)
@pytest.mark.parametrize("values", [[1, 2, 7], 2, [True, False]], ids=["int64", "0-d int", "bool"])
def test_float_functions_of_integer_tensors_are_float32(name, values):
    """torch computes exp, log, ... of an integer or bool tensor in the default float dtype."""
    with np.errstate(divide="ignore"):  # log(False) = -inf, rsqrt(False) = inf, in both libraries
        assert_same(getattr(mg.tensor(values), name)(), getattr(torch.tensor(values), name)())
        assert_same(getattr(mg, name)(mg.tensor(values)), getattr(torch, name)(torch.tensor(values)))


@pytest.mark.parametrize("fill", [4, True, 4.5, -3])
def test_full_infers_its_dtype_from_the_fill_value(fill):
    assert_same(mg.full((3, 4), fill), torch.full((3, 4), fill))


def test_full_with_an_explicit_dtype():
    assert_same(mg.full((2,), 4, dtype=mg.float64), torch.full((2,), 4, dtype=torch.float64))


@pytest.mark.parametrize("start, end, steps", [(5, -5, 20), (0, 10, 7), (-2.5, 3.5, 9)])
@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float64"])
def test_linspace_truncates_like_torch(start, end, steps, dtype):
    assert_same(mg.linspace(start, end, steps, dtype=getattr(mg, dtype)),
                torch.linspace(start, end, steps, dtype=getattr(torch, dtype)))


def test_linspace_refuses_bool_like_torch():
    with pytest.raises(RuntimeError):
        torch.linspace(0, 1, 5, dtype=torch.bool)
    with pytest.raises(TypeError, match="linspace: dtype bool"):
        mg.linspace(0, 1, 5, dtype=mg.bool_)


BITWISE = {"&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b,
           "<<": lambda a, b: a << b, ">>": lambda a, b: a >> b}


# Shifts of bools, and shifts by negative or wider-than-the-type counts, are undefined in torch: not compared.
BITWISE_CASES = [(op, dtype, scalar) for op in BITWISE for dtype in ["int8", "uint8", "int32", "int64", "bool"]
                 for scalar in [0x1337, 0xFFFFFFFF, -3, 5, True]
                 if op not in ("<<", ">>") or dtype != "bool" and 0 <= scalar < 8]


@pytest.mark.parametrize("op, dtype, scalar", BITWISE_CASES)
def test_bitwise_ops_with_python_scalars_on_both_sides(op, dtype, scalar):
    """Python ints wrap to the tensor's width (t | 0xFFFFFFFF on int32 is t | -1); reflected forms work."""
    values = np.array([0, 1, 5, 100, 127], dtype=np.int64).astype(dtype)
    fn = BITWISE[op]
    for ours, theirs in ((fn(mg.tensor(values), scalar), fn(torch.from_numpy(values), scalar)),
                         (fn(scalar, mg.tensor(values[:3] % 4)), fn(scalar, torch.from_numpy(values[:3] % 4)))):
        assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_bitwise_ops_between_tensors_and_their_errors():
    a, b = np.array([3, 5, 12], dtype=np.int32), np.array([6, 1, 7], dtype=np.int64)
    for op, fn in BITWISE.items():
        np.testing.assert_array_equal(fn(mg.tensor(a), mg.tensor(b)).data, fn(torch.from_numpy(a),
                                                                             torch.from_numpy(b)).numpy())
    with pytest.raises(TypeError, match="bitwise_and: needs integer or bool tensors, got float32"):
        mg.tensor([1.5]) & 1
