"""Tensor factories with PyTorch's names: tensor, zeros, ones, arange, randn, ..."""
from minigrad import backend
from minigrad.random import default_generator
from minigrad.tensor import Tensor

_FLOAT = backend.float32


def _shape(size):
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor from Python data or an array; Python floats become float32."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def _filled(fill, size, dtype, device, requires_grad):
    xp = backend.module_for_device(device or "cpu")
    return Tensor(xp.full(_shape(size), fill, dtype=dtype or _FLOAT), requires_grad=requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _filled(0, size, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _filled(1, size, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """dtype None takes the fill value's kind, as torch: bool, int64 for an int, the default float32 for a float."""
    if dtype is None:
        dtype = backend.bool_ if isinstance(fill_value, bool) else backend.int64 if isinstance(fill_value, int) \
            else _FLOAT
    return _filled(fill_value, size, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    """A tensor whose values are unspecified (uninitialized memory, as torch.empty): fill it before reading."""
    xp = backend.module_for_device(device or "cpu")
    return Tensor(xp.empty(_shape(size), dtype=dtype or _FLOAT), requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    """A tensor of t's shape, device and (unless dtype is given) dtype, filled with fill_value."""
    return _filled(fill_value, t.shape, dtype or t.dtype, t.device, requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return _filled(0, t.shape, dtype or t.dtype, t.device, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return _filled(1, t.shape, dtype or t.dtype, t.device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None):
    if end is None:
        start, end = 0, start
    xp = backend.module_for_device(device or "cpu")
    if dtype is None:
        integral = all(isinstance(v, int) for v in (start, end, step))
        dtype = backend.int64 if integral else _FLOAT
    return Tensor(xp.arange(start, end, step, dtype=dtype))


def linspace(start, end, steps, dtype=None, device=None):
    """steps evenly spaced values from start to end. With an integer dtype, as torch: start and end are first
    truncated to integers, then the float values toward zero (NumPy's integer linspace floors); bool is refused,
    as torch refuses it."""
    xp = backend.module_for_device(device or "cpu")
    dtype = backend.np.dtype(dtype or _FLOAT)
    if dtype == backend.bool_:
        raise TypeError("linspace: dtype bool is not supported (as in torch); use a float or integer dtype")
    if backend.is_floating(dtype):
        return Tensor(xp.linspace(start, end, steps, dtype=dtype))
    return Tensor(xp.linspace(int(start), int(end), steps).astype(dtype))


def eye(n, m=None, dtype=None, device=None):
    xp = backend.module_for_device(device or "cpu")
    return Tensor(xp.eye(n, m, dtype=dtype or _FLOAT))


def randn(*size, dtype=None, generator=None, requires_grad=False):
    """Standard normal draws from `generator` (default: the one reseeded by manual_seed)."""
    g = generator or default_generator
    return Tensor(g.normal(_shape(size), dtype or _FLOAT), requires_grad=requires_grad)


def rand(*size, dtype=None, generator=None, requires_grad=False):
    g = generator or default_generator
    return Tensor(g.uniform(_shape(size), dtype or _FLOAT), requires_grad=requires_grad)


def randint(low, high, size, dtype=None, generator=None):
    g = generator or default_generator
    return Tensor(g.integers(low, high, tuple(size), dtype or backend.int64))


def randperm(n, generator=None):
    g = generator or default_generator
    return Tensor(g.permutation(n).astype(backend.int64))


def randn_like(t, generator=None):
    return randn(t.shape, dtype=t.dtype, generator=generator)


def rand_like(t, generator=None):
    return rand(t.shape, dtype=t.dtype, generator=generator)
