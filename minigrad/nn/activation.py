"""Activation layers: module wrappers of the elementwise functions, for use in Sequential."""
from minigrad.nn import functional as F
from minigrad.nn.module import Module


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x):
        return F.relu(x)


class GELU(Module):
    """x * Phi(x) (Hendrycks & Gimpel, 2016); approximate='tanh' uses the tanh formula of GPT-2."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """x * sigmoid(x) (also called swish)."""

    def forward(self, x):
        return F.silu(x)


class Tanh(Module):
    def forward(self, x):
        return x.tanh()


class Sigmoid(Module):
    def forward(self, x):
        return x.sigmoid()


class _AlongDim(Module):
    """An activation that normalizes along one dimension, `dim`."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    """exp(x_i) / sum_j exp(x_j) along `dim`."""

    def forward(self, x):
        return F.softmax(x, dim=self.dim)


class Softmin(_AlongDim):
    """softmax(-x) along `dim`: the smallest entries get the most weight."""

    def forward(self, x):
        return F.softmin(x, dim=self.dim)



# ---- activations with torch's `inplace` flag (accepted; minigrad computes out of place) -----------------

class _InplaceFlag(Module):
    """Holds the inplace flag and shows it in repr where torch does."""

    repr_shows_inplace = True

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def inplace_repr(self):
        return ", inplace=True" if self.inplace and self.repr_shows_inplace else ""

    def extra_repr(self):
        return self.inplace_repr().removeprefix(", ")


class _WithAlpha(_InplaceFlag):
    def __init__(self, alpha=1.0, inplace=False):
        super().__init__(inplace)
        self.alpha = alpha

    def extra_repr(self):
        return f"alpha={self.alpha}{self.inplace_repr()}"


class ELU(_WithAlpha):
    """x if x > 0 else alpha (e^x - 1)."""

    def forward(self, x):
        return F.elu(x, self.alpha)


class CELU(_WithAlpha):
    """max(0, x) + min(0, alpha (e^(x / alpha) - 1))."""

    def forward(self, x):
        return F.celu(x, self.alpha)


class SELU(_InplaceFlag):
    """SELU_SCALE * elu(x, SELU_ALPHA): self-normalizing."""

    def forward(self, x):
        return F.selu(x)


class Mish(_InplaceFlag):
    """x tanh(softplus(x))."""

    def forward(self, x):
        return F.mish(x)


class Hardsigmoid(_InplaceFlag):
    """min(max(x + 3, 0), 6) / 6."""

    repr_shows_inplace = False

    def forward(self, x):
        return F.hardsigmoid(x)


class Hardswish(_InplaceFlag):
    """x * min(max(x + 3, 0), 6) / 6."""

    repr_shows_inplace = False

    def forward(self, x):
        return F.hardswish(x)


class LeakyReLU(_InplaceFlag):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}{self.inplace_repr()}"


class Hardtanh(_InplaceFlag):
    """x clipped to [min_val, max_val]."""

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__(inplace)
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x):
        return F.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}{self.inplace_repr()}"


class ReLU6(Hardtanh):
    """min(max(x, 0), 6) = Hardtanh(0, 6)."""

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self):
        return _InplaceFlag.extra_repr(self)


class Softsign(Module):
    """x / (1 + |x|)."""

    def forward(self, x):
        return F.softsign(x)


class LogSigmoid(Module):
    """log(sigmoid(x))."""

    def forward(self, x):
        return F.logsigmoid(x)
