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


class Softmax(Module):
    """exp(x_i) / sum_j exp(x_j) along `dim`."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, dim=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"
