"""Normalization layers: LayerNorm, RMSNorm, BatchNorm1d, GroupNorm, InstanceNorm1d/2d (weights start at one, biases
at zero).

    LayerNorm (Ba et al., 2016):    y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias   over the last dims
    RMSNorm (Zhang & Sennrich, 2019): y = x / sqrt(mean(x^2) + eps) * weight
    BatchNorm (Ioffe & Szegedy, 2015): normalize each feature over the batch (and length) during
    training and update running averages; in eval mode use the running averages instead.
    GroupNorm and InstanceNorm normalize each sample alone (minigrad/nn/group_norm.py has their formulas).
"""
import numbers

from minigrad import backend
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.layers import empty_parameter
from minigrad.nn.module import Module
from minigrad.tensor import Tensor


def _shape(normalized_shape):
    return (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)


def _register_affine(module, shape, affine, bias, dtype, device):
    """The parameters weight (ones) and bias (zeros) of the given shape, each registered as None when left out."""
    module.register_parameter("weight", init.ones_(empty_parameter(shape, dtype, device)) if affine else None)
    module.register_parameter("bias", init.zeros_(empty_parameter(shape, dtype, device)) if affine and bias else None)


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape, self.eps, self.elementwise_affine = _shape(normalized_shape), eps, elementwise_affine
        _register_affine(self, self.normalized_shape, elementwise_affine, bias, dtype, device)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class RMSNorm(Module):
    """eps=None uses the machine epsilon of the input's dtype, as PyTorch does."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape, self.eps, self.elementwise_affine = _shape(normalized_shape), eps, elementwise_affine
        if elementwise_affine:
            self.weight = init.ones_(empty_parameter(self.normalized_shape, dtype, device))
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class _NormBase(Module):
    """Per-channel weight and bias (if affine) and running statistics (if track_running_stats), as torch."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None,
                 dtype=None, *, bias=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        _register_affine(self, (num_features,), affine, bias, dtype, device)
        xp = backend.module_for_device(device or "cpu")
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(xp.zeros(num_features, dtype=dtype or backend.float32)))
            self.register_buffer("running_var", Tensor(xp.ones(num_features, dtype=dtype or backend.float32)))
            self.register_buffer("num_batches_tracked", Tensor(xp.zeros((), dtype=backend.int64)))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_NormBase):
    """Input (N, C) or (N, C, L); statistics per channel C.

    Running averages: r <- (1 - momentum) r + momentum * batch_stat (the variance unbiased);
    momentum=None uses the cumulative average (momentum = 1 / num_batches_tracked).
    """

    def forward(self, x):
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d: expected input (N, {self.num_features}) or (N, {self.num_features}, L), "
                             f"got shape {x.shape}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                momentum = 1.0 / int(self.num_batches_tracked.item())
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, use_batch_stats, momentum, self.eps)


class GroupNorm(Module):
    """Input (N, C, *): each sample's channels in num_groups groups, each group normalized over its channels and
    positions, then a per-channel weight and bias (if affine)."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels={num_channels} must be divisible by num_groups={num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        _register_affine(self, (num_channels,), affine, bias, dtype, device)

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class _InstanceNorm(_NormBase):
    """Each channel of each sample normalized over its positions. With track_running_stats, training updates running
    averages (of the per-sample statistics, averaged over the batch) and eval mode uses them. An unbatched input
    (no N) is treated as a batch of one."""

    spatial_dims = 0

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False, device=None,
                 dtype=None, *, bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def forward(self, x):
        unbatched = self.spatial_dims + 1
        if x.ndim not in (unbatched, unbatched + 1):
            raise ValueError(f"{type(self).__name__}: expected a {unbatched}-d (unbatched) or {unbatched + 1}-d input, "
                             f"got shape {x.shape}")
        if x.ndim == unbatched:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.shape[1] != self.num_features and (self.affine or self.track_running_stats):
            raise ValueError(f"{type(self).__name__}: expected input with {self.num_features} channels (dim 1), "
                             f"got shape {x.shape}")
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               self.training or not self.track_running_stats,
                               0.0 if self.momentum is None else self.momentum, self.eps)


class InstanceNorm1d(_InstanceNorm):
    """Input (N, C, L) or (C, L)."""

    spatial_dims = 1


class InstanceNorm2d(_InstanceNorm):
    """Input (N, C, H, W) or (C, H, W)."""

    spatial_dims = 2
