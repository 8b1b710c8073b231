"""Shape ops: views and rearrangements. Their backward applies the inverse rearrangement to g."""
import builtins

from minigrad import backend
from minigrad.ops.index import add_at_along, index_select
from minigrad.ops.reduce import normalize_dims
from minigrad.tensor import Tensor, record, tensor_method


def _shape_arg(shape):
    """Accept reshape(2, 3) and reshape((2, 3))."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


@tensor_method
def reshape(x, *shape):
    shape = _shape_arg(shape)
    try:
        out = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: shape {shape} is invalid for a tensor of shape {x.shape} "
                         f"({x.numel()} elements)") from None
    return record(out, (x,), lambda g: (g.reshape(x.shape),), "reshape")


Tensor.view = reshape


@tensor_method
def contiguous(x):
    return x


@tensor_method
def flatten(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return reshape(x, 1)
    start, end = normalize_dims((start_dim, end_dim), x.ndim, "flatten") if start_dim % x.ndim != end_dim % x.ndim \
        else (start_dim % x.ndim,) * 2
    merged = 1
    for n in x.shape[start:end + 1]:
        merged *= n
    return reshape(x, x.shape[:start] + (merged,) + x.shape[end + 1:])


@tensor_method
def squeeze(x, dim=None):
    if dim is None:
        shape = tuple(n for n in x.shape if n != 1)
    else:
        axes = normalize_dims(dim, x.ndim, "squeeze")
        shape = tuple(n for i, n in enumerate(x.shape) if not (i in axes and n == 1))
    return reshape(x, shape)


@tensor_method
def unsqueeze(x, dim):
    axis = normalize_dims(dim, x.ndim + 1, "unsqueeze")[0]
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


@tensor_method
def permute(x, *dims):
    dims = _shape_arg(dims)
    if sorted(d % builtins.max(x.ndim, 1) for d in dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of the {x.ndim} dimensions of shape {x.shape}")
    dims = tuple(d % x.ndim for d in dims)
    xp = backend.array_module(x.data)
    inverse = tuple(sorted(range(x.ndim), key=dims.__getitem__))
    return record(xp.transpose(x.data, dims), (x,), lambda g: (xp.transpose(g, inverse),), "permute")


@tensor_method
def transpose(x, dim0, dim1):
    xp = backend.array_module(x.data)
    dims = [normalize_dims(d, x.ndim, "transpose") for d in (dim0, dim1)]
    if not x.ndim:  # dims 0 and -1 of a 0-d tensor: nothing to swap
        return record(x.data, (x,), lambda g: (g,), "transpose")
    a, b = (d[0] for d in dims)
    return record(xp.swapaxes(x.data, a, b), (x,), lambda g: (xp.swapaxes(g, a, b),), "transpose")


Tensor.T = property(lambda x: permute(x, tuple(reversed(range(x.ndim)))))
Tensor.mT = property(lambda x: transpose(x, -2, -1))


@tensor_method
def expand(x, *sizes):
    """Broadcast to `sizes` (-1 keeps a dimension). Backward: the engine sums g back to x's shape."""
    sizes = _shape_arg(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: target {sizes} has fewer dimensions than the tensor's shape {x.shape}")
    shape = tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(sizes))
    xp = backend.array_module(x.data)
    try:
        out = xp.broadcast_to(x.data, shape)
    except ValueError:
        raise ValueError(f"expand: shape {x.shape} cannot be expanded to {sizes} (only size-1 dims can grow)") from None
    return record(out, (x,), lambda g: (g,), "expand")


@tensor_method
def expand_as(x, other):
    return expand(x, other.shape)


@tensor_method
def repeat(x, *repeats):
    """Tile the tensor (torch.Tensor.repeat). Backward: sum the tiles."""
    repeats = _shape_arg(repeats)
    if len(repeats) < x.ndim:
        raise ValueError(f"repeat: {len(repeats)} repeats given for a tensor with {x.ndim} dimensions")
    xp = backend.array_module(x.data)
    base = (1,) * (len(repeats) - x.ndim) + x.shape
    out = xp.tile(x.data.reshape(base), repeats)

    def backward(g):
        split = []
        for r, n in zip(repeats, base):
            split += [r, n]
        summed = g.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return (summed.reshape(x.shape),)
    return record(out, (x,), backward, "repeat")


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    first = tensors[0]
    axis = normalize_dims(dim, first.ndim, "cat")[0]
    for t in tensors:
        if t.ndim != first.ndim or t.shape[:axis] + t.shape[axis + 1:] != first.shape[:axis] + first.shape[axis + 1:]:
            raise ValueError(f"cat: shapes {[tuple(u.shape) for u in tensors]} differ outside dimension {dim}")
        if t.dtype != first.dtype:
            raise TypeError(f"cat: mixed dtypes {[str(u.dtype) for u in tensors]}")
    xp = backend.array_module(first.data)
    out = xp.concatenate([t.data for t in tensors], axis=axis)
    edges = xp.cumsum(xp.asarray([t.shape[axis] for t in tensors]))[:-1].tolist()
    return record(out, tuple(tensors), lambda g: tuple(xp.split(g, edges, axis=axis)), "cat")


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    if len({t.shape for t in tensors}) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {[tuple(t.shape) for t in tensors]}")
    axis = normalize_dims(dim, tensors[0].ndim + 1, "stack")[0]
    return cat([unsqueeze(t, axis) for t in tensors], axis)


@tensor_method
def split(x, split_size_or_sections, dim=0):
    """Pieces of size `split_size` (the last may be smaller) or of the listed sizes."""
    axis = normalize_dims(dim, x.ndim, "split")[0]
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to dimension {dim} of size {n}")
    starts = [builtins.sum(sizes[:i]) for i in range(len(sizes))]
    return _pieces(x, [(slice(None),) * axis + (slice(a, a + n),) for a, n in zip(starts, sizes)], "split")


@tensor_method
def unbind(x, dim=0):
    """The slices x[..., i, ...] along dim, each without that dimension."""
    axis = normalize_dims(dim, x.ndim, "unbind")[0]
    return _pieces(x, [(slice(None),) * axis + (i,) for i in range(x.shape[axis])], "unbind")


def _pieces(x, indices, op):
    """x[index] for each index, with a backward that costs O(x.size) in total, not O(pieces * x.size).

    The engine gives an op one output, so k separate slices would each send back a zero gradient of
    x's full shape. Here every piece hangs off one 0-d "anchor" made from x: a piece's backward adds
    its gradient into a buffer shared by all pieces (and sends the anchor a zero); the anchor, which
    the engine reaches only after every piece made from it, hands the whole buffer to x.
    """
    if not x.requires_grad:
        return tuple(Tensor(x.data[index]) for index in indices)
    xp = backend.array_module(x.data)
    buffer = {}
    anchor = record(xp.zeros((), dtype=x.dtype), (x,), lambda g: (buffer.pop("grad"),), op)
    zero = xp.zeros((), dtype=x.dtype)

    def piece(index):
        def backward(g):
            if "grad" not in buffer:
                buffer["grad"] = xp.zeros(x.shape, dtype=x.dtype)
            buffer["grad"][index] += g
            return (zero,)
        return record(x.data[index], (anchor,), backward, op)
    return tuple(piece(index) for index in indices)


@tensor_method
def chunk(x, chunks, dim=0):
    n = x.shape[normalize_dims(dim, x.ndim, "chunk")[0]]
    return split(x, -(-n // chunks), dim)


def _triangle(x, diagonal, lower):
    if x.ndim < 2:
        raise ValueError(f"{'tril' if lower else 'triu'}: input must have at least 2 dimensions, got shape {x.shape}")
    xp = backend.array_module(x.data)
    rows, cols = x.shape[-2:]
    keep = (xp.tri(rows, cols, diagonal, dtype=bool) if lower else ~xp.tri(rows, cols, diagonal - 1, dtype=bool))
    zero = xp.zeros((), dtype=x.dtype)
    return record(xp.where(keep, x.data, zero), (x,), lambda g: (xp.where(keep, g, zero.astype(g.dtype)),),
                  "tril" if lower else "triu")


@tensor_method
def tril(x, diagonal=0):
    return _triangle(x, diagonal, lower=True)


@tensor_method
def triu(x, diagonal=0):
    return _triangle(x, diagonal, lower=False)


@tensor_method
def flip(x, dims):
    xp = backend.array_module(x.data)
    axes = normalize_dims(dims, x.ndim, "flip")
    return record(xp.flip(x.data, axes), (x,), lambda g: (xp.flip(g, axes),), "flip")


@tensor_method
def roll(x, shifts, dims=None):
    """Shift entries along dims, wrapping around; dims None rolls the flattened tensor. Backward: roll g back."""
    xp = backend.array_module(x.data)
    if dims is not None:
        shifts, dims = (shifts, dims) if isinstance(dims, (tuple, list)) else ((shifts,), (dims,))
        if len(shifts) != len(dims):
            raise ValueError(f"roll: {len(shifts)} shifts for {len(dims)} dims; expected one shift per dim")
        dims = tuple(normalize_dims(d, x.ndim, "roll")[0] if x.ndim else 0 for d in dims)
    back = -shifts if isinstance(shifts, int) else tuple(-s for s in shifts)
    data = x.data.reshape(1) if x.ndim == 0 else x.data
    out = xp.roll(data, shifts, dims).reshape(x.shape)
    return record(out, (x,), lambda g: (xp.roll(g.reshape(data.shape), back, dims).reshape(x.shape),), "roll")


def _diagonal_positions(xp, rows, cols, offset):
    """(row indices, column indices) of the diagonal `offset` of a rows x cols matrix."""
    length = builtins.max(0, builtins.min(rows + builtins.min(offset, 0), cols - builtins.max(offset, 0)))
    steps = xp.arange(length)
    return steps + builtins.max(-offset, 0), steps + builtins.max(offset, 0)


def _take_diagonal(x, offset, dim1, dim2, op):
    """The diagonal `offset` of the matrices spanned by dim1 and dim2, as a new last dim.
    Backward: g written on that diagonal of a zero tensor."""
    if x.ndim < 2:
        raise ValueError(f"{op}: input must have at least 2 dimensions, got shape {x.shape}")
    a, b = (normalize_dims(d, x.ndim, op)[0] for d in (dim1, dim2))
    if a == b:
        raise ValueError(f"{op}: dim1 and dim2 must differ, both name dimension {a}")
    xp = backend.array_module(x.data)
    rows, cols = _diagonal_positions(xp, x.shape[a], x.shape[b], offset)
    out = xp.moveaxis(x.data, (a, b), (-2, -1))[..., rows, cols]

    def backward(g):
        full = xp.zeros(x.shape, dtype=g.dtype)
        xp.moveaxis(full, (a, b), (-2, -1))[..., rows, cols] = g  # writes through the view into full
        return (full,)
    return record(out, (x,), backward, op)


@tensor_method
def diagonal(x, offset=0, dim1=0, dim2=1):
    """torch.diagonal: the diagonal `offset` of the matrices spanned by dim1 and dim2, as a new last dim."""
    return _take_diagonal(x, offset, dim1, dim2, "diagonal")


@tensor_method
def diag(x, diagonal=0):
    """A 1-D tensor -> the square matrix with it on diagonal `diagonal`; a 2-D one -> that diagonal."""
    if x.ndim == 2:
        return _take_diagonal(x, diagonal, 0, 1, "diag")
    if x.ndim != 1:
        raise ValueError(f"diag: input must be 1-D or 2-D, got shape {x.shape}")
    xp = backend.array_module(x.data)
    n = x.shape[0] + builtins.abs(diagonal)
    rows, cols = _diagonal_positions(xp, n, n, diagonal)
    out = xp.zeros((n, n), dtype=x.dtype)
    out[rows, cols] = x.data
    return record(out, (x,), lambda g: (g[rows, cols],), "diag")


@tensor_method
def unflatten(x, dim, sizes):
    """Split dimension dim into `sizes` (one of them may be -1), the inverse of flatten."""
    axis = normalize_dims(dim, x.ndim, "unflatten")[0]
    sizes = tuple(sizes)
    known = 1
    for n in sizes:
        known *= n if n != -1 else 1
    if sizes.count(-1) > 1 or (sizes.count(-1) == 0 and known != x.shape[axis]) \
            or (known and x.shape[axis] % known) or (not known and x.shape[axis]):
        raise ValueError(f"unflatten: sizes {sizes} do not split dimension {dim} of size {x.shape[axis]} "
                         f"(shape {x.shape})")
    return reshape(x, x.shape[:axis] + sizes + x.shape[axis + 1:])


@tensor_method
def unfold(x, dimension, size, step):
    """Every slice of length `size` along `dimension`, `step` apart, as a new last dim (torch.Tensor.unfold):
    shape (..., (n - size) // step + 1, ..., size). Windows may overlap, so the backward scatter-adds g."""
    if x.ndim == 0:
        normalize_dims(dimension, 0, "unfold")
        return reshape(unfold(reshape(x, 1), 0, size, step), size)
    axis = normalize_dims(dimension, x.ndim, "unfold")[0]
    n = x.shape[axis]
    if not 0 <= size <= n or step <= 0:
        raise ValueError(f"unfold: size {size} and step {step} do not fit dimension {dimension} of size {n} "
                         f"(shape {x.shape}); expected 0 <= size <= {n} and step > 0")
    xp = backend.array_module(x.data)
    count = (n - size) // step + 1
    windows = xp.arange(count)[:, None] * step + xp.arange(size)  # (count, size)
    out = xp.moveaxis(xp.take(x.data, windows, axis=axis), axis + 1, -1)  # (..., count, ..., size)
    along = windows.reshape((-1,) + (1,) * (x.ndim - axis - 1))

    def backward(g):
        g = xp.moveaxis(g, -1, axis + 1)
        g = g.reshape(g.shape[:axis] + (count * size,) + g.shape[axis + 2:])
        return (add_at_along(x.shape, axis, along, g),)
    return record(out, (x,), backward, "unfold")


@tensor_method
def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Repeat each entry along dim (the flattened tensor when dim is None) `repeats` times: an int, or one
    count per entry. repeat_interleave(counts) alone gives each index i counts[i] times. The backward is
    index_select's: the copies' gradients add up."""
    xp = backend.array_module(input.data)
    if repeats is None:
        return Tensor(xp.repeat(xp.arange(input.shape[0]), input.data))
    if dim is None:
        input, dim = reshape(input, -1), 0
    axis = normalize_dims(dim, input.ndim, "repeat_interleave")[0] if input.ndim else 0
    n = input.shape[axis] if input.ndim else 1
    counts = repeats.data if isinstance(repeats, Tensor) else repeats
    try:
        index = xp.repeat(xp.arange(n), counts)
    except ValueError:
        raise ValueError(f"repeat_interleave: repeats of shape {getattr(counts, 'shape', ())} do not match "
                         f"dimension {dim} of size {n} (shape {input.shape}); expected one count or {n}") from None
    if output_size is not None and output_size != index.size:
        raise ValueError(f"repeat_interleave: output_size {output_size} differs from the {index.size} repeats")
    return index_select(input if input.ndim else reshape(input, 1), axis, Tensor(index))


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids from 1-D tensors: output k holds tensors[k] along dim k ('ij'); 'xy' swaps the first
    two dims (Cartesian indexing). Each output is an expand, so its gradient sums back to its tensor."""
    tensors = list(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], (tuple, list)) else list(tensors)
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    if any(t.ndim > 1 for t in tensors):
        raise ValueError(f"meshgrid: expected 0-d or 1-D tensors, got shapes {[tuple(t.shape) for t in tensors]}")
    sizes = [t.numel() for t in tensors]
    order = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) > 1:
        order[0], order[1] = 1, 0
    grid = tuple(sizes[k] for k in order)
    grids = []
    for k, t in enumerate(tensors):
        shape = [1] * len(tensors)
        shape[order.index(k)] = sizes[k]
        grids.append(expand(reshape(t, tuple(shape)), grid))
    return tuple(grids)


@tensor_method
def clone(x):
    """A copy of x that stays in the graph: the gradient passes through unchanged."""
    return record(x.data.copy(), (x,), lambda g: (g,), "clone")
