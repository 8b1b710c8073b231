"""The array backend: NumPy on the CPU, CuPy on a GPU.

This is the only module of minigrad that imports NumPy or CuPy. Every other module asks
`array_module(x)` for the module that owns an array, so the same op code runs on both:

    xp = array_module(a)        # numpy or cupy, whichever holds `a`
    out = xp.exp(a)

A GPU is "usable" only when CuPy imports, reports a device, and a one-element allocation
succeeds: `import cupy` alone succeeds on machines without a GPU.
"""
import functools

import numpy

np = numpy  # the CPU array module, re-exported for the rest of minigrad

float16, float32, float64 = numpy.float16, numpy.float32, numpy.float64
int32, int64, bool_ = numpy.int32, numpy.int64, numpy.bool_


@functools.lru_cache(maxsize=None)
def _probe_cupy():
    """(cupy module or None, why not): never raises."""
    try:
        import cupy
    except Exception as err:
        return None, f"CuPy is not installed ({type(err).__name__}); pip install -r requirements-gpu.txt"
    try:
        if not cupy.cuda.is_available():
            return None, "CuPy is installed but sees no CUDA device"
        cupy.zeros(1)
    except Exception as err:
        return None, f"CuPy could not allocate on the device: {type(err).__name__}: {err}"
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return cupy, name.decode() if isinstance(name, bytes) else str(name)


def _cupy_or_none():
    return _probe_cupy()[0]


def gpu_status() -> str:
    """'yes (device name)' or 'no (the reason)'."""
    cupy, detail = _probe_cupy()
    return f"{'yes' if cupy is not None else 'no'} ({detail})"


def gpu_available() -> bool:
    """True when CuPy imports, sees a device and can allocate on it."""
    return _cupy_or_none() is not None


def array_module(*arrays):
    """numpy or cupy: the module that owns the arrays (numpy for Python scalars)."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            return _cupy_or_none()
    return numpy


def device_of(array) -> str:
    return "cuda" if type(array).__module__.startswith("cupy") else "cpu"


def to_device(array, device: str):
    """Move an array to 'cpu' (NumPy) or 'cuda' (CuPy), copying only when it must."""
    if device == device_of(array):
        return array
    if device == "cpu":
        return array.get()
    if device == "cuda":
        cupy = _cupy_or_none()
        if cupy is None:
            raise RuntimeError("to('cuda'): no usable GPU (CuPy missing, no device, or allocation failed); "
                               "run `python -m book.env` to see why")
        return cupy.asarray(array)
    raise ValueError(f"to(): unknown device {device!r}; expected 'cpu' or 'cuda'")


def module_for_device(device: str):
    if device == "cpu":
        return numpy
    if device == "cuda":
        cupy = _cupy_or_none()
        if cupy is None:
            raise RuntimeError("device 'cuda' requested but no usable GPU; run `python -m book.env`")
        return cupy
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


def to_numpy(array):
    return array.get() if device_of(array) == "cuda" else numpy.asarray(array)


def is_array(x) -> bool:
    return isinstance(x, numpy.ndarray) or type(x).__module__.startswith("cupy")


def is_floating(dtype) -> bool:
    return numpy.issubdtype(dtype, numpy.floating)


def scatter_add(xp, target, index, values):
    """target[index] += values, adding repeated indices (np.add.at / cupyx.scatter_add)."""
    scatter_combine(xp, target, index, values, "add")


def scatter_combine(xp, target, index, values, how):
    """target[index] = how(target[index], values), combining repeated indices: how is 'add', 'multiply',
    'maximum' or 'minimum' (NumPy's ufunc.at; on the GPU cupyx's scatter_add / scatter_max / scatter_min)."""
    if xp is numpy:
        getattr(numpy, how).at(target, index, values)
        return
    import cupyx
    scatters = {"add": cupyx.scatter_add, "maximum": cupyx.scatter_max, "minimum": cupyx.scatter_min}
    if how not in scatters:
        raise NotImplementedError(f"scatter {how!r} has no CuPy kernel; move the tensors to the CPU")
    scatters[how](target, index, values)


def erf(x):
    """The error function, from SciPy or CuPy's cupyx.scipy (NumPy has none)."""
    if array_module(x) is numpy:
        import scipy.special
        return scipy.special.erf(x)
    import cupyx.scipy.special
    return cupyx.scipy.special.erf(x)


def uses_cpu_kernels(*arrays) -> bool:
    """True when the fused Numba CPU kernels of kernels/ apply: float32 NumPy arrays.
    (float64 keeps the plain NumPy formulas: they are the exact reference for gradient checks.)"""
    return all(isinstance(a, numpy.ndarray) and a.dtype == numpy.float32 for a in arrays)
