"""BASED, from Simple linear attention language models balance the recall-throughput tradeoff (Arora et al., 2024,
arXiv:2402.18668): linear attention with a Taylor feature map, a small sliding window of softmax attention, and
short gated convolutions; the recall it buys for a fixed recurrent state.

The parts, each a token mixer x (B, T, E) -> (B, T, E) with `state_size()`, the floats one sequence carries from
one decoding step to the next (per layer):

| module | computes | state_size() |
|---|---|---|
| `BasedLinearAttention` | `linear_attention`, Taylor map phi on d' = feature_dim (16) | H F (Dh + 1), F = 1+d'+d'^2 |
| | projections of q, k, normalized causal linear attention | (S, z per head) |
| `SlidingWindowAttention` | causal softmax attention over the last `window` positions (itself incl.) | 2 (window-1) E |
| `BaseConv` | out_proj(SiLU(conv(u1)) * u2), (u1, u2) = in_proj(x), depthwise causal conv, kernel 3 | (kernel - 1) E |
| `BasedMixer` | the three in parallel: linear(x) + sliding(x) (+ conv(x)) | the sum |

The equations are in the lower layers: linear attention in kernels/linear_attention/__init__.py, the Taylor map (the
2nd-order Taylor expansion of e^(q.k / sqrt(d'))) in minigrad/nn/linear_attention.py, the sliding window in
kernels/sliding_window_attention/__init__.py. Projecting to d' = 16 keeps the 273 features (and the state) small
while the head's value dim Dh stays E / H. The linear part recalls from the whole past through a fixed state; the
window recalls exactly, but only lately; the short convolution handles the local token patterns. The paper stacks
them as separate layers (mostly BaseConv, with linear-attention and sliding-window layers interleaved; window 64);
`BasedMixer` puts the same ingredients in one layer (branches summed), for small models; build interleaved stacks
from the parts. For comparison, a softmax attention layer's KV cache is 2 (T - 1) E floats for a sequence of T: it
grows with T; every state above does not.

Conventions versus the official code: zoology's sliding window with block_size b keeps b + 1 keys (b before
and the query itself): that is window = b + 1 here. Parameter names follow BASED (proj_q, proj_k, proj_v, proj_o;
in_proj, conv, out_proj; Wqkv, out_proj), so a torch twin's state_dict loads (`conv.weight` is (E, 1, kernel),
nn.Conv1d(E, E, kernel, groups=E)'s layout).
"""
import math

from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.layers import Linear, empty_parameter
from minigrad.nn.linear_attention import linear_attention
from minigrad.nn.module import Module
from minigrad.nn.sliding_window_attention import sliding_window_attention


def _check_input(op, x, embed_dim):
    if x.ndim != 3 or x.shape[-1] != embed_dim:
        raise ValueError(f"{op}: expected x (B, T, {embed_dim}), got shape {x.shape}")


def _check_heads(op, embed_dim, num_heads):
    if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
        raise ValueError(f"{op}: embed_dim {embed_dim} must be a positive multiple of num_heads {num_heads}")


def _split_heads(x, num_heads):
    """(B, T, H * D) -> (B, H, T, D)."""
    B, T, HD = x.shape
    return x.reshape(B, T, num_heads, HD // num_heads).transpose(1, 2)


def _merge_heads(x):
    """(B, H, T, D) -> (B, T, H * D)."""
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)


class ShortConvolution(Module):
    """Depthwise causal convolution over time: x (B, T, C) -> y (B, T, C),

        y_tc = sum_{j=0}^{k-1} weight[c, 0, j] x_{t-k+1+j, c}  (+ bias_c),    x_t = 0 for t < 0

    nn.Conv1d(C, C, k, groups=C, padding=k-1) truncated to the first T outputs, as BASED's ShortConvolution.
    Init: Conv1d's, U(-1/sqrt(k), 1/sqrt(k)) (fan-in k per channel).
    """

    def __init__(self, channels, kernel_size, bias=False, device=None, dtype=None, generator=None):
        super().__init__()
        if channels < 1 or kernel_size < 1:
            raise ValueError(f"ShortConvolution: need channels >= 1 and kernel_size >= 1, got {channels}, "
                             f"{kernel_size}")
        self.channels, self.kernel_size = channels, kernel_size
        bound = 1 / math.sqrt(kernel_size)
        self.weight = init.uniform_(empty_parameter((channels, 1, kernel_size), dtype, device), -bound, bound,
                                    generator=generator)
        if bias:
            self.bias = init.uniform_(empty_parameter((channels,), dtype, device), -bound, bound, generator=generator)
        else:
            self.bias = None

    def forward(self, x):
        _check_input("ShortConvolution", x, self.channels)
        T, k = x.shape[1], self.kernel_size
        padded = F.pad(x, (0, 0, k - 1, 0))                                      # (B, T + k - 1, C)
        y = sum(padded[:, j:j + T] * self.weight[:, 0, j] for j in range(k))     # (B, T, C)
        return y if self.bias is None else y + self.bias

    def extra_repr(self):
        return f"{self.channels}, kernel_size={self.kernel_size}, bias={self.bias is not None}"


class BaseConv(Module):
    """BASED's gated short convolution: out_proj(SiLU(conv(u1)) * u2), (u1, u2) = split(in_proj(x))."""

    def __init__(self, embed_dim, kernel_size=3, bias=True, device=None, dtype=None, generator=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype, generator=generator)
        self.embed_dim = embed_dim
        self.in_proj = Linear(embed_dim, 2 * embed_dim, bias=bias, **kw)
        self.conv = ShortConvolution(embed_dim, kernel_size, **kw)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, **kw)

    def forward(self, x):
        _check_input("BaseConv", x, self.embed_dim)
        u1, u2 = self.in_proj(x).split(self.embed_dim, dim=-1)                   # 2 x (B, T, E)
        return self.out_proj(F.silu(self.conv(u1)) * u2)

    def state_size(self):
        return (self.conv.kernel_size - 1) * self.embed_dim


class BasedLinearAttention(Module):
    """Causal linear attention with the Taylor feature map on feature_dim-dim projections of q and k."""

    def __init__(self, embed_dim, num_heads, feature_dim=16, eps=1e-12, device=None, dtype=None, generator=None):
        super().__init__()
        _check_heads("BasedLinearAttention", embed_dim, num_heads)
        kw = dict(bias=False, device=device, dtype=dtype, generator=generator)
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.feature_dim, self.eps = feature_dim, eps
        self.proj_q = Linear(embed_dim, num_heads * feature_dim, **kw)
        self.proj_k = Linear(embed_dim, num_heads * feature_dim, **kw)
        self.proj_v = Linear(embed_dim, embed_dim, **kw)
        self.proj_o = Linear(embed_dim, embed_dim, **kw)

    def forward(self, x):
        _check_input("BasedLinearAttention", x, self.embed_dim)
        H = self.num_heads
        q, k = _split_heads(self.proj_q(x), H), _split_heads(self.proj_k(x), H)   # (B, H, T, d')
        v = _split_heads(self.proj_v(x), H)                                      # (B, H, T, Dh)
        y = linear_attention(q, k, v, feature_map="taylor", causal=True, eps=self.eps)   # (B, H, T, Dh)
        return self.proj_o(_merge_heads(y))

    @property
    def num_features(self):
        """F = 1 + d' + d'^2, the Taylor map's output size."""
        return 1 + self.feature_dim + self.feature_dim ** 2

    def state_size(self):
        """H F (Dh + 1): per head the numerator state S = sum phi(k) v^T (F, Dh) and the denominator z (F,)."""
        return self.num_heads * self.num_features * (self.head_dim + 1)


class SlidingWindowAttention(Module):
    """Causal softmax self-attention over the last `window` positions (itself included), multi-head."""

    def __init__(self, embed_dim, num_heads, window=64, bias=True, device=None, dtype=None, generator=None):
        super().__init__()
        _check_heads("SlidingWindowAttention", embed_dim, num_heads)
        if window < 1:
            raise ValueError(f"SlidingWindowAttention: window must be >= 1, got {window}")
        kw = dict(bias=bias, device=device, dtype=dtype, generator=generator)
        self.embed_dim, self.num_heads, self.window = embed_dim, num_heads, window
        self.Wqkv = Linear(embed_dim, 3 * embed_dim, **kw)
        self.out_proj = Linear(embed_dim, embed_dim, **kw)

    def forward(self, x):
        _check_input("SlidingWindowAttention", x, self.embed_dim)
        q, k, v = (_split_heads(t, self.num_heads) for t in self.Wqkv(x).split(self.embed_dim, dim=-1))
        return self.out_proj(_merge_heads(sliding_window_attention(q, k, v, self.window)))

    def state_size(self):
        """2 (window - 1) E: the keys and values of the window's past positions."""
        return 2 * (self.window - 1) * self.embed_dim


class BasedMixer(Module):
    """One layer with BASED's three mixers in parallel: linear(x) + window(x) (+ conv(x) when conv_kernel)."""

    def __init__(self, embed_dim, num_heads, feature_dim=16, window=64, conv_kernel=3, device=None, dtype=None,
                 generator=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype, generator=generator)
        self.embed_dim = embed_dim
        self.linear = BasedLinearAttention(embed_dim, num_heads, feature_dim, **kw)
        self.sliding = SlidingWindowAttention(embed_dim, num_heads, window, **kw)
        self.conv = BaseConv(embed_dim, conv_kernel, **kw) if conv_kernel else None

    def forward(self, x):
        _check_input("BasedMixer", x, self.embed_dim)
        y = self.linear(x) + self.sliding(x)
        return y if self.conv is None else y + self.conv(x)

    def state_size(self):
        parts = [self.linear, self.sliding] + ([self.conv] if self.conv is not None else [])
        return sum(p.state_size() for p in parts)
