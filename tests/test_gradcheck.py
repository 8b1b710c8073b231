"""gradcheck agrees with correct backward formulas and catches a wrong one."""
import pytest

import minigrad as mg
from minigrad.gradcheck import gradcheck
from minigrad.tensor import record


def test_gradcheck_accepts_correct_gradients():
    gen = mg.Generator(1)
    x = mg.randn(3, 4, dtype=mg.float64, generator=gen, requires_grad=True)
    w = mg.randn(4, 5, dtype=mg.float64, generator=gen, requires_grad=True)
    assert gradcheck(lambda x, w: (x @ w).tanh().log_softmax(-1), [x, w])


def test_gradcheck_catches_a_wrong_backward():
    def wrong_square(x):
        return record(x.data ** 2, (x,), lambda g: (g * x.data,), "wrong_square")  # should be 2 x g

    x = mg.randn(5, dtype=mg.float64, requires_grad=True)
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(wrong_square, [x])


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda x: x * 2, [mg.randn(3, requires_grad=True)])
