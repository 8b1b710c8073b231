"""Basic layers: Linear, Embedding, Dropout, Identity.

Each layer owns its Parameters, initializes them as PyTorch does (drawing from minigrad's
generator, or `generator=` if given) and computes with `minigrad.nn.functional`.
"""
import math

from minigrad import backend
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.module import Module
from minigrad.tensor import Parameter


def empty_parameter(shape, dtype=None, device=None):
    """An uninitialized Parameter (float32 by default), to be filled by an init function."""
    xp = backend.module_for_device(device or "cpu")
    return Parameter(xp.empty(shape, dtype=dtype or backend.float32))


class Identity(Module):
    """Returns its input (a placeholder, e.g. for an optional norm)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features).

    Init (PyTorch's): W ~ kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)); b ~ the same bound.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, generator=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = empty_parameter((out_features, in_features), dtype, device)
        if bias:
            self.bias = empty_parameter((out_features,), dtype, device)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound, generator=generator)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)  # (..., in) -> (..., out)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: row i of `weight` (num_embeddings, embedding_dim) is the vector of token i.

    Init: N(0, 1). The row `padding_idx` starts at zero and receives no gradient.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, device=None, dtype=None, generator=None):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} is out of range for "
                                 f"{num_embeddings} embeddings")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.weight = empty_parameter((num_embeddings, embedding_dim), dtype, device)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.normal_(self.weight, generator=generator)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, indices):
        return F.embedding(indices, self.weight, self.padding_idx)  # (...) -> (..., embedding_dim)

    def extra_repr(self):
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class Dropout(Module):
    """Zero each element with probability p during training and scale the rest by 1/(1-p); identity in eval.

    forward(x, mask=None): pass a keep-mask to reproduce a given draw (e.g. PyTorch's).
    """

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x, mask=None):
        return F.dropout(x, self.p, self.training, mask=mask)

    def extra_repr(self):
        return f"p={self.p}"
