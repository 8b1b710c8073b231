"""Indexing: x[index], gather, scatter_add, index_select, take_along_dim, masked_select, nonzero, and the sorting
ops sort, argsort, topk (scatter and scatter_reduce are in scatter.py).

Reading by index is a copy; its backward writes g back into a zero tensor of the input's shape. An
index may name one position several times (x[[0, 0]], a token that occurs twice in a batch), so
those gradients are added with scatter-add, never assigned:

    y = gather(x, dim, index):     y[i][j] = x[index[i][j]][j]          (dim=0)
                                   dx[index[i][j]][j] += g[i][j]
    y = scatter_add(x, dim, index, src):  y = x;  y[index[i][j]][j] += src[i][j]
                                   dx = g,  dsrc[i][j] = g[index[i][j]][j]

`add_at_along` is the one scatter-add all of them (and embedding's backward) use: it turns the
index into flat positions and makes a single np.add.at call on a 1-D view, which NumPy runs as a
tight loop (no Python loop over rows, no float64 detour through bincount).
"""
from minigrad import backend
from minigrad.ops.reduce import ValuesIndices, normalize_dims
from minigrad.tensor import Tensor, record, tensor_method


def _index_array(part):
    """One part of an index: a Tensor, a list or a tuple becomes an array. Inside an index, torch reads a tuple
    as an array index, like a list (NumPy would read a tuple at the top level as one index per dim)."""
    if isinstance(part, Tensor):
        return part.data
    if isinstance(part, (list, tuple)):
        array = backend.np.asarray(part)
        return array.astype(backend.int64) if array.size == 0 else array  # [] would be float64
    return part


def _index_arrays(index):
    """The index with every Tensor, list and tuple inside it as an array (the index itself may be a tuple)."""
    if isinstance(index, tuple):
        return tuple(_index_array(part) for part in index)
    return _index_array(index)


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


def _dims_taken(part):
    """How many dims of the tensor one part of an index consumes: none for None and Ellipsis (here), all of a
    boolean mask's dims, one for anything else."""
    if part is None or part is Ellipsis:
        return 0
    return part.ndim if getattr(part, "dtype", None) == backend.bool_ else 1


def _without_ellipsis(index, ndim):
    """The index with its Ellipsis spelled out as the slices it stands for. torch does this before it decides
    whether the array indices are adjacent, so x[:, r, ..., r] on 3 dims keeps the broadcast dims in place
    (the Ellipsis covers no dim), where NumPy would move them to the front."""
    parts = index if isinstance(index, tuple) else (index,)
    if not any(p is Ellipsis for p in parts):
        return index
    spanned = ndim - sum(_dims_taken(p) for p in parts)
    at = next(i for i, p in enumerate(parts) if p is Ellipsis)
    return parts[:at] + (slice(None),) * spanned + parts[at + 1:]


def _ints_first(index):
    """PyTorch applies integer indices first, as selections, then the array indices, so x[0, :, idx]
    has shape (4, 3, 6) for x of shape (3, 4, 5, 6) where NumPy (treating 0 as an array index too)
    gives (3, 4, 6). For a tuple mixing ints and arrays: (ints applied, arrays left) such that
    x[index] in PyTorch is x[ints applied][arrays left] in NumPy; None for any other index."""
    parts = index if isinstance(index, tuple) else (index,)
    is_int = [isinstance(p, int) and not isinstance(p, bool) for p in parts]
    is_array = [backend.is_array(p) for p in parts]
    if not any(is_int) or not any(is_array):
        return None
    first, rest = [], []
    for p, integer, array in zip(parts, is_int, is_array):
        if integer:
            first.append(p)
        elif array:  # a boolean mask spans as many dims as it has
            first.extend([slice(None)] * _dims_taken(p))
            rest.append(p)
        else:
            first.append(p)
            rest.append(p if p is Ellipsis else slice(None))  # None: the new dim exists after the first step
    return tuple(first), tuple(rest)


def getitem(x, index):
    index = _index_arrays(index)
    if not _is_basic(index):
        index = _without_ellipsis(index, x.ndim)
    split = _ints_first(index)
    if split is not None:
        return getitem(getitem(x, split[0]), split[1])
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


# ---------------------------------------------------------------------------------------------
# Scatter-add: the backward of every read-by-index
# ---------------------------------------------------------------------------------------------

def add_at_along(shape, dim, index, values):
    """A zero array of `shape` with out[..., index[k], ...] += values[k] along axis `dim`.

    `index` broadcasts against `values` (e.g. shape (K, 1) for rows of a (V, D) table); every other
    axis of `values` maps to the same position of `out`. Repeated indices add up.
    """
    xp = backend.array_module(values)
    out = xp.zeros(shape, dtype=values.dtype)
    backend.scatter_add(xp, out.reshape(-1), flat_positions(shape, dim, index, values.shape), values.reshape(-1))
    return out


def flat_positions(shape, dim, index, values_shape):
    """The positions, in a flattened array of `shape`, of out[..., index[k], ...] along axis `dim` for every
    entry of an array of `values_shape` (index broadcasts against it), as one 1-D int64 array."""
    xp = backend.array_module(index)
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    flat = index.astype(backend.int64, copy=False) * strides[dim]
    for d, n in enumerate(values_shape):
        if d != dim and strides[d] and n > 1:
            flat = flat + (xp.arange(n) * strides[d]).reshape((n,) + (1,) * (len(values_shape) - d - 1))
    return xp.broadcast_to(flat, values_shape).reshape(-1)


def _int_index(index, op):
    data = index.data if isinstance(index, Tensor) else index
    if not backend.is_array(data) or data.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got {getattr(data, 'dtype', type(data))}")
    return data


def _check_range(index, size, op, what):
    if index.size and (int(index.min()) < 0 or int(index.max()) >= size):
        raise IndexError(f"{op}: index out of range: values in [{int(index.min())}, {int(index.max())}] for {what} "
                         f"of size {size}; expected 0 <= index < {size}")


def _check_gather_shapes(x, dim, index, op, other=None):
    if index.ndim != x.ndim:
        raise ValueError(f"{op}: index of shape {index.shape} must have as many dimensions as the input of shape "
                         f"{x.shape}")
    for d, n in enumerate(index.shape):
        if (d != dim and n > x.shape[d]) or (other is not None and n > other[d]):
            raise ValueError(f"{op}: index of shape {index.shape} is larger than the input of shape {x.shape}"
                             + (f" or the source of shape {other}" if other is not None else "")
                             + f" in dimension {d}; expected index.size(d) <= input.size(d) for d != dim")


def _leading(shape, dim, sizes):
    """Slices that keep the first sizes[d] entries of every axis except `dim`."""
    return tuple(slice(None) if d == dim else slice(0, sizes[d]) for d in range(len(shape)))


@tensor_method
def gather(input, dim, index):
    """out[i][j] = input[index[i][j]][j] (dim=0), out has index's shape (torch.gather).

    Backward: the gradient is scatter-added back, dx[index[i][j]][j] += g[i][j].
    """
    if input.ndim == 0:
        raise ValueError("gather: input must have at least 1 dimension, got a 0-d tensor")
    idx = _int_index(index, "gather")
    dim = normalize_dims(dim, input.ndim, "gather")[0]
    _check_gather_shapes(input, dim, idx, "gather")
    _check_range(idx, input.shape[dim], "gather", f"dimension {dim} of the input of shape {input.shape}")
    xp = backend.array_module(input.data)
    out = xp.take_along_axis(input.data[_leading(input.shape, dim, idx.shape)], idx, axis=dim)
    return record(out, (input,), lambda g: (add_at_along(input.shape, dim, idx, g),), "gather")


@tensor_method
def scatter_add(input, dim, index, src):
    """out = input; out[index[i][j]][j] += src[i][j] (dim=0), repeated indices add up (torch.scatter_add).

    Backward: d input = g; d src[i][j] = g[index[i][j]][j] (zero where src lies outside index's shape).
    """
    dim, idx = check_scatter(input, dim, index, src, "scatter_add")
    out = input.data + add_at_along(input.shape, dim, idx, source_part(src, idx))
    return record(out, (input, src), lambda g: (g, gather_to_source(g, dim, idx, src) if src.requires_grad
                                                  else None), "scatter_add")


def check_scatter(input, dim, index, src, op):
    """(dim as a non-negative axis, the index array) for a scatter of src into input, or an error naming op."""
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have at least 1 dimension, got a 0-d tensor")
    if src.dtype != input.dtype:
        raise TypeError(f"{op}: src dtype {src.dtype} differs from the input's {input.dtype}")
    idx = _int_index(index, op)
    dim = normalize_dims(dim, input.ndim, op)[0]
    _check_gather_shapes(input, dim, idx, op, other=src.shape)
    _check_range(idx, input.shape[dim], op, f"dimension {dim} of the input of shape {input.shape}")
    return dim, idx


def source_part(src, idx):
    """The part of a scatter's src that index covers (its leading index.shape entries)."""
    return src.data[_leading(src.shape, None, idx.shape)]


def gather_to_source(g, dim, idx, src):
    """A scatter's gradient for src: dsrc[i][j] = g[index[i][j]][j] (dim=0), zero where src lies outside
    index's shape."""
    xp = backend.array_module(g)
    return fit_to_source(xp.take_along_axis(g[_leading(g.shape, dim, idx.shape)], idx, axis=dim), idx, src)


def fit_to_source(grad, idx, src):
    """A gradient for the part of src that index covers (index's shape), zero-padded to src's shape."""
    if grad.shape == src.shape:
        return grad
    full = backend.array_module(grad).zeros(src.shape, dtype=grad.dtype)
    full[_leading(src.shape, None, idx.shape)] = grad
    return full


@tensor_method
def index_select(input, dim, index):
    """The entries input[..., index[k], ...] along `dim`, in index's order (torch.index_select).

    Backward: dx[..., index[k], ...] += g[..., k, ...].
    """
    idx = _int_index(index, "index_select")
    if idx.ndim > 1:
        raise ValueError(f"index_select: index must be 0-d or 1-d, got shape {idx.shape}")
    idx = idx.reshape(-1)
    dim = normalize_dims(dim, input.ndim, "index_select")[0] if input.ndim else 0
    size = input.shape[dim] if input.ndim else 1
    _check_range(idx, size, "index_select", f"dimension {dim} of the input of shape {input.shape}")
    xp = backend.array_module(input.data)
    data = input.data.reshape(1) if input.ndim == 0 else input.data
    out = xp.take(data, idx, axis=dim)
    out = out.reshape(()) if input.ndim == 0 else out
    along = idx.reshape((-1,) + (1,) * (data.ndim - dim - 1))

    def backward(g):
        g = g.reshape(1) if input.ndim == 0 else g
        return (add_at_along(data.shape, dim, along, g).reshape(input.shape),)
    return record(out, (input,), backward, "index_select")


@tensor_method
def take_along_dim(input, indices, dim=None):
    """input's entries at `indices` along dim (torch.take_along_dim): gather, with input and indices broadcast
    against each other in every other dim; dim None indexes the flattened input with the flattened indices.

    Backward: dx[..., indices[k], ...] += g[..., k, ...], summed back over broadcast dims by the engine.
    """
    idx = _int_index(indices, "take_along_dim")
    xp = backend.array_module(input.data)
    if dim is None:
        data, idx, axis = input.data.reshape(-1), idx.reshape(-1), 0
    else:
        if input.ndim == 0 or idx.ndim != input.ndim:
            raise ValueError(f"take_along_dim: indices of shape {idx.shape} must have as many dimensions as the "
                             f"input of shape {input.shape} (at least 1)")
        axis = normalize_dims(dim, input.ndim, "take_along_dim")[0]
        others = [s[:axis] + (1,) + s[axis + 1:] for s in (input.shape, idx.shape)]
        try:
            common = backend.np.broadcast_shapes(*others)
        except ValueError:
            raise ValueError(f"take_along_dim: input of shape {input.shape} and indices of shape {idx.shape} do not "
                             f"broadcast outside dimension {dim}") from None
        data = xp.broadcast_to(input.data, common[:axis] + (input.shape[axis],) + common[axis + 1:])
        idx = xp.broadcast_to(idx, common[:axis] + (idx.shape[axis],) + common[axis + 1:])
    _check_range(idx, data.shape[axis], "take_along_dim", f"dimension {axis} of the input of shape {data.shape}")
    out = xp.take_along_axis(data, idx, axis=axis)

    def backward(g):
        grad = add_at_along(data.shape, axis, idx, g)
        return (grad.reshape(input.shape) if dim is None else grad,)
    return record(out, (input,), backward, "take_along_dim")


@tensor_method
def masked_select(input, mask):
    """The entries of input where mask is True, as a 1-D tensor; input and mask broadcast together.

    Backward: g written at the selected positions of a zero tensor of the broadcast shape.
    """
    m = mask.data if isinstance(mask, Tensor) else mask
    if m.dtype != backend.bool_:
        raise TypeError(f"masked_select: mask must be a bool tensor, got {m.dtype}")
    try:
        shape = backend.np.broadcast_shapes(input.shape, m.shape)
    except ValueError:
        raise ValueError(f"masked_select: mask of shape {m.shape} does not broadcast with the input's shape "
                         f"{input.shape}") from None
    xp = backend.array_module(input.data)
    m = xp.broadcast_to(m, shape)

    def backward(g):
        full = xp.zeros(shape, dtype=g.dtype)
        full[m] = g
        return (full,)
    return record(xp.broadcast_to(input.data, shape)[m], (input,), backward, "masked_select")


@tensor_method
def nonzero(input, *, as_tuple=False):
    """The int64 indices of the non-zero entries: an (N, ndim) tensor, or with as_tuple one 1-D tensor per
    dim (a 0-d input counts as 1-D there, as in torch)."""
    xp = backend.array_module(input.data)
    if as_tuple:
        data = input.data.reshape(1) if input.ndim == 0 else input.data
        return tuple(Tensor(i.astype(backend.int64)) for i in xp.nonzero(data))
    return Tensor(xp.argwhere(input.data).astype(backend.int64))


# ---------------------------------------------------------------------------------------------
# Sorting: values are differentiable (g goes back to where each value came from), indices are int64
# ---------------------------------------------------------------------------------------------

def _argsort(xp, data, axis, descending):
    """Stable argsort; descending keeps equal elements in their original order, as torch's stable sort."""
    if not descending:
        return xp.argsort(data, axis=axis, kind="stable")
    n = data.shape[axis]
    return (n - 1) - xp.flip(xp.argsort(xp.flip(data, axis), axis=axis, kind="stable"), axis)


def _pick_along(x, order, axis, name):
    """(values, indices) of x taken along `axis` at `order` (a permutation of a subset per row)."""
    xp = backend.array_module(x.data)

    def backward(g):
        full = xp.zeros(x.shape, dtype=g.dtype)
        xp.put_along_axis(full, order, g, axis=axis)  # each position is picked at most once
        return (full,)
    values = record(xp.take_along_axis(x.data, order, axis=axis), (x,), backward, name)
    return ValuesIndices(values, Tensor(order.astype(backend.int64, copy=False)))


def _as_1d(x):
    return x.reshape(1) if x.ndim == 0 else x


@tensor_method
def sort(input, dim=-1, descending=False, *, stable=False):
    """(values, indices) sorted along dim (torch.sort). The sort is always stable here."""
    flat = _as_1d(input)
    axis = normalize_dims(dim, flat.ndim, "sort")[0]
    order = _argsort(backend.array_module(input.data), flat.data, axis, descending)
    values, indices = _pick_along(flat, order, axis, "sort")
    if input.ndim == 0:
        return ValuesIndices(values.reshape(()), indices.reshape(()))
    return ValuesIndices(values, indices)


@tensor_method
def argsort(input, dim=-1, descending=False, stable=False):
    """The int64 indices that sort input along dim (torch.argsort); always stable here."""
    axis = normalize_dims(dim, max(input.ndim, 1), "argsort")[0]
    order = _argsort(backend.array_module(input.data), _as_1d(input).data, axis, descending)
    return Tensor(order.astype(backend.int64, copy=False).reshape(input.shape))


@tensor_method
def topk(input, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the k largest (or smallest) entries along dim (torch.topk).

    Uses a partial sort (argpartition, O(n)) and sorts only the k winners when sorted=True. With
    sorted=False the k entries come in no particular order (torch makes no promise either).
    Backward: g goes to the positions the values came from.
    """
    flat = _as_1d(input)
    axis = normalize_dims(dim, flat.ndim, "topk")[0]
    n = flat.shape[axis]
    if not 0 <= k <= n:
        raise ValueError(f"topk: k={k} is out of range for dimension {dim} of size {n} (shape {input.shape}); "
                         f"expected 0 <= k <= {n}")
    xp = backend.array_module(input.data)
    data = flat.data
    if k == n or k == 0:
        order = _argsort(xp, data, axis, largest)
        order = xp.take(order, xp.arange(k), axis=axis)
    else:
        part = xp.argpartition(data, n - k if largest else k - 1, axis=axis)
        order = xp.take(part, xp.arange(n - k, n) if largest else xp.arange(k), axis=axis)
        if sorted:
            rank = _argsort(xp, xp.take_along_axis(data, order, axis=axis), axis, largest)
            order = xp.take_along_axis(order, rank, axis=axis)
    values, indices = _pick_along(flat, order, axis, "topk")
    if input.ndim == 0:
        return ValuesIndices(values.reshape(()), indices.reshape(()))
    return ValuesIndices(values, indices)
