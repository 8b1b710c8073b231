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
