"""scatter and scatter_reduce: src written into a copy of the input at index positions along dim.

    y = scatter(x, dim, index, src):   y = x;  y[index[i][j]][j] = src[i][j]                 (dim=0)
        dx = g with the written positions zeroed;   dsrc[i][j] = g[index[i][j]][j]
    y = scatter_reduce(x, dim, index, src, reduce, include_self=True): every position combines the src
        entries written to it, and its own x entry unless include_self=False, by reduce:
        sum   dx = g,                 dsrc[i][j] = g[p]                        (p = index[i][j], j)
        mean  dx = g / N,             dsrc[i][j] = g[p] / N[p]   (N: the entries combined at a position)
        amax, amin: g shared evenly among the entries equal to the result at their position
        prod  d(entry) = g * (the product of the other entries at its position), exact at zeros
    With include_self=False the written positions of x get no gradient.

A src larger than index gives only its leading index.shape entries; the rest gets a zero gradient (torch
refuses that backward). reduce='prod' runs on the CPU only: CuPy has no scatter-multiply.
"""
from minigrad import backend
from minigrad.ops.index import check_scatter, fit_to_source, flat_positions, gather_to_source, source_part
from minigrad.tensor import Tensor, record, tensor_method

REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


def _written(shape, positions, xp):
    """A bool array of `shape`, True at the (flat) positions a scatter writes to."""
    hit = xp.zeros(shape, dtype=bool)
    hit.reshape(-1)[positions] = True
    return hit


@tensor_method
def scatter(input, dim, index, src=None, *, value=None):
    """out = input; out[index[i][j]][j] = src[i][j] (dim=0), or = value when src is a number (torch.scatter).
    Where index names a position twice, the last write wins here; torch leaves that order undefined."""
    xp = backend.array_module(input.data)
    if not isinstance(src, Tensor):
        fill = value if src is None else src
        src = Tensor(xp.full(getattr(index, "shape", ()), fill, dtype=input.dtype))
    dim, idx = check_scatter(input, dim, index, src, "scatter")
    positions = flat_positions(input.shape, dim, idx, idx.shape)
    out = input.data.copy()
    out.reshape(-1)[positions] = source_part(src, idx).reshape(-1)

    def backward(g):
        grad_input = xp.where(_written(g.shape, positions, xp), xp.zeros((), dtype=g.dtype), g)
        return grad_input, gather_to_source(g, dim, idx, src) if src.requires_grad else None
    return record(out, (input, src), backward, "scatter")


@tensor_method
def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    """Every position of input combines the src entries scattered to it by `reduce` ('sum', 'prod', 'mean',
    'amax', 'amin'), with its own entry unless include_self=False (torch.scatter_reduce). Positions no index
    names keep input's entry. An integer mean rounds down, as torch."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"scatter_reduce: reduce must be one of {REDUCTIONS}, got {reduce!r}")
    dim, idx = check_scatter(input, dim, index, src, "scatter_reduce")
    xp = backend.array_module(input.data)
    positions = flat_positions(input.shape, dim, idx, idx.shape)
    values = source_part(src, idx).reshape(-1)
    counts = xp.zeros(input.data.size, dtype=backend.int64)
    backend.scatter_combine(xp, counts, positions, xp.ones(positions.size, dtype=backend.int64), "add")
    counts = counts.reshape(input.shape)
    touched = counts > 0
    floating = backend.is_floating(input.dtype)
    if include_self:
        start = input.data.copy()
    else:
        extremes = xp.finfo(input.dtype) if floating else xp.iinfo(input.dtype)
        identity = {"sum": 0, "mean": 0, "prod": 1, "amax": -xp.inf if floating else extremes.min,
                    "amin": xp.inf if floating else extremes.max}[reduce]
        start = xp.where(touched, xp.asarray(identity, dtype=input.dtype), input.data)
    how = {"sum": "add", "mean": "add", "prod": "multiply", "amax": "maximum", "amin": "minimum"}[reduce]
    backend.scatter_combine(xp, start.reshape(-1), positions, values, how)
    combined = counts + include_self  # the number of entries combined at each position
    out = start
    if reduce == "mean":
        out = start / xp.maximum(combined, 1) if floating else start // xp.maximum(combined, 1)
        out = out.astype(input.dtype, copy=False)

    def backward(g):
        grad_self, grad_entries = _reduce_gradients(reduce, g, input.data, out, values, positions, combined,
                                                    include_self)
        if not include_self:
            grad_self = xp.where(touched, xp.zeros((), dtype=g.dtype), grad_self)
        grad_src = fit_to_source(grad_entries.reshape(idx.shape), idx, src) if src.requires_grad else None
        return grad_self, grad_src
    return record(out, (input, src), backward, "scatter_reduce")


def _reduce_gradients(reduce, g, self_data, out, values, positions, combined, include_self):
    """(the gradient of input, the gradients of src's entries in the order of `positions`); `values` are
    those entries, `combined` the number of entries combined at each position."""
    xp = backend.array_module(g)
    if reduce == "sum":
        return g, g.reshape(-1)[positions]
    if reduce == "mean":
        share = g / xp.maximum(combined, 1).astype(g.dtype)
        return share, share.reshape(-1)[positions]
    if reduce in ("amax", "amin"):  # g shared evenly among the entries equal to the result
        self_wins = (self_data == out).astype(g.dtype)
        src_wins = (values == out.reshape(-1)[positions]).astype(g.dtype)
        winners = self_wins.reshape(-1).copy()
        backend.scatter_combine(xp, winners, positions, src_wins, "add")
        share = g / winners.reshape(g.shape)
        return self_wins * share, src_wins * share.reshape(-1)[positions]
    zero_count = xp.zeros(g.size, dtype=g.dtype)  # prod: per position, the zeros and the product of the rest
    nonzero_product = xp.ones(g.size, dtype=g.dtype)
    own = self_data.reshape(-1)
    if include_self:
        zero_count += own == 0
        nonzero_product *= xp.where(own == 0, 1, own)
    backend.scatter_combine(xp, zero_count, positions, (values == 0).astype(g.dtype), "add")
    backend.scatter_combine(xp, nonzero_product, positions, xp.where(values == 0, 1, values), "multiply")

    def product_of_others(entries, at):
        """The product of the other entries at each entry's position (0 if one of them is 0), without
        dividing by a zero entry."""
        is_zero = entries == 0
        return xp.where(zero_count[at] - is_zero == 0, nonzero_product[at] / xp.where(is_zero, 1, entries), 0)
    grad_self = g * product_of_others(own, xp.arange(g.size)).reshape(g.shape) if include_self else g
    return grad_self, g.reshape(-1)[positions] * product_of_others(values, positions)
