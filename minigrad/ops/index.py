"""Indexing: x[index] with slices, integers, integer arrays and boolean masks.

Backward scatters g back into a zero tensor of x's shape. Integer-array indices may repeat a
position (x[[0, 0]]), so their gradients are added with scatter-add, not assigned.
"""
from minigrad import backend
from minigrad.tensor import Tensor, record


def _index_arrays(index):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


def getitem(x, index):
    index = _index_arrays(index)
    xp = backend.array_module(x.data)
    try:
        out = x.data[index]
    except IndexError as err:
        raise IndexError(f"getitem: index {index!r} is invalid for a tensor of shape {x.shape}: {err}") from None
    basic = _is_basic(index)

    def backward(g):
        full = xp.zeros(x.shape, dtype=g.dtype)
        if basic:
            full[index] = g
        else:
            backend.scatter_add(xp, full, index, g)
        return (full,)
    return record(out, (x,), backward, "getitem")


Tensor.__getitem__ = getitem
