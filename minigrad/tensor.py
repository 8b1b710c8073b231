"""Tensor and reverse-mode autodiff.

A Tensor holds an array (`data`, NumPy or CuPy) and, when it was computed by an op from tensors that
require grad, a `Node`: the op's name, its input tensors and a hand-written `backward(grad)` that
returns one gradient per input. `Tensor.backward()` walks the graph once in reverse topological
order (the chain rule), summing each tensor's incoming gradients before passing them on.

Two rules keep gradients honest:
- un-broadcasting is done here, once: if an op broadcast an input of shape (3, 1) to (2, 3, 4),
  the gradient (2, 3, 4) is summed back to (3, 1) before it reaches that input;
- a gradient must come back with its input's shape and dtype, or an AssertionError names the op.

Only leaves (tensors created by the user with requires_grad=True) and tensors that called
`retain_grad()` keep `.grad`; intermediate gradients live only during the backward pass.
"""
import contextlib
import functools

from minigrad import backend
from minigrad.backend import np


# ---------------------------------------------------------------------------------------------
# Grad mode
# ---------------------------------------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class set_grad_enabled(contextlib.ContextDecorator):
    """Context manager and decorator that turns graph recording on or off."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)

    def __enter__(self):
        global _grad_enabled
        self.prev, _grad_enabled = _grad_enabled, self.mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.prev


class no_grad(set_grad_enabled):
    """`with no_grad():` ops record no graph (evaluation, optimizer updates)."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    def __init__(self):
        super().__init__(True)


# ---------------------------------------------------------------------------------------------
# Graph nodes
# ---------------------------------------------------------------------------------------------

class Node:
    """How a tensor was made: op name, input tensors, and backward(grad) -> one grad per input."""

    __slots__ = ("op", "parents", "backward")

    def __init__(self, op, parents, backward):
        self.op, self.parents, self.backward = op, parents, backward


def record(data, parents, backward, op: str):
    """Wrap an op's output array in a Tensor and, if any input needs a gradient, attach a Node.

    `backward(grad)` receives the gradient of the output (an array of the output's shape) and
    returns a tuple with one array (or None) per parent; broadcasting is undone by the engine.
    """
    out = Tensor(data)
    if _grad_enabled and any(p.requires_grad for p in parents):
        out.requires_grad = True
        out._node = Node(op, parents, backward)
    return out


def unbroadcast(grad, shape, op: str):
    """Sum `grad` over the axes that broadcasting added or stretched so it has `shape`."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise AssertionError(f"{op}: backward returned a gradient of shape {grad.shape} for an input of shape {shape}")
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    grad = grad.sum(axis=axes, keepdims=True) if axes else grad
    if extra:
        grad = grad.reshape(grad.shape[extra:])
    if grad.shape != shape:
        raise AssertionError(f"{op}: backward returned a gradient of shape {grad.shape} that does not "
                             f"broadcast back to its input's shape {shape}")
    return grad


def _topological_order(root):
    """Tensors that need a gradient, root first, each before the tensors it was made from."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, children_done = stack.pop()
        if children_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            stack.extend((p, False) for p in t._node.parents if p.requires_grad and id(p) not in visited)
    order.reverse()
    return order


# ---------------------------------------------------------------------------------------------
# Tensor
# ---------------------------------------------------------------------------------------------

_DEFAULT_FLOAT = backend.float32


def _as_array(data, dtype=None, device=None):
    """Turn user data into a backend array. Python floats become float32, as in PyTorch."""
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_array(data) or isinstance(data, np.generic):  # np.generic: a reduction's 0-d result
        array = data if dtype is None else data.astype(dtype, copy=False)
        array = array if backend.is_array(array) else np.asarray(array)
    else:
        array = np.asarray(data, dtype=dtype)
        if dtype is None and array.dtype == backend.float64:
            array = array.astype(_DEFAULT_FLOAT)
    if device is not None:
        array = backend.to_device(array, device)
    return array


class Tensor:
    """An n-dimensional array that remembers how it was computed, so it can be differentiated.

    This class holds the data, its properties and conversions, and backward(). The ops live in
    minigrad/ops/ and are attached to Tensor when those modules are imported (`import minigrad` does):
    - methods (x.exp(), x.sum(dim), x.reshape(...), x.gather(...)): each op marked with the decorator
      tensor_method (defined below) is set on Tensor under its own name;
    - operators and aliases, by plain assignments next to their op (`Tensor.__add__ = add`):
      ops/elementwise.py sets + - * / // ** (and their reflected forms), unary -, the comparisons
      == != < <= > >=, the bitwise ~ & | ^ << >> (and reflected forms), and `clip`; ops/linalg.py sets @ (`__matmul__`, `__rmatmul__`);
      ops/index.py sets x[...] (`__getitem__`); ops/shape.py sets `view` and the properties `T`, `mT`;
      ops/math.py sets % (`__mod__`, `__rmod__`).
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "_retains_grad", "__weakref__")
    __array_ufunc__ = None  # numpy_array * tensor calls Tensor.__rmul__ instead of looping over elements

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        self.data = _as_array(data, dtype, device)
        self.grad = None
        self._node = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ---- properties -------------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self):
        return self.data.ndim

    def numel(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(backend.to_numpy(self.data), precision=4, separator=", ", prefix="tensor(")
        extras = "" if self.dtype == _DEFAULT_FLOAT else f", dtype={self.dtype}"
        extras += ", device='cuda'" if self.device == "cuda" else ""
        if self._node is not None:
            extras += f", grad_fn=<{self._node.op}>"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}{extras})"

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"bool(): a tensor of shape {self.shape} has no single truth value")
        return bool(self.data)

    def __hash__(self):
        return id(self)

    # ---- conversion -------------------------------------------------------------------------
    def item(self):
        if self.data.size != 1:
            raise RuntimeError(f"item(): only a one-element tensor can be converted to a Python scalar, got shape {self.shape}")
        return self.data.reshape(()).item()

    def numpy(self):
        if self.requires_grad:
            raise RuntimeError("numpy(): can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()")
        return backend.to_numpy(self.data)

    def tolist(self):
        return backend.to_numpy(self.data).tolist()

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, flag=True):
        if flag and not backend.is_floating(self.dtype):
            raise RuntimeError(f"requires_grad: only floating-point tensors can require gradients, got dtype {self.dtype}")
        if not self.is_leaf and not flag:
            raise RuntimeError("requires_grad_(False): can only change the flag of a leaf tensor; use detach()")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self):
        """Keep .grad on this non-leaf tensor after backward (leaves always keep it)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad(): the tensor does not require grad")
        self._retains_grad = True

    def to(self, device_or_dtype):
        """Move to 'cpu' / 'cuda', or cast to a dtype (differentiable)."""
        if isinstance(device_or_dtype, str):
            if device_or_dtype == self.device:
                return self
            data = backend.to_device(self.data, device_or_dtype)
            return record(data, (self,), lambda g: (backend.to_device(g, self.device),), "to")
        return self.type(device_or_dtype)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def type(self, dtype):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        source = self.dtype
        if not backend.is_floating(dtype):
            return Tensor(self.data.astype(dtype))
        return record(self.data.astype(dtype), (self,), lambda g: (g.astype(source),), "type")

    def float(self):
        return self.type(backend.float32)

    def double(self):
        return self.type(backend.float64)

    def half(self):
        return self.type(backend.float16)

    def long(self):
        return self.type(backend.int64)

    def int(self):
        return self.type(backend.int32)

    def bool(self):
        return self.type(backend.bool_)

    # ---- autograd ---------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) * gradient into every leaf's .grad."""
        if not self.requires_grad:
            raise RuntimeError("backward(): the tensor does not require grad and has no grad_fn")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward(): grad can be implicitly created only for scalar outputs; this tensor "
                                   f"has shape {self.shape}, so pass backward(gradient) of that shape")
            gradient = backend.array_module(self.data).ones_like(self.data)
        else:
            gradient = _as_array(gradient, dtype=self.dtype)
            if gradient.shape != self.shape:
                raise RuntimeError(f"backward(): gradient has shape {gradient.shape}, expected the tensor's shape {self.shape}")

        grads = {id(self): gradient}
        for t in _topological_order(self):
            g = grads.pop(id(t), None)
            if g is None:
                continue
            if t._node is None or t._retains_grad:
                # a copy: g may be a read-only broadcast view, or the same array another input also received
                t.grad = Tensor(g.copy() if t.grad is None else t.grad.data + g)
            node = t._node
            if node is None:
                continue
            if node.backward is None:
                raise RuntimeError(f"backward(): trying to backward through the graph a second time (at op "
                                   f"'{node.op}'); its saved values were freed. Pass retain_graph=True to the "
                                   f"first backward() if you need to backward twice")
            parent_grads = node.backward(g)
            if not retain_graph:
                node.backward = None
            for p, pg in zip(node.parents, parent_grads):
                if pg is None or not p.requires_grad:
                    continue
                pg = unbroadcast(pg, p.shape, node.op)
                if pg.dtype != p.dtype:
                    raise AssertionError(f"{node.op}: backward returned a {pg.dtype} gradient for a {p.dtype} input")
                key = id(p)
                grads[key] = pg if key not in grads else grads[key] + pg


def tensor_method(fn=None, *, name=None):
    """Decorator: also make an op available as a Tensor method (x.exp() as well as minigrad.exp(x))."""
    if fn is None:
        return functools.partial(tensor_method, name=name)
    setattr(Tensor, name or fn.__name__, fn)
    return fn


class Parameter(Tensor):
    """A Tensor that a Module registers as a learnable parameter (requires_grad by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
