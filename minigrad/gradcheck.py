"""Gradient checking with central finite differences, in float64.

For a function f of tensors and an upstream gradient g, the analytic gradient of sum(g * f(x))
with respect to each input element is compared with

    (sum(g * f(x + h e_i)) - sum(g * f(x - h e_i))) / (2 h)

whose error is O(h^2) plus rounding of order eps / h; in float64 with h = 1e-6 both are ~1e-10,
while float32 (eps ~ 1e-7) would leave errors around 1e-2: that is why checks run in float64.
"""
from minigrad import backend
from minigrad.tensor import Tensor, no_grad


def numerical_gradients(fn, inputs, upstream, eps=1e-6):
    """Central-difference gradients of sum(upstream * fn(*inputs)) for every input requiring grad."""
    xp = backend.array_module(inputs[0].data)
    grads = []
    with no_grad():
        for x in inputs:
            if not x.requires_grad:
                grads.append(None)
                continue
            grad = xp.zeros_like(x.data)
            flat, flat_grad = x.data.reshape(-1), grad.reshape(-1)
            for i in range(flat.size):
                original = flat[i].item()
                flat[i] = original + eps
                plus = (fn(*inputs).data * upstream).sum()
                flat[i] = original - eps
                minus = (fn(*inputs).data * upstream).sum()
                flat[i] = original
                flat_grad[i] = (plus - minus) / (2 * eps)
            grads.append(grad)
    return grads


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Check fn's backward against finite differences; inputs must be float64 tensors.

    Returns True, or raises AssertionError naming the input and the worst element.
    """
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or x.dtype != backend.float64:
            raise TypeError(f"gradcheck: input {i} must be a float64 Tensor (finite differences in float32 are "
                            f"too noisy), got {getattr(x, 'dtype', type(x).__name__)}")
    xp = backend.array_module(inputs[0].data)
    out = fn(*inputs)
    upstream = xp.asarray(backend.np.random.default_rng(seed).standard_normal(out.shape))
    for x in inputs:
        x.grad = None
    out.backward(upstream)
    expected = numerical_gradients(fn, inputs, upstream, eps)
    for i, (x, numeric) in enumerate(zip(inputs, expected)):
        if numeric is None:
            continue
        analytic = x.grad.data if x.grad is not None else xp.zeros_like(x.data)
        if not xp.allclose(analytic, numeric, atol=atol, rtol=rtol):
            err = xp.abs(analytic - numeric)
            worst = backend.np.unravel_index(int(err.argmax()), err.shape)
            raise AssertionError(f"gradcheck: input {i}: analytic {analytic[worst]!r} vs numeric {numeric[worst]!r} "
                                 f"at {worst} (max |diff| {float(err.max()):.3g})")
    return True
