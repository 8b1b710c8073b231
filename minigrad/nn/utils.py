"""Helpers around modules: gradient clipping and calling a module with other parameters.

clip_grad_norm_ rescales all gradients together so their global norm is at most max_norm:
    total = || (||g_1||, ..., ||g_n||) ||_p,    g_i <- g_i * min(1, max_norm / (total + 1e-6))
"""
from contextlib import contextmanager

from minigrad import backend
from minigrad.tensor import Tensor


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of `parameters` in place so their total norm is at most max_norm.
    Returns the total norm before clipping (a 0-d tensor), as torch.nn.utils.clip_grad_norm_."""
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad.data for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return Tensor(backend.np.zeros((), dtype=backend.float32))
    xp = backend.array_module(grads[0])
    if norm_type == float("inf"):
        norms = [xp.abs(g).max() for g in grads]
        total = xp.max(xp.stack(norms))
    else:
        norms = [(xp.abs(g) ** norm_type).sum() ** (1.0 / norm_type) for g in grads]
        total = (xp.stack(norms) ** norm_type).sum() ** (1.0 / norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {float(total)}; "
                           f"set error_if_nonfinite=False to clip anyway")
    scale = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for p in parameters:
        if p.grad is not None:
            p.grad.data = p.grad.data * scale.astype(p.grad.dtype)
    return Tensor(xp.asarray(total))


@contextmanager
def _swapped(module, values):
    """Temporarily replace named parameters/buffers by the given tensors (every tied slot too)."""
    slots = {}  # id(original tensor) -> [(owner module, store, attribute)]
    for owner in module.modules():
        for store in (owner._parameters, owner._buffers):
            for attr, t in store.items():
                if t is not None:
                    slots.setdefault(id(t), []).append((store, attr))
    saved = []
    for name, value in values.items():
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        store = owner._parameters if attr in owner._parameters else owner._buffers if attr in owner._buffers else None
        if store is None:
            raise KeyError(f"functional_call: {type(module).__name__} has no parameter or buffer named {name!r}")
        for slot_store, slot_attr in slots.get(id(store[attr]), [(store, attr)]):
            saved.append((slot_store, slot_attr, slot_store[slot_attr]))
            slot_store[slot_attr] = value
    try:
        yield
    finally:
        for store, attr, original in reversed(saved):
            store[attr] = original


def functional_call(module, parameters_and_buffers, args=(), kwargs=None):
    """module(*args, **kwargs) with some parameters/buffers replaced, by dotted name, for this one call
    (torch.func.functional_call). Tied weights follow: replacing one name replaces every slot sharing it.
    Gradients then flow to the given tensors instead of the module's own parameters."""
    args = args if isinstance(args, tuple) else (args,)
    with _swapped(module, parameters_and_buffers):
        return module(*args, **(kwargs or {}))
