"""minigrad/ops/activations.py (through minigrad.nn.functional) and their modules against PyTorch."""
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from hypothesis import given, settings

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F
from minigrad.backend import np
from book.testing import check_against_torch, check_module_against_torch, random_array, shapes

FAST = settings(max_examples=10, deadline=None)

FUNCTIONS = {  # case: (function name, keyword arguments for both libraries)
    "elu": ("elu", {}), "elu_alpha": ("elu", dict(alpha=0.4)), "elu_inplace_flag": ("elu", dict(inplace=False)),
    "leaky_relu": ("leaky_relu", {}), "leaky_relu_slope": ("leaky_relu", dict(negative_slope=0.2)),
    "leaky_relu_negative_slope": ("leaky_relu", dict(negative_slope=-1.5)),
    "celu": ("celu", {}), "celu_alpha": ("celu", dict(alpha=2.5)), "celu_small_alpha": ("celu", dict(alpha=0.3)),
    "selu": ("selu", {}), "relu6": ("relu6", {}), "hardswish": ("hardswish", {}), "hardsigmoid": ("hardsigmoid", {}),
    "hardtanh": ("hardtanh", {}), "hardtanh_range": ("hardtanh", dict(min_val=-0.5, max_val=2.0)),
    "hardtanh_point": ("hardtanh", dict(min_val=0.3, max_val=0.3)),
    "softsign": ("softsign", {}), "logsigmoid": ("logsigmoid", {}), "mish": ("mish", {}),
}


def function_of(case):
    name, kwargs = FUNCTIONS[case]
    return (lambda x: getattr(F, name)(x, **kwargs)), (lambda x: getattr(TF, name)(x, **kwargs))


@pytest.mark.parametrize("name", FUNCTIONS)
@FAST
@given(shape=shapes())
def test_functional(name, shape):
    mg_fn, torch_fn = function_of(name)
    check_against_torch(mg_fn, torch_fn, [4 * random_array(shape, 1)])


KINKS = np.array([-1e3, -50.0, -6.0, -3.0, -1.0, -1e-7, -0.0, 0.0, 1e-7, 0.3, 1.0, 2.0, 3.0, 6.0, 7.0, 50.0,
                  1e3])


@pytest.mark.parametrize("name", FUNCTIONS)
def test_kinks_and_large_magnitudes(name):
    """The gradient takes torch's side at every kink (0, +-1, +-3, 6, the hardtanh bounds) and nothing overflows."""
    mg_fn, torch_fn = function_of(name)
    check_against_torch(mg_fn, torch_fn, [KINKS.copy()])


@pytest.mark.parametrize("dim", [0, -1, 1])
@FAST
@given(shape=shapes(min_dims=2))
def test_softmin(dim, shape):
    check_against_torch(lambda x: F.softmin(x, dim), lambda x: TF.softmin(x, dim), [3 * random_array(shape, 2)])


def test_softmin_dtype_and_missing_dim():
    """dtype= casts the input first, as torch: a float32 input gives a float64 result and a float32 gradient."""
    x = random_array((3, 4), 3).astype("float32")
    ours, theirs = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, want = F.softmin(ours, dim=1, dtype=mg.float64), TF.softmin(theirs, 1, dtype=torch.float64)
    g = random_array((3, 4), 4)
    out.backward(mg.tensor(g))
    want.backward(torch.from_numpy(g))
    assert out.dtype == mg.float64 and ours.grad.dtype == mg.float32
    np.testing.assert_allclose(out.data, want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.grad.data, theirs.grad.numpy(), rtol=1e-6)
    with pytest.raises(TypeError, match="softmin: pass dim"):
        F.softmin(mg.ones(2, 3))


def test_bad_arguments_raise_like_torch():
    with pytest.raises(ValueError, match="hardtanh: min_val"):
        F.hardtanh(mg.ones(3), min_val=1.0, max_val=0.0)
    with pytest.raises(ValueError):
        TF.hardtanh(torch.ones(3), min_val=1.0, max_val=0.0)
    with pytest.raises(ValueError, match="Hardtanh: min_val"):
        nn.Hardtanh(2.0, 1.0)
    with pytest.raises(ZeroDivisionError, match="celu: alpha"):
        F.celu(mg.ones(3), alpha=0.0)


def test_float32_gradients_stay_float32():
    for name in FUNCTIONS:
        x = mg.tensor(random_array((2, 3), 4).astype("float32"), requires_grad=True)
        out = function_of(name)[0](x)
        out.backward(mg.ones_like(out))
        assert out.dtype == mg.float32 and x.grad.dtype == mg.float32, name


# ---- modules --------------------------------------------------------------------------------

MODULES = [  # (minigrad module, torch module) built with the same arguments
    ("ELU", (), {}), ("ELU", (0.5,), dict(inplace=True)), ("LeakyReLU", (), {}), ("LeakyReLU", (0.2, True), {}),
    ("CELU", (1.5,), {}), ("SELU", (), {}), ("SELU", (), dict(inplace=True)), ("ReLU6", (), {}),
    ("ReLU6", (True,), {}), ("Hardswish", (), {}), ("Hardswish", (), dict(inplace=True)), ("Hardsigmoid", (), {}),
    ("Hardtanh", (), {}), ("Hardtanh", (-2, 3), dict(inplace=True)), ("Hardtanh", (-0.5, 0.25), {}),
    ("Softsign", (), {}), ("LogSigmoid", (), {}), ("Mish", (), {}), ("Mish", (), dict(inplace=True)),
    ("Softmin", (1,), {}), ("Softmin", (), dict(dim=-1)), ("Softmax", (0,), {}),
]


@pytest.mark.parametrize("name, args, kwargs", MODULES, ids=str)
def test_module_forward_backward_and_repr(name, args, kwargs):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(tnn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert name in nn.__all__
    x = np.concatenate([4 * random_array((3, 5), 5), KINKS[:15].reshape(3, 5)])  # (6, 5)
    check_against_torch(lambda t: ours(t), lambda t: theirs(t.clone()), [x])  # clone: torch's inplace=True


def test_modules_in_a_sequential():
    ours = nn.Sequential(nn.Linear(4, 5), nn.Hardswish(), nn.Linear(5, 3), nn.Mish(), nn.Softmin(dim=-1))
    theirs = tnn.Sequential(tnn.Linear(4, 5), tnn.Hardswish(), tnn.Linear(5, 3), tnn.Mish(), tnn.Softmin(dim=-1))
    check_module_against_torch(ours, theirs, random_array((7, 4), 6))
