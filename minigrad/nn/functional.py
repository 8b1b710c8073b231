"""minigrad.nn.functional: layers and losses as functions, with torch.nn.functional's names and arguments.

    import minigrad.nn.functional as F
    loss = F.cross_entropy(F.linear(x, w, b), targets)

The workhorses of a transformer (linear, layer_norm, rms_norm, cross_entropy, embedding) are single
ops with a hand-written backward, not chains of small ops: fewer passes over memory, fewer
temporaries, and the formula the docstring states is the code that runs. Each one checks its
inputs' shapes and names itself, the shapes and what it expected when they are wrong.
"""
import math

from minigrad import backend
from minigrad.ops.elementwise import check_same_dtype, data_broadcasting_to, data_of
from minigrad.ops.elementwise import gelu, relu, sigmoid, silu, softplus, tanh  # noqa: F401  (re-exported)
from minigrad.ops.activations import (celu, elu, hardsigmoid, hardswish, hardtanh, leaky_relu,  # noqa: F401
                                    logsigmoid, mish, relu6, selu, softmin, softsign)
from minigrad.nn.attention import scaled_dot_product_attention  # noqa: F401  (re-exported)
# Fast attention variants on kernels/ (Numba CPU for NumPy data, Numba CUDA for CuPy data), re-exported:
from minigrad.nn.flash_attention import flash_attention  # noqa: F401
from minigrad.nn.lightning_attention import lightning_attention  # noqa: F401
from minigrad.nn.linear_attention import (elu_feature_map, linear_attention, linear_attention_step,  # noqa: F401
                                          taylor_feature_map)
from minigrad.nn.sliding_window_attention import sliding_window_attention  # noqa: F401
from minigrad.nn.softplus_attention import softplus_attention  # noqa: F401
from minigrad.nn.group_norm import group_norm, instance_norm  # noqa: F401
from minigrad.nn.losses import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,  # noqa: F401
                                kl_div, l1_loss, mse_loss, nll_loss)
from minigrad.ops.index import add_at_along
from minigrad.ops.reduce import log_softmax as _log_softmax
from minigrad.ops.reduce import normalize_dims
from minigrad.ops.reduce import softmax as _softmax
from minigrad.random import default_generator
from minigrad.tensor import Tensor, record


# ---------------------------------------------------------------------------------------------
# Activations (the ops, under torch.nn.functional's signatures)
# ---------------------------------------------------------------------------------------------

def _cast(input, dtype):
    return input if dtype is None else input.type(dtype)


def _softmax_dim(op, dim):
    if dim is None:
        raise TypeError(f"{op}: pass dim explicitly (torch's implicit choice of dim is deprecated)")
    return dim


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) along dim; fused backward dx = y * (g - sum(g * y))."""
    return _softmax(_cast(input, dtype), _softmax_dim("softmax", dim))


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """log_softmax(x) = x - logsumexp(x) along dim; fused backward dx = g - softmax(x) * sum(g)."""
    return _log_softmax(_cast(input, dtype), _softmax_dim("log_softmax", dim))


# ---------------------------------------------------------------------------------------------
# Linear and embedding
# ---------------------------------------------------------------------------------------------

def linear(input, weight, bias=None):
    """y = x W^T + b for x of shape (..., in), W (out, in), b (out,).

    Backward, with the batch dimensions flattened to M rows (X: (M, in), G: (M, out)):
        dX = G W,    dW = G^T X  (one GEMM over the whole batch),    db = sum over rows of G.
    """
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must have shape (out_features, in_features), got {weight.shape}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {input.shape} does not match weight of shape {weight.shape}: "
                         f"expected input's last dimension to be in_features={weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias of shape {bias.shape} does not match weight of shape {weight.shape}: "
                         f"expected ({weight.shape[0]},)")
    check_same_dtype("linear", input, weight, bias)
    out_features, in_features = weight.shape
    x2 = input.data.reshape(-1, in_features)                      # (M, in)
    out = x2 @ weight.data.T                                      # (M, out)
    if bias is not None:
        out += bias.data
    out = out.reshape(input.shape[:-1] + (out_features,))

    def backward(g):
        g2 = g.reshape(-1, out_features)                          # (M, out)
        dx = (g2 @ weight.data).reshape(input.shape) if input.requires_grad else None
        dw = g2.T @ x2 if weight.requires_grad else None
        db = g2.sum(axis=0) if bias is not None and bias.requires_grad else None
        return dx, dw, db
    parents = (input, weight) if bias is None else (input, weight, bias)
    return record(out, parents, backward, "linear")


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of the table: out[...] = weight[input[...]], shape input.shape + (embedding_dim,).

    Backward: dW[input[k]] += g[k] (a scatter-add: a token that occurs twice gets both gradients);
    the row padding_idx gets none. scale_grad_by_freq divides each row's gradient by its count in the batch.
    """
    if max_norm is not None or sparse:
        raise NotImplementedError("embedding: max_norm and sparse are not supported")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must have shape (num_embeddings, embedding_dim), got {weight.shape}")
    idx = data_of(input)
    if not backend.is_array(idx) or idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must be an integer tensor of indices, "
                        f"got {getattr(idx, 'dtype', type(idx))}")
    num, dim = weight.shape
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num):
        raise IndexError(f"embedding: indices in [{int(idx.min())}, {int(idx.max())}] are out of range for a weight "
                         f"of shape {weight.shape}; expected 0 <= index < {num}")
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx={padding_idx} must be within num_embeddings={num}")
        padding_idx %= num
    xp = backend.array_module(weight.data)
    flat = idx.reshape(-1)
    out = xp.take(weight.data, flat, axis=0).reshape(idx.shape + (dim,))

    def backward(g):
        g2 = g.reshape(-1, dim)                                   # (N, D)
        if scale_grad_by_freq:
            counts = xp.bincount(flat, minlength=num)
            g2 = g2 / counts[flat, None].astype(g.dtype)
        grad = add_at_along((num, dim), 0, flat[:, None], g2)    # (V, D)
        if padding_idx is not None:
            grad[padding_idx] = 0
        return (grad,)
    return record(out, (weight,), backward, "embedding")


def one_hot(tensor, num_classes=-1):
    """int64 tensor of shape tensor.shape + (num_classes,), 1 at each index (num_classes=-1: max + 1)."""
    idx = data_of(tensor)
    if not backend.is_array(idx) or idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: input must be an integer tensor, got {getattr(idx, 'dtype', type(idx))}")
    xp = backend.array_module(idx)
    if num_classes == -1:
        if idx.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor; pass num_classes")
        num_classes = int(idx.max()) + 1
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        raise ValueError(f"one_hot: class values in [{int(idx.min())}, {int(idx.max())}] are out of range for "
                         f"num_classes={num_classes}")
    return Tensor((idx[..., None] == xp.arange(num_classes)).astype(backend.int64))


# ---------------------------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------------------------

def _normalized_shape(op, input, normalized_shape, weight, bias=None):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or input.shape[input.ndim - len(shape):] != shape or len(shape) > input.ndim:
        raise ValueError(f"{op}: normalized_shape {shape} does not match the last dimensions of the input of "
                         f"shape {input.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != shape:
            raise ValueError(f"{op}: {name} of shape {t.shape} does not match normalized_shape {shape}")
    check_same_dtype(op, input, weight, bias)
    n = 1
    for s in shape:
        n *= s
    return n


def normalization_backward(g_hat, x_hat, rstd, axes, centered=True):
    """dx for x_hat = (x - mean) / sigma, with mean and sigma taken over `axes`:

        centered=True:   dx = (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)) / sigma    (layer_norm, batch_norm)
        centered=False:  dx = (g_hat - x_hat * mean(g_hat * x_hat)) / sigma                  (rms_norm: sigma = rms)

    g_hat is the upstream gradient times the weight, rstd = 1 / sigma (broadcastable to x_hat), and every
    mean is over `axes`: the last dims for layer_norm and rms_norm, all dims but the channels for batch_norm.
    The subtracted means make dx blind to what x_hat ignores: a shift of x (so dx sums to zero when
    centered) and, up to eps, a rescaling of x (so dx is orthogonal to x_hat).
    """
    dx = g_hat - x_hat * (g_hat * x_hat).mean(axis=axes, keepdims=True)
    if centered:
        dx -= g_hat.mean(axis=axes, keepdims=True)
    dx *= rstd
    return dx


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """y = x_hat * w + b,  x_hat = (x - mean) / sigma,  sigma = sqrt(var + eps), over the last dims.

    Fused backward (means over the normalized dims, g_hat = g * w), dx by normalization_backward:
        dx = (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)) / sigma
        dw = sum over the batch of g * x_hat,    db = sum over the batch of g.
    """
    n = _normalized_shape("layer_norm", input, normalized_shape, weight, bias)
    if input.data.size and backend.uses_cpu_kernels(input.data):
        return _layer_norm_cpu_kernel(input, n, weight, bias, eps)
    xp = backend.array_module(input.data)
    x = input.data.reshape(-1, n)                                 # (M, N)
    x_hat = x - x.mean(axis=1, keepdims=True)                     # centered, normalized in place below
    var = xp.einsum("ij,ij->i", x_hat, x_hat)[:, None] / n
    rstd = 1 / xp.sqrt(var + eps)                                 # (M, 1)
    x_hat *= rstd                                                 # (M, N)
    w = None if weight is None else weight.data.reshape(n)
    out = x_hat if w is None else x_hat * w                       # x_hat is kept for backward: no in-place on it
    if bias is not None:
        out = x_hat + bias.data.reshape(n) if w is None else xp.add(out, bias.data.reshape(n), out=out)

    def backward(g):
        g = g.reshape(-1, n)                                      # (M, N)
        dx = dw = db = None
        if input.requires_grad:
            g_hat = g if w is None else g * w
            dx = normalization_backward(g_hat, x_hat, rstd, axes=1).reshape(input.shape)
        if weight is not None and weight.requires_grad:
            dw = xp.einsum("ij,ij->j", g, x_hat).reshape(weight.shape)
        if bias is not None and bias.requires_grad:
            db = g.sum(axis=0).reshape(bias.shape)
        return tuple(d for d, t in ((dx, input), (dw, weight), (db, bias)) if t is not None)
    parents = tuple(t for t in (input, weight, bias) if t is not None)
    return record(out.reshape(input.shape), parents, backward, "layer_norm")


def _layer_norm_cpu_kernel(input, n, weight, bias, eps):
    """layer_norm on float32 CPU data with the fused Numba kernels (kernels/layernorm.py)."""
    from kernels.layernorm import layer_norm_backward, layer_norm_forward
    xp = backend.array_module(input.data)
    x = input.data.reshape(-1, n)                                 # (M, N)
    w = xp.ones(n, dtype=x.dtype) if weight is None else weight.data.reshape(n)
    b = xp.zeros(n, dtype=x.dtype) if bias is None else bias.data.reshape(n)
    out, mean, rstd = layer_norm_forward(x, w, b, eps)

    def backward(g):
        dx, dw, db = layer_norm_backward(x, w, mean, rstd, g.reshape(-1, n))
        grads = [dx.reshape(input.shape)]
        grads += [dw.reshape(weight.shape)] if weight is not None else []
        grads += [db.reshape(bias.shape)] if bias is not None else []
        return tuple(grads)
    parents = tuple(t for t in (input, weight, bias) if t is not None)
    return record(out.reshape(input.shape), parents, backward, "layer_norm")


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """y = x / rms(x) * w,  rms(x) = sqrt(mean(x^2) + eps) over the last dims (eps=None: the dtype's machine eps).

    Fused backward (x_hat = x / rms, g_hat = g * w), normalization_backward without centering:
        dx = (g_hat - x_hat * mean(g_hat * x_hat)) / rms,    dw = sum over the batch of g * x_hat.
    """
    n = _normalized_shape("rms_norm", input, normalized_shape, weight)
    xp = backend.array_module(input.data)
    eps = float(backend.np.finfo(input.dtype).eps) if eps is None else eps
    x = input.data.reshape(-1, n)                                 # (M, N)
    rstd = 1 / xp.sqrt(xp.einsum("ij,ij->i", x, x)[:, None] / n + eps)  # (M, 1)
    x_hat = x * rstd
    w = None if weight is None else weight.data.reshape(n)
    out = x_hat if w is None else x_hat * w

    def backward(g):
        g = g.reshape(-1, n)
        dx = dw = None
        if input.requires_grad:
            g_hat = g if w is None else g * w
            dx = normalization_backward(g_hat, x_hat, rstd, axes=1, centered=False).reshape(input.shape)
        if weight is not None and weight.requires_grad:
            dw = xp.einsum("ij,ij->j", g, x_hat).reshape(weight.shape)
        return (dx,) if weight is None else (dx, dw)
    parents = (input,) if weight is None else (input, weight)
    return record(out.reshape(input.shape), parents, backward, "rms_norm")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Per-channel normalization of input (N, C, *): y = (x - mean_c) / sqrt(var_c + eps) * w_c + b_c.

    training=True: batch statistics over every dim but 1; running_mean/var (if given) are updated in
    place, r = (1 - momentum) r + momentum * stat, with the unbiased variance (as torch). Backward is
    layer_norm's (normalization_backward) with the means taken over (N, *):
        dx = (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)) / sigma,  g_hat = g * w.
    training=False: the running statistics are constants, dx = g * w / sqrt(running_var + eps).
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must have shape (N, C, *), got {input.shape}")
    channels = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.shape != (channels,):
            raise ValueError(f"batch_norm: {name} of shape {t.shape} does not match the {channels} channels of "
                             f"the input of shape {input.shape}; expected ({channels},)")
    check_same_dtype("batch_norm", input, running_mean, running_var, weight, bias)
    xp = backend.array_module(input.data)
    axes = (0,) + tuple(range(2, input.ndim))
    stat_shape = (1, channels) + (1,) * (input.ndim - 2)
    count = input.data.size // channels
    x = input.data
    if training:
        if count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                             f"shape {input.shape}")
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(axis=axes, keepdims=True)
        with_grad = True
        if running_mean is not None:
            running_mean.data *= 1 - momentum
            running_mean.data += momentum * mean.reshape(channels)
        if running_var is not None:
            running_var.data *= 1 - momentum
            running_var.data += (momentum * count / (count - 1)) * var.reshape(channels)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are required when training=False")
        centered = x - running_mean.data.reshape(stat_shape)
        var = running_var.data.reshape(stat_shape)
        with_grad = False
    rstd = (1 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    x_hat = centered * rstd
    w = None if weight is None else weight.data.reshape(stat_shape)
    out = x_hat if w is None else x_hat * w
    if bias is not None:
        out = out + bias.data.reshape(stat_shape)

    def backward(g):
        dx = dw = db = None
        if input.requires_grad:
            g_hat = g if w is None else g * w
            if with_grad:
                dx = normalization_backward(g_hat, x_hat, rstd, axes)
            else:
                dx = g_hat * rstd
        if weight is not None and weight.requires_grad:
            dw = (g * x_hat).sum(axis=axes).reshape(weight.shape)
        if bias is not None and bias.requires_grad:
            db = g.sum(axis=axes).reshape(bias.shape)
        return tuple(d for d, t in ((dx, input), (dw, weight), (db, bias)) if t is not None)
    parents = tuple(t for t in (input, weight, bias) if t is not None)
    return record(out, parents, backward, "batch_norm")


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """x / max(||x||_p, eps) along dim (torch.nn.functional.normalize).

    Any p, as torch.linalg.vector_norm: p = 0 counts the non-zeros, p = +-inf is the max / min of |x|, other p
    (negative too) give (sum |x|^p)^(1/p).
    Backward, with d = max(n, eps):  dx = g / d - [n > eps] * (sum(g * x) / d^2) * dn/dx, where
    dn/dx = sign(x) |x|^(p-1) / n^(p-1)  (x / n for p = 2), 0 for p = 0, and for +-inf sign(x) at the entries
    that reach the max (min), shared evenly among ties.
    """
    if out is not None:
        raise NotImplementedError("normalize: out= is not supported")
    if math.isnan(p):
        raise ValueError(f"normalize: p must be a number, got {p}")
    xp = backend.array_module(input.data)
    axis = normalize_dims(dim, input.ndim, "normalize")[0] if input.ndim else 0
    x = input.data if input.ndim else input.data.reshape(1)
    n = _vector_norm(xp, x, p, axis)
    d = xp.maximum(n, eps).astype(x.dtype, copy=False)
    y = x / d

    def backward(g):
        g = g.reshape(x.shape)
        dx = g / d
        dot = ((g * x).sum(axis=axis, keepdims=True) / (d * d)) * (n > eps)
        dx -= dot * _norm_grad(xp, x, n, p, axis)
        return (dx.reshape(input.shape),)
    return record(y.reshape(input.shape), (input,), backward, "normalize")


def _vector_norm(xp, x, p, axis):
    """||x||_p along axis, kept as a size-1 dim (torch.linalg.vector_norm's p, 0 and +-inf included)."""
    if p == 2:
        return xp.sqrt((x * x).sum(axis=axis, keepdims=True))
    if p == 1:
        return xp.abs(x).sum(axis=axis, keepdims=True)
    if p == 0:
        return (x != 0).sum(axis=axis, keepdims=True).astype(x.dtype)
    if math.isinf(p):
        return (xp.abs(x).max if p > 0 else xp.abs(x).min)(axis=axis, keepdims=True)
    with backend.np.errstate(divide="ignore"):  # p < 0 and a zero entry: |0|^p = inf, so the norm is 0, as torch
        return (xp.abs(x) ** p).sum(axis=axis, keepdims=True) ** (1 / p)


def _norm_grad(xp, x, n, p, axis):
    """d ||x||_p / dx, zero where the norm or the entry is zero (torch's convention); for +-inf shared among ties."""
    safe = xp.where(n == 0, 1, n).astype(x.dtype, copy=False)
    if p == 2:
        return x / safe
    if p == 1:
        return xp.sign(x)
    if p == 0:
        return xp.zeros_like(x)
    if math.isinf(p):
        reached = xp.abs(x) == n                                    # the entries at the max (min)
        return xp.sign(x) * reached / reached.sum(axis=axis, keepdims=True)
    with backend.np.errstate(divide="ignore", invalid="ignore"):  # |0|^(p-1) for p < 1: masked out below
        grad = xp.sign(x) * xp.abs(x) ** (p - 1) / safe ** (p - 1)
    return xp.where((n == 0) | (x == 0), 0, grad).astype(x.dtype, copy=False)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """sum(x1 * x2) / (max(||x1||, eps) * max(||x2||, eps)) along dim, x1 and x2 broadcast.

    As in torch, each norm is clamped separately and the clamp passes the gradient through:
        d/dx1 = x2 / (n1c n2c) - out * x1 / (n1c n1)   (and symmetrically for x2).
    """
    check_same_dtype("cosine_similarity", x1, x2)
    try:
        shape = backend.np.broadcast_shapes(x1.shape, x2.shape)
    except ValueError:
        raise ValueError(f"cosine_similarity: shapes {x1.shape} and {x2.shape} do not broadcast") from None
    if not shape:
        raise ValueError("cosine_similarity: inputs must have at least 1 dimension")
    axis = normalize_dims(dim, len(shape), "cosine_similarity")[0]
    xp = backend.array_module(x1.data)
    a, b = xp.broadcast_to(x1.data, shape), xp.broadcast_to(x2.data, shape)
    n1, n2 = _vector_norm(xp, a, 2, axis), _vector_norm(xp, b, 2, axis)
    n1c, n2c = xp.maximum(n1, eps).astype(a.dtype), xp.maximum(n2, eps).astype(a.dtype)
    out = ((a / n1c) * (b / n2c)).sum(axis=axis, keepdims=True)

    def backward(g):
        g = xp.expand_dims(g, axis)
        da = db = None
        if x1.requires_grad:
            da = g * (b / (n1c * n2c) - out * _norm_grad(xp, a, n1, 2, axis) / n1c)
        if x2.requires_grad:
            db = g * (a / (n1c * n2c) - out * _norm_grad(xp, b, n2, 2, axis) / n2c)
        return da, db
    return record(xp.squeeze(out, axis), (x1, x2), backward, "cosine_similarity")


# ---------------------------------------------------------------------------------------------
# Dropout and padding
# ---------------------------------------------------------------------------------------------

def dropout(input, p=0.5, training=True, inplace=False, mask=None):
    """y = x * mask / (1 - p) with mask ~ Bernoulli(1 - p) (1 = keep); identity when not training.

    Pass `mask` (a keep-mask: bool or 0/1, broadcastable to the input) to reproduce another library's
    draw exactly; otherwise it is drawn from minigrad's default generator. Backward: g * mask / (1 - p).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    xp = backend.array_module(input.data)
    if mask is None:
        keep = backend.to_device(default_generator.uniform(input.shape, backend.float32) >= p, input.device)
    else:
        keep = data_broadcasting_to("dropout", "mask", mask, input)
    if p == 1.0:
        scale = xp.zeros(keep.shape, dtype=input.dtype)
    else:
        scale = keep.astype(input.dtype) * (1 / (1 - p))          # mask / (1 - p), in the input's dtype
    return record(input.data * scale, (input,), lambda g: (g * scale,), "dropout")


PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input, pad, mode="constant", value=None):
    """Pad the last len(pad) // 2 dims, torch's order: pad = (last_left, last_right, 2nd_last_left, ...).

    constant: `value` (0) around the input; negative amounts crop.
    reflect, replicate, circular (1 to 3 padded dims, on an input with one or two more dims: (C, W) or
    (N, C, W) for one, and so on): output position j of a dim of size n reads input position
        reflect:    |j - left| mirrored at n - 1 (the edge is not repeated; each pad < n)
        replicate:  clip(j - left, 0, n - 1)
        circular:   c + (j - max(left, 0)) mod m, over the part [c, c + m) that negative pads leave
                    (each pad <= m; torch reads uninitialized memory or raises beyond that, here it is an error)
    A padded dim must keep at least one position (torch returns an empty tensor for some such cases).
    Backward: every output gradient is added to the input position it was read from.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode must be one of {PAD_MODES}, got {mode!r}")
    pad = tuple(int(v) for v in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: pad {pad} must have an even length of at most 2 * ndim = {2 * input.ndim} "
                         f"for an input of shape {input.shape}")
    widths = [(0, 0)] * input.ndim
    for k in range(len(pad) // 2):
        widths[input.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    if mode == "constant":
        return _constant_pad(input, pad, widths, value)
    if value is not None:
        raise ValueError(f"pad: mode {mode!r} takes no value (only 'constant' does)")
    padded = len(pad) // 2
    if padded > 3 or input.ndim not in (padded + 1, padded + 2):
        raise ValueError(f"pad: mode {mode!r} pads 1 to 3 last dims of an input with one or two more dims; got "
                         f"{padded} padded dims for an input of shape {input.shape}")
    xp = backend.array_module(input.data)
    sources = [None if lo == hi == 0 else _pad_source(xp, n, lo, hi, mode, input.shape)
               for (lo, hi), n in zip(widths, input.shape)]                  # per dim: input position read
    out = input.data
    for d, source in enumerate(sources):
        if source is not None:
            out = xp.take(out, source, axis=d)

    def backward(g):
        for d in reversed(range(input.ndim)):
            if sources[d] is not None:
                shape = g.shape[:d] + (input.shape[d],) + g.shape[d + 1:]
                g = add_at_along(shape, d, sources[d].reshape((-1,) + (1,) * (g.ndim - d - 1)), g)
        return (g,)
    return record(out, (input,), backward, "pad")


def _pad_source(xp, n, left, right, mode, shape):
    """For one dim of size n padded by (left, right): the input position each output position reads."""
    kept = n - max(-left, 0) - max(-right, 0)                       # what negative pads leave
    if n + left + right <= 0 or mode == "circular" and kept <= 0:
        raise ValueError(f"pad: padding ({left}, {right}) leaves nothing of a dim of size {n} "
                         f"(input shape {shape})")
    if mode == "reflect" and max(left, right) >= n:
        raise ValueError(f"pad: mode 'reflect' needs each pad less than the dim's size {n}, got ({left}, {right}) "
                         f"for an input of shape {shape}")
    if mode == "circular" and max(left, right) > kept:
        raise ValueError(f"pad: mode 'circular' needs each pad at most the {kept} positions the negative pads leave "
                         f"of a dim of size {n}, got ({left}, {right}) for an input of shape {shape}")
    j = xp.arange(n + left + right)
    if mode == "replicate":
        return xp.clip(j - left, 0, n - 1)
    if mode == "reflect":
        t = xp.abs(j - left)
        return xp.where(t > n - 1, 2 * (n - 1) - t, t)
    return max(-left, 0) + (j - max(left, 0)) % kept


def _constant_pad(input, pad, widths, value):
    """mode='constant': crop the negative amounts, then surround with `value`."""
    xp = backend.array_module(input.data)
    crop = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in zip(widths, input.shape))
    if any(s.stop < s.start for s in crop):
        raise ValueError(f"pad: negative padding {pad} removes more than the input of shape {input.shape} holds")
    kept = input.data[crop]
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    out = xp.pad(kept, grow, mode="constant", constant_values=0 if value is None else value)
    inner = tuple(slice(lo, lo + n) for (lo, _), n in zip(grow, kept.shape))

    def backward(g):
        if kept.shape == input.shape:
            return (g[inner],)
        full = xp.zeros(input.shape, dtype=g.dtype)
        full[crop] = g[inner]
        return (full,)
    return record(out.astype(input.dtype, copy=False), (input,), backward, "pad")
