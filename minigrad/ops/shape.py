"""Shape ops: views and rearrangements. Their backward applies the inverse rearrangement to g."""
import builtins

from minigrad import backend
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
