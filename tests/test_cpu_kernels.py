"""The fused float32 CPU kernels (kernels/): NaN and infinities keep their meaning (nothing fails silently).
Their values and gradients are checked against torch through the minigrad ops that use them."""
import pytest

from kernels.activations import exp_neg, gelu_backward, gelu_forward
from kernels.cross_entropy import cross_entropy_backward, cross_entropy_forward
from kernels.layernorm import layer_norm_backward, layer_norm_forward
from kernels.softmax import softmax_backward, softmax_forward
from minigrad.backend import np

ROW = np.array([[1.0, np.nan, -2.0, 0.5]], dtype=np.float32)


def test_exp_neg_accuracy_and_limits():
    u = np.linspace(0, 39.9, 4001)
    got = np.array([exp_neg(v) for v in u])
    np.testing.assert_allclose(got, np.exp(-u), rtol=1e-3, atol=1e-30)  # where e^-u < 1e-13 anyway
    np.testing.assert_allclose(got[u <= 10], np.exp(-u[u <= 10]), rtol=2e-10)
    assert exp_neg(40.0) == 0.0 and exp_neg(np.inf) == 0.0
    assert np.isnan(exp_neg(np.nan))


def test_nan_propagates_through_every_kernel():
    out, cdf = gelu_forward(ROW)
    assert np.isnan(out[0, 1]) and np.isnan(gelu_backward(ROW, cdf, np.ones_like(ROW))[0, 1])
    assert np.isnan(softmax_forward(ROW)).all()
    assert np.isnan(softmax_backward(softmax_forward(ROW), np.ones_like(ROW))).all()
    loss, lse = cross_entropy_forward(ROW, np.array([0]), np.array([True]))
    assert np.isnan(loss).all()
    assert np.isnan(cross_entropy_backward(ROW, np.array([0]), np.array([True]), lse, np.ones(1, np.float32))).all()
    w, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    y, mean, rstd = layer_norm_forward(ROW, w, b, 1e-5)
    assert np.isnan(y).all() and np.isnan(layer_norm_backward(ROW, w, mean, rstd, np.ones_like(ROW))[0]).all()


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_minus_infinity_gives_exact_zeros(causal):
    x = np.array([[0.3, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf], [2.0, 1.0, -np.inf]], dtype=np.float32)
    y = softmax_forward(x, causal=causal)
    assert y[0, 1] == 0 and (y[1] == 0).all() and y[2, 2] == 0
    if causal:  # row i sees columns j <= i only
        assert y[0, 0] == 1 and y[0, 2] == 0
    np.testing.assert_allclose(y.sum(axis=1), [1, 0, 1], rtol=1e-6)
