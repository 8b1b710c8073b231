"""The one helper that checks a minigrad computation against PyTorch, forward and backward.

    check_against_torch(lambda x, w: x @ w, lambda x, w: x @ w, [x_array, w_array])

For each dtype (float64 tight, float32 realistic): the same input arrays go to both libraries, the
outputs are compared, then both backpropagate the same random upstream gradient (not `.sum()`, which
would hide errors that cancel) and the gradient of every floating-point input is compared, including
its shape and dtype. Integer and bool inputs (indices, masks) are passed through unchanged.

Hypothesis strategies for shapes with size-1 and 0-d dimensions are at the bottom.
"""
import torch
from hypothesis.extra import numpy as hnp

import minigrad
from minigrad import backend
from minigrad.backend import np

TOLERANCES = {"float64": dict(rtol=1e-6, atol=1e-9), "float32": dict(rtol=2e-4, atol=2e-5)}


def random_array(shape, seed=0, low=None, high=None, dtype="float64"):
    """A float64 normal (or uniform in [low, high)) array: the master copy cast per dtype under test."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape) if low is None else rng.uniform(low, high, size=shape)
    return np.asarray(data, dtype=dtype)


def _as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def assert_close(name, got, want, rtol, atol):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape} != PyTorch's {want.shape}")
    if not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
        err = np.abs(got - want)
        where = np.unravel_index(np.argmax(err), err.shape) if err.ndim else ()
        raise AssertionError(f"{name}: max |diff| {err.max():.3g} at {where} (minigrad {got[where]!r}, "
                             f"torch {want[where]!r}; rtol={rtol}, atol={atol})")


def check_against_torch(mg_fn, torch_fn, inputs, *, dtypes=("float64", "float32"), no_grad=(), seed=0,
                        tolerances=None):
    """Run mg_fn and torch_fn on the same inputs; compare outputs and every input's gradient.

    inputs: arrays (floating ones are cast to each dtype and require grad unless their index is in
    `no_grad`) or other values passed unchanged to both functions. Outputs may be a tensor or a tuple
    of tensors; non-floating outputs (indices) are compared exactly.
    Returns the float64 minigrad outputs for further checks.
    """
    tolerances = {**TOLERANCES, **(tolerances or {})}
    result = None
    for dtype in dtypes:
        tol = tolerances[dtype]
        mg_in, t_in = [], []
        for i, x in enumerate(inputs):
            x = np.asarray(x) if isinstance(x, np.generic) else x  # a 0-d result such as 2 * array(())
            if backend.is_array(x) and backend.is_floating(x.dtype):
                arr = np.ascontiguousarray(x.astype(dtype))
                grad = i not in no_grad
                mg_in.append(minigrad.tensor(arr.copy(), requires_grad=grad))
                t_in.append(torch.tensor(arr.copy(), requires_grad=grad))
            elif backend.is_array(x):
                mg_in.append(minigrad.tensor(x.copy()))
                t_in.append(torch.from_numpy(x.copy()))
            else:
                mg_in.append(x)
                t_in.append(x)
        mg_out, t_out = _as_list(mg_fn(*mg_in)), _as_list(torch_fn(*t_in))
        if len(mg_out) != len(t_out):
            raise AssertionError(f"minigrad returned {len(mg_out)} outputs, torch {len(t_out)}")
        rng = np.random.default_rng(seed + 1)
        mg_roots, t_roots, upstream = [], [], []
        for k, (m, t) in enumerate(zip(mg_out, t_out)):
            if m.requires_grad != t.requires_grad:
                raise AssertionError(f"[{dtype}] output {k}: requires_grad is {m.requires_grad}, torch's is "
                                     f"{t.requires_grad}")
            if not t.dtype.is_floating_point:
                if m.dtype != t.numpy().dtype:
                    raise AssertionError(f"[{dtype}] output {k} has dtype {m.dtype}, torch's is {t.dtype}")
                assert_close(f"[{dtype}] output {k}", m.data, t.numpy(), 0, 0)
                continue
            if str(m.dtype) != dtype:
                raise AssertionError(f"[{dtype}] output {k} has dtype {m.dtype}, expected {dtype}")
            assert_close(f"[{dtype}] output {k}", m.data, t.detach().numpy(), **tol)
            if t.requires_grad:
                g = rng.standard_normal(t.shape).astype(dtype)
                mg_roots.append(m)
                t_roots.append(t)
                upstream.append(g)
        if t_roots:
            torch.autograd.backward(t_roots, [torch.from_numpy(g) for g in upstream])
            if len(mg_roots) == 1:
                mg_roots[0].backward(upstream[0])
            else:
                total = None
                for m, g in zip(mg_roots, upstream):
                    term = (m * minigrad.tensor(g)).sum()
                    total = term if total is None else total + term
                total.backward()
        for i, (m, t) in enumerate(zip(mg_in, t_in)):
            if not isinstance(t, torch.Tensor) or not t.requires_grad:
                continue
            if t.grad is None:
                if m.grad is not None and np.any(m.grad.data != 0):
                    raise AssertionError(f"[{dtype}] input {i}: torch has no gradient but minigrad's is non-zero")
                continue
            if m.grad is None:
                raise AssertionError(f"[{dtype}] input {i}: minigrad computed no gradient (torch did)")
            if m.grad.dtype != m.dtype or m.grad.shape != m.shape:
                raise AssertionError(f"[{dtype}] input {i}: gradient is {m.grad.dtype}{m.grad.shape}, "
                                     f"input is {m.dtype}{m.shape}")
            assert_close(f"[{dtype}] grad of input {i}", m.grad.data, t.grad.numpy(), **tol)
        if dtype == "float64" or result is None:
            result = mg_out
    return result


# ---- Hypothesis strategies ------------------------------------------------------------------

def shapes(min_dims=0, max_dims=4, max_side=5):
    """Array shapes including 0-d and size-1 dimensions."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=5):
    """Tuples of shapes that broadcast together, e.g. ((3, 1, 4), (5, 4)); `.input_shapes` holds them."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims,
                                             min_side=1, max_side=max_side)


def check_module_against_torch(mg_module, torch_module, x, *, forward_args=(), mg_kwargs=None, outputs=None,
                               tolerances=None):
    """Load torch_module's state_dict into mg_module, run both on x (plus forward_args), and compare the outputs and
    the gradients of x and of every parameter (passed as inputs through functional_call) with check_against_torch.

    mg_kwargs: keyword arguments for the minigrad forward only (e.g. a choice of algorithm the twin does not have).
    outputs(module, result): picks the tensors to compare from a forward's result (default: the result itself).
    """
    torch_module.double()
    mg_module.load_state_dict(torch_module.state_dict())
    names = [n for n, _ in torch_module.named_parameters()]
    if [n for n, _ in mg_module.named_parameters()] != names:
        raise AssertionError(f"parameter names differ: minigrad {[n for n, _ in mg_module.named_parameters()]}, "
                             f"torch {names}")
    params = [p.detach().numpy().copy() for p in torch_module.parameters()]
    pick = outputs or (lambda module, result: result)

    def call(module, functional_call, args, kwargs):
        module.to(args[0].dtype)
        return pick(module, functional_call(module, dict(zip(names, args[1:])), (args[0], *forward_args), kwargs))
    return check_against_torch(lambda *a: call(mg_module, minigrad.nn.utils.functional_call, a, mg_kwargs or {}),
                               lambda *a: call(torch_module, torch.func.functional_call, a, {}), [x, *params],
                               tolerances=tolerances)
