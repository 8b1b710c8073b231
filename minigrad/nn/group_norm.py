"""Group and instance normalization (re-exported by minigrad.nn.functional), LayerNorm's relatives for (N, C, *).

    GroupNorm (Wu & He, 2018): split the C channels of each sample into G groups and normalize each group over its
    channels and positions:  y = (x - mean_g) / sqrt(var_g + eps) * w_c + b_c.
    InstanceNorm (Ulyanov et al., 2016): the same with G = C, one channel of one sample at a time; it can also keep
    running averages of the statistics, as batch norm, and use them instead (use_input_stats=False).

Both view x as (N, G, M) and normalize over M; the input gradient is layer_norm's, normalization_backward over M.
"""
from minigrad import backend
from minigrad.ops.elementwise import check_same_dtype
from minigrad.tensor import record


def _check_channels(op, input, **per_channel):
    """Input (N, C, *) and each given tensor of shape (C,); returns C."""
    if input.ndim < 2:
        raise ValueError(f"{op}: input must have shape (N, C, *), got {input.shape}")
    channels = input.shape[1]
    for name, t in per_channel.items():
        if t is not None and t.shape != (channels,):
            raise ValueError(f"{op}: {name} of shape {t.shape} does not match the {channels} channels of the input "
                             f"of shape {input.shape}; expected ({channels},)")
    check_same_dtype(op, input, *per_channel.values())
    return channels


def _grouped(input, groups):
    """The input's array viewed as (N, groups, M), M = the rest of each group."""
    n, rest = input.shape[0], 1
    for s in input.shape[1:]:
        rest *= s
    return input.data.reshape(n, groups, rest // groups)


def _mean_var(x):
    """Mean and biased variance over the last axis, kept as a size-1 axis."""
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    return mean, (centered * centered).mean(axis=-1, keepdims=True)


def _grouped_norm(op, input, x, mean, var, weight, bias, eps, from_input):
    """y = (x - mean) / sqrt(var + eps) * w_c + b_c, x the input viewed as (N, G, M).

    from_input: mean and var are x's own statistics, so dx = normalization_backward(g_hat, x_hat, rstd, over M),
    g_hat = g * w; otherwise they are constants (running averages) and dx = g_hat * rstd.
    dw = sum over N and * of g * x_hat,   db = sum over N and * of g.
    """
    from minigrad.nn.functional import normalization_backward

    xp = backend.array_module(x)
    rstd = (1 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    x_hat = (x - mean) * rstd                                     # (N, G, M)
    channel_shape = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    w = None if weight is None else weight.data.reshape(channel_shape)
    out = x_hat.reshape(input.shape)
    out = out if w is None else out * w
    if bias is not None:
        out = out + bias.data.reshape(channel_shape)
    axes = (0,) + tuple(range(2, input.ndim))                     # all but the channels

    def backward(g):
        dx = dw = db = None
        if input.requires_grad:
            g_hat = (g if w is None else g * w).reshape(x.shape)  # (N, G, M)
            dx = normalization_backward(g_hat, x_hat, rstd, axes=2) if from_input else g_hat * rstd
            dx = dx.reshape(input.shape)
        if weight is not None and weight.requires_grad:
            dw = (g * x_hat.reshape(input.shape)).sum(axis=axes)
        if bias is not None and bias.requires_grad:
            db = g.sum(axis=axes)
        return tuple(d for d, t in ((dx, input), (dw, weight), (db, bias)) if t is not None)
    parents = tuple(t for t in (input, weight, bias) if t is not None)
    return record(out.astype(x.dtype, copy=False), parents, backward, op)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize input (N, C, *) over each of num_groups groups of C / num_groups channels (and all positions)."""
    channels = _check_channels("group_norm", input, weight=weight, bias=bias)
    if num_groups <= 0 or channels % num_groups:
        raise ValueError(f"group_norm: the {channels} channels of the input of shape {input.shape} do not split "
                         f"into num_groups={num_groups} equal groups")
    x = _grouped(input, num_groups)                               # (N, G, M)
    if input.shape[0] * x.shape[2] == 1:
        raise ValueError(f"group_norm: expected more than one value per group over the batch (torch's rule), got "
                         f"input of shape {input.shape} with num_groups={num_groups}")
    mean, var = _mean_var(x)
    return _grouped_norm("group_norm", input, x, mean, var, weight, bias, eps, from_input=True)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Normalize each channel of each sample of input (N, C, *) over its positions.

    use_input_stats: the input's own statistics; running_mean/var (if given) are updated in place with their average
    over the batch, r = (1 - momentum) r + momentum * mean_n(stat_nc), the variance unbiased (as torch).
    Otherwise the running statistics are used as constants.
    """
    channels = _check_channels("instance_norm", input, running_mean=running_mean, running_var=running_var,
                               weight=weight, bias=bias)
    x = _grouped(input, channels)                                 # (N, C, M)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: running_mean and running_var are required when use_input_stats=False")
        mean, var = running_mean.data.reshape(1, channels, 1), running_var.data.reshape(1, channels, 1)
        return _grouped_norm("instance_norm", input, x, mean, var, weight, bias, eps, from_input=False)
    count = x.shape[2]
    if count <= 1:
        raise ValueError(f"instance_norm: expected more than 1 spatial element when training, got input of shape "
                         f"{input.shape}")
    mean, var = _mean_var(x)                                      # (N, C, 1) each
    if running_mean is not None:
        running_mean.data *= 1 - momentum
        running_mean.data += momentum * mean.mean(axis=0).reshape(channels)
    if running_var is not None:
        running_var.data *= 1 - momentum
        running_var.data += (momentum * count / (count - 1)) * var.mean(axis=0).reshape(channels)
    return _grouped_norm("instance_norm", input, x, mean, var, weight, bias, eps, from_input=True)
