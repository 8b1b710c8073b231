"""Losses with torch.nn.functional's names and arguments (re-exported by minigrad.nn.functional).

Each loss is one op with a hand-written backward. `_reduce` applies the reduction ('none', 'mean',
'sum') to the elementwise loss and scales the gradient back; cross_entropy's backward is the fused
softmax(z) - q, never a chain of log_softmax and gather.
"""
from minigrad import backend
from minigrad.ops.elementwise import check_same_dtype, data_broadcasting_to, data_of
from minigrad.tensor import record


def _reduction(op, reduction, size_average=None, reduce=None):
    """The reduction string, mapping the deprecated size_average/reduce flags as torch does."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _reduce(loss, reduction, op, parents, grads_of_loss, count=None):
    """Reduce an elementwise loss array and record it: backward maps g to g_loss (loss's shape) and
    calls grads_of_loss(g_loss) -> one gradient per parent. mean divides by `count` (default: size)."""
    xp = backend.array_module(loss)
    if reduction == "none":
        return record(loss, parents, grads_of_loss, op)
    count = loss.size if count is None else count
    total = loss.sum()
    out = total if reduction == "sum" else total / count
    out = xp.asarray(out, dtype=loss.dtype)

    def backward(g):
        scale = g if reduction == "sum" else g / count
        return grads_of_loss(xp.broadcast_to(scale.astype(loss.dtype, copy=False), loss.shape))
    return record(out, parents, backward, op)


def _same_shape(op, input, target, what="target"):
    if input.shape != target.shape:
        raise ValueError(f"{op}: {what} shape {target.shape} differs from the input's shape {input.shape}; "
                         f"expected equal shapes (minigrad does not broadcast a loss's operands silently)")


def _check_class_target(op, input, target, weight, probabilities_allowed):
    """Check a classification loss's input (C,), (N, C) or (N, C, d1, ...), target and class weights; return the
    target's array and whether it holds class probabilities (a float target of the input's shape)."""
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have shape (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    class_axis = 0 if input.ndim == 1 else 1
    classes = input.shape[class_axis]
    t = data_of(target)
    probabilities = probabilities_allowed and backend.is_floating(t.dtype)
    index_shape = input.shape[:class_axis] + input.shape[class_axis + 1:]
    if (probabilities and t.shape != input.shape) or (not probabilities and t.shape != index_shape):
        expected = f" or class probabilities of shape {input.shape}" if probabilities_allowed else ""
        raise ValueError(f"{op}: target of shape {t.shape} ({t.dtype}) does not match input of shape "
                         f"{input.shape}: expected class indices of shape {index_shape}{expected}")
    if not probabilities and t.dtype.kind not in "iu":
        raise TypeError(f"{op}: class-index target must be an integer tensor, got {t.dtype}")
    if weight is not None and weight.shape != (classes,):
        raise ValueError(f"{op}: weight of shape {weight.shape} does not match the {classes} classes of the "
                         f"input of shape {input.shape}; expected ({classes},)")
    check_same_dtype(op, input, weight, target if probabilities else None)
    return t, probabilities


def _class_rows(xp, data, unbatched):
    """(C,), (N, C) or (N, C, d1, ...) as rows (M, C), C moved last (a view for (N, C)), and the rows' shape."""
    rows = data[None] if unbatched else data
    if rows.ndim > 2:
        rows = xp.moveaxis(rows, 1, -1)
    return rows.reshape(-1, rows.shape[-1]), rows.shape[:-1]


def _class_indices(op, xp, t, classes, ignore_index):
    """Flat class indices (M,), the mask of those not equal to ignore_index, and the indices with the ignored ones
    set to 0 (safe to gather with). An index outside [0, classes) raises."""
    y = t.reshape(-1)
    valid = y != ignore_index
    bad = valid & ((y < 0) | (y >= classes))
    if bool(bad.any()):
        raise IndexError(f"{op}: target values {sorted(set(y[bad].tolist()))[:5]} are out of range for "
                         f"{classes} classes (ignore_index={ignore_index})")
    return y, valid, xp.where(valid, y, 0)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits (N, C) or (N, C, d1, ...) (or unbatched (C,)).

    target: class indices of shape (N, d1, ...), or class probabilities of the input's shape. With
    eps = label_smoothing, the target distribution of a sample with class y is
        q_c = (1 - eps) [c = y] + eps / C   (times the class weight w_c when weight is given),
    and loss = -sum_c q_c log softmax(z)_c. Samples whose target is ignore_index contribute 0;
    'mean' divides by the number (or, with weights, the summed w_y) of the other samples.

    Fused backward, per sample:  dz = (softmax(z) * sum_c q_c - q) * g / denominator.
    As torch's nll_loss, the class weights get no gradient with class-index targets (they do with probabilities).
    """
    reduction = _reduction("cross_entropy", reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    t, probabilities = _check_class_target("cross_entropy", input, target, weight, probabilities_allowed=True)
    unbatched, classes = input.ndim == 1, input.shape[0 if input.ndim == 1 else 1]
    xp = backend.array_module(input.data)
    z, row_shape = _class_rows(xp, input.data, unbatched)          # (M, C)
    w = None if weight is None else weight.data
    if probabilities:
        shifted = z - z.max(axis=1, keepdims=True)                # (M, C)
        return _cross_entropy_probs(input, target, weight, shifted, row_shape, unbatched, label_smoothing,
                                    reduction)

    y, valid, safe_y = _class_indices("cross_entropy", xp, t, classes, ignore_index)  # (M,) each
    if w is None and not label_smoothing and z.size and backend.uses_cpu_kernels(z):
        return _cross_entropy_cpu_kernel(input, z, safe_y, valid, row_shape, unbatched, reduction)
    shifted = z - z.max(axis=1, keepdims=True)                    # (M, C)
    rows = xp.arange(y.shape[0])
    dtype = z.dtype
    eps = label_smoothing
    picked = shifted[rows, safe_y]                                # z_y - max, (M,)
    smooth = None
    if eps:
        smooth = shifted.sum(axis=1) if w is None else shifted @ w  # sum_c w_c (z_c - max)
    exps = xp.exp(shifted, out=shifted)                           # reuse the buffer: (M, C)
    sums = exps.sum(axis=1)                                       # (M,)
    lse = xp.log(sums)                                            # logsumexp - max
    w_y = xp.ones((), dtype=dtype) if w is None else w[safe_y]
    loss = (1 - eps) * w_y * (lse - picked)
    if eps:
        w_total = classes if w is None else w.sum()
        loss = loss + (eps / classes) * (w_total * lse - smooth)
    loss = xp.where(valid, loss, 0).astype(dtype, copy=False)
    w_sum = (1 - eps) * w_y + (eps / classes) * (classes if w is None else w.sum())  # sum_c q_c, (M,) or ()
    if reduction == "mean":
        denominator = valid.sum().astype(dtype) if w is None else xp.where(valid, w_y, 0).sum()
    else:
        denominator = None

    def grads(g_loss):
        g_loss = xp.where(valid, g_loss.reshape(-1), 0).astype(dtype, copy=False)   # (M,)
        dz = exps * ((g_loss * w_sum) / sums)[:, None]            # softmax * sum_c q_c * g
        dz[rows, safe_y] -= g_loss * (1 - eps) * w_y
        if eps:
            dz -= (g_loss * (eps / classes))[:, None] * (1 if w is None else w)
        return (_rows_to_input(xp, dz, input.shape, row_shape, unbatched),)
    loss = loss.reshape(row_shape[1:] if unbatched else row_shape)
    return _reduce(loss, reduction, "cross_entropy", (input,), grads, count=denominator)


def _cross_entropy_cpu_kernel(input, z, y, valid, row_shape, unbatched, reduction):
    """The plain case (class indices, no weights, no smoothing) on float32 CPU data: kernels/cross_entropy.py."""
    from kernels.cross_entropy import cross_entropy_backward, cross_entropy_forward
    xp = backend.array_module(z)
    loss, lse = cross_entropy_forward(z, y, valid)                # (M,), (M,)
    denominator = valid.sum().astype(z.dtype) if reduction == "mean" else None

    def grads(g_loss):
        dz = cross_entropy_backward(z, y, valid, lse, g_loss.reshape(-1))
        return (_rows_to_input(xp, dz, input.shape, row_shape, unbatched),)
    loss = loss.reshape(row_shape[1:] if unbatched else row_shape)
    return _reduce(loss, reduction, "cross_entropy", (input,), grads, count=denominator)


def _rows_to_input(xp, rows2d, shape, row_shape, unbatched):
    """(M, C) rows back to the input's layout ((N, C, d...) has C at axis 1)."""
    out = rows2d.reshape(row_shape + (rows2d.shape[1],))
    if len(shape) > 2:
        out = xp.moveaxis(out, -1, 1)
    return out.reshape(shape) if unbatched else out


def _cross_entropy_probs(input, target, weight, shifted, row_shape, unbatched, eps, reduction):
    """cross_entropy with class probabilities: q_c = w_c ((1 - eps) t_c + eps / C), loss = -sum_c q_c logp_c.

    dz = (softmax * sum_c q_c - q) * g;  dt_c = -(1 - eps) w_c logp_c g;  dw_c = -sum over rows of q_c / w_c logp_c g.
    'mean' divides by the number of rows.
    """
    xp = backend.array_module(shifted)
    classes = shifted.shape[1]
    t, _ = _class_rows(xp, target.data, unbatched)                # (M, C)
    logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    smoothed = (1 - eps) * t + eps / classes
    q = smoothed if weight is None else smoothed * weight.data
    loss = -(q * logp).sum(axis=1).reshape(row_shape[1:] if unbatched else row_shape)

    def grads(g_loss):
        g = g_loss.reshape(-1, 1)                                 # (M, 1)
        dz = dt = dw = None
        if input.requires_grad:
            dz = (xp.exp(logp) * q.sum(axis=1, keepdims=True) - q) * g
            dz = _rows_to_input(xp, dz, input.shape, row_shape, unbatched)
        if target.requires_grad:
            dt = -(1 - eps) * logp * g
            if weight is not None:
                dt = dt * weight.data
            dt = _rows_to_input(xp, dt, target.shape, row_shape, unbatched)
        if weight is not None and weight.requires_grad:
            dw = -(smoothed * logp * g).sum(axis=0)              # (C,)
        return (dz, dt) if weight is None else (dz, dt, dw)
    parents = (input, target) if weight is None else (input, target, weight)
    return _reduce(loss, reduction, "cross_entropy", parents, grads)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities (N, C) or (N, C, d1, ...) (or unbatched (C,)) at class indices:

        loss_n = -w_{y_n} x_{n, y_n}   (0 where y_n = ignore_index);  'mean' divides by sum_n w_{y_n} over the
        samples not ignored (their count without weights), as torch (0 / 0 = nan when all are ignored).

    Backward: dx_{n, y_n} = -w_{y_n} g_n (/ that sum), every other entry 0. The class weights get no gradient (torch).
    """
    reduction = _reduction("nll_loss", reduction, size_average, reduce)
    t, _ = _check_class_target("nll_loss", input, target, weight, probabilities_allowed=False)
    unbatched, classes = input.ndim == 1, input.shape[0 if input.ndim == 1 else 1]
    xp = backend.array_module(input.data)
    x, row_shape = _class_rows(xp, input.data, unbatched)          # (M, C)
    _, valid, safe_y = _class_indices("nll_loss", xp, t, classes, ignore_index)  # (M,) each
    rows = xp.arange(x.shape[0])
    w_y = xp.where(valid, 1 if weight is None else weight.data[safe_y], 0).astype(x.dtype, copy=False)  # (M,)
    loss = (-w_y * x[rows, safe_y]).reshape(row_shape[1:] if unbatched else row_shape)

    def grads(g_loss):
        dx = xp.zeros_like(x)                                     # (M, C)
        dx[rows, safe_y] = -w_y * g_loss.reshape(-1)
        return (_rows_to_input(xp, dx, input.shape, row_shape, unbatched),)
    return _reduce(loss, reduction, "nll_loss", (input,), grads, count=w_y.sum() if reduction == "mean" else None)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """Binary cross-entropy of probabilities x in [0, 1]: loss = -w (t log x + (1 - t) log(1 - x)), each log
    clamped at -100 as torch (so x = 0 or 1 gives a finite loss); weight broadcasts to the input.

    Backward, as torch:  dx = w (x - t) / max(x (1 - x), 1e-12) g,   dt = w (log(1 - x) - log x) g (unclamped),
    dweight = (loss / w) g  (torch refuses the last one; minigrad computes it).
    """
    reduction = _reduction("binary_cross_entropy", reduction, size_average, reduce)
    _same_shape("binary_cross_entropy", input, target)
    check_same_dtype("binary_cross_entropy", input, target, weight)
    wd = data_broadcasting_to("binary_cross_entropy", "weight", weight, input)
    xp = backend.array_module(input.data)
    x, t = input.data, target.data
    if x.size and bool(((x < 0) | (x > 1)).any()):
        raise ValueError(f"binary_cross_entropy: all elements of the input (shape {input.shape}) must be between "
                         f"0 and 1, got values in [{float(x.min())}, {float(x.max())}]")
    with backend.np.errstate(divide="ignore"):                    # log(0) = -inf, clamped below
        log_x, log_1mx = xp.log(x), xp.log1p(-x)
    unweighted = -(t * xp.maximum(log_x, -100) + (1 - t) * xp.maximum(log_1mx, -100))
    loss = unweighted if wd is None else unweighted * wd

    def grads(g):
        gw = g if wd is None else g * wd
        dx = dt = dweight = None
        if input.requires_grad:
            dx = gw * (x - t) / xp.maximum(x * (1 - x), 1e-12)
        if target.requires_grad:
            dt = gw * (log_1mx - log_x)
        if weight is not None and weight.requires_grad:
            dweight = g * unweighted
        return (dx, dt) if weight is None else (dx, dt, dweight)
    parents = (input, target) if weight is None else (input, target, weight)
    return _reduce(loss.astype(x.dtype, copy=False), reduction, "binary_cross_entropy", parents, grads)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable formula. With l = 1 + (pos_weight - 1) t:
        loss = weight * ((1 - t) x + l * softplus(-x)),  softplus(-x) = log(1 + e^-|x|) + max(-x, 0).
    Backward: dx = weight * ((1 - t) - l * sigmoid(-x)) g (= weight (sigmoid(x) - t) g without pos_weight),
    dt = weight * (-x + (pos_weight - 1) softplus(-x)) g,  dweight = (loss / weight) g,
    dpos_weight = weight t softplus(-x) g  (torch refuses the last two; minigrad computes them).
    """
    reduction = _reduction("binary_cross_entropy_with_logits", reduction, size_average, reduce)
    _same_shape("binary_cross_entropy_with_logits", input, target)
    check_same_dtype("binary_cross_entropy_with_logits", input, target, weight, pos_weight)
    wd = data_broadcasting_to("binary_cross_entropy_with_logits", "weight", weight, input)
    pw = data_broadcasting_to("binary_cross_entropy_with_logits", "pos_weight", pos_weight, input)
    xp = backend.array_module(input.data)
    x, t = input.data, target.data
    softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)    # softplus(-x)
    scale = 1 if pw is None else 1 + (pw - 1) * t
    unweighted = (1 - t) * x + scale * softplus_neg
    loss = unweighted if wd is None else unweighted * wd

    def grads(g):
        gw = g if wd is None else g * wd
        dx = dt = dweight = dpw = None
        if input.requires_grad:
            sig_neg = xp.exp(-(x + softplus_neg))                 # sigmoid(-x) = exp(-softplus(x))
            dx = gw * ((1 - t) - scale * sig_neg)
        if target.requires_grad:
            dt = gw * (-x if pw is None else (pw - 1) * softplus_neg - x)
        if weight is not None and weight.requires_grad:
            dweight = g * unweighted
        if pos_weight is not None and pos_weight.requires_grad:
            dpw = gw * t * softplus_neg
        return tuple(d for d, p in ((dx, input), (dt, target), (dweight, weight), (dpw, pos_weight))
                     if p is not None)
    parents = tuple(p for p in (input, target, weight, pos_weight) if p is not None)
    return _reduce(loss.astype(x.dtype, copy=False), reduction, "binary_cross_entropy_with_logits", parents, grads)


def _pointwise_loss(op, input, target, weight, reduction, size_average, reduce, value, derivative):
    """loss = weight * value(d), d = input - target; mean with weight divides by sum(weight), as torch."""
    reduction = _reduction(op, reduction, size_average, reduce)
    _same_shape(op, input, target)
    if weight is not None:
        _same_shape(op, input, weight, "weight")
    check_same_dtype(op, input, target, weight)
    xp = backend.array_module(input.data)
    diff = input.data - target.data
    unweighted = value(xp, diff)
    loss = unweighted if weight is None else unweighted * weight.data
    count = None if weight is None else weight.data.sum()
    # 'mean' with weights is sum(w l) / sum(w): the weight's gradient also goes through the denominator
    weighted_mean = loss.sum() / count if weight is not None and reduction == "mean" else 0

    def grads(g):
        gw = g if weight is None else g * weight.data
        dx = gw * derivative(xp, diff) if input.requires_grad or target.requires_grad else None
        out = [dx, None if dx is None else -dx]
        if weight is not None:
            out.append(g * (unweighted - weighted_mean) if weight.requires_grad else None)
        return tuple(out)
    parents = (input, target) if weight is None else (input, target, weight)
    return _reduce(loss, reduction, op, parents, grads, count=count)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """(x - t)^2 (times weight), reduced; d/dx = 2 (x - t) g, d/dt = -d/dx."""
    return _pointwise_loss("mse_loss", input, target, weight, reduction, size_average, reduce,
                           lambda xp, d: d * d, lambda xp, d: 2 * d)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """|x - t| (times weight), reduced; d/dx = sign(x - t) g (0 at x = t), d/dt = -d/dx."""
    return _pointwise_loss("l1_loss", input, target, weight, reduction, size_average, reduce,
                           lambda xp, d: xp.abs(d), lambda xp, d: xp.sign(d))


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL(target || model) with input = log q:  t (log t - input), 0 where t = 0
    (log_target: e^t (t - input)). reduction 'batchmean' divides the sum by input.size(0).

    Backward: d/dinput = -t (or -e^t);  d/dt = log t + 1 - input, 0 where t = 0 (or e^t (t + 1 - input)).
    """
    if reduction not in ("batchmean", "none", "mean", "sum"):
        raise ValueError(f"kl_div: reduction must be 'batchmean', 'none', 'mean' or 'sum', got {reduction!r}")
    if reduction != "batchmean":
        reduction = _reduction("kl_div", reduction, size_average, reduce)
    _same_shape("kl_div", input, target)
    check_same_dtype("kl_div", input, target)
    xp = backend.array_module(input.data)
    x, t = input.data, target.data
    if log_target:
        et = xp.exp(t)
        loss = et * (t - x)
    else:
        log_t = xp.log(xp.where(t == 0, 1, t))                    # t log t = 0 where t = 0
        loss = t * (log_t - x)

    def grads(g):
        dx = dt = None
        if input.requires_grad:
            dx = -g * (et if log_target else t)
        if target.requires_grad:
            dt = g * (et * (t + 1 - x) if log_target else xp.where(t == 0, 0, log_t + 1 - x))
        return dx, dt
    if reduction == "batchmean":
        return _reduce(loss, "mean", "kl_div", (input, target), grads, count=input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction, "kl_div", (input, target), grads)
