"""BASED's mixers against PyTorch twins written here from the paper and the official code's layout.

Twins: the Taylor feature map and the quadratic (masked) linear attention of BASED, a band-masked softmax for the
sliding window, nn.Conv1d(groups=E) for the short convolution. Each minigrad module gets its twin's state_dict;
outputs and the gradients of the input and of every parameter are compared in float64 and float32 under random
upstream gradients, at odd lengths. The recurrent-state formulas are checked against the states the recurrent
forms actually keep.
"""
import math

import pytest
import torch
import torch.nn.functional as TF

import minigrad as mg
from minigrad.backend import np
from minigrad.nn.linear_attention import linear_attention_step
from book.efficient_attention import (BaseConv, BasedLinearAttention, BasedMixer, ShortConvolution,
                                             SlidingWindowAttention)
from book.testing import check_module_against_torch, random_array


# ---- the twins ----------------------------------------------------------------------------------

def heads(x, H):
    B, T, _ = x.shape
    return x.reshape(B, T, H, -1).transpose(1, 2)


def merge(x):
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)


def taylor(x):
    d = x.shape[-1]
    outer = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(start_dim=-2)
    return torch.cat([torch.ones_like(x[..., :1]), x / d ** 0.25, outer / (math.sqrt(2) * math.sqrt(d))], dim=-1)


class TorchLinearAttention(torch.nn.Module):
    def __init__(self, E, H, feature_dim=16):
        super().__init__()
        self.H = H
        self.proj_q = torch.nn.Linear(E, H * feature_dim, bias=False)
        self.proj_k = torch.nn.Linear(E, H * feature_dim, bias=False)
        self.proj_v = torch.nn.Linear(E, E, bias=False)
        self.proj_o = torch.nn.Linear(E, E, bias=False)

    def forward(self, x):
        q, k = taylor(heads(self.proj_q(x), self.H)), taylor(heads(self.proj_k(x), self.H))
        v = heads(self.proj_v(x), self.H)
        y = torch.tril(q @ k.transpose(-1, -2)) @ v                              # BASED's quadratic form
        y = y / ((q * k.cumsum(dim=2)).sum(-1, keepdim=True) + 1e-12)
        return self.proj_o(merge(y))


class TorchSlidingWindow(torch.nn.Module):
    def __init__(self, E, H, window):
        super().__init__()
        self.H, self.window = H, window
        self.Wqkv = torch.nn.Linear(E, 3 * E)
        self.out_proj = torch.nn.Linear(E, E)

    def forward(self, x):
        q, k, v = (heads(t, self.H) for t in self.Wqkv(x).chunk(3, dim=-1))
        T = x.shape[1]
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        band = (j <= i) & (i - j < self.window)
        return self.out_proj(merge(TF.scaled_dot_product_attention(q, k, v, attn_mask=band)))


class TorchBaseConv(torch.nn.Module):
    def __init__(self, E, kernel_size=3):
        super().__init__()
        self.E = E
        self.in_proj = torch.nn.Linear(E, 2 * E)
        self.conv = torch.nn.Conv1d(E, E, kernel_size, groups=E, padding=kernel_size - 1, bias=False)
        self.out_proj = torch.nn.Linear(E, E)

    def forward(self, x):
        u1, u2 = self.in_proj(x).split(self.E, dim=-1)
        conv = self.conv(u1.transpose(1, 2))[..., :x.shape[1]].transpose(1, 2)
        return self.out_proj(TF.silu(conv) * u2)


class TorchBasedMixer(torch.nn.Module):
    def __init__(self, E, H, feature_dim, window, conv_kernel):
        super().__init__()
        self.linear = TorchLinearAttention(E, H, feature_dim)
        self.sliding = TorchSlidingWindow(E, H, window)
        self.conv = TorchBaseConv(E, conv_kernel) if conv_kernel else None

    def forward(self, x):
        y = self.linear(x) + self.sliding(x)
        return y if self.conv is None else y + self.conv(x)


# ---- modules against twins ----------------------------------------------------------------------

E, H = 16, 2
MODULES = {
    "linear-attention": (lambda: BasedLinearAttention(E, H), lambda: TorchLinearAttention(E, H)),
    "linear-attention-d'=4": (lambda: BasedLinearAttention(E, H, feature_dim=4), lambda: TorchLinearAttention(E, H, 4)),
    "sliding-window": (lambda: SlidingWindowAttention(E, H, window=5), lambda: TorchSlidingWindow(E, H, 5)),
    "base-conv": (lambda: BaseConv(E, kernel_size=3), lambda: TorchBaseConv(E, 3)),
    "mixer": (lambda: BasedMixer(E, H, feature_dim=8, window=7), lambda: TorchBasedMixer(E, H, 8, 7, 3)),
    "mixer-no-conv": (lambda: BasedMixer(E, H, window=4, conv_kernel=None), lambda: TorchBasedMixer(E, H, 16, 4, None)),
}


@pytest.mark.parametrize("T", [13, 40])
@pytest.mark.parametrize("name", list(MODULES))
def test_based_modules_match_torch(name, T):
    make_mg, make_torch = MODULES[name]
    torch.manual_seed(T)
    check_module_against_torch(make_mg(), make_torch(), 0.5 * random_array((2, T, E), seed=T))


class TorchShortConvolution(torch.nn.Module):
    """nn.Conv1d(C, C, k, groups=C, padding=k-1) on (B, T, C) inputs, cut to the first T outputs (causal)."""

    def __init__(self, C, kernel_size, bias):
        super().__init__()
        conv = torch.nn.Conv1d(C, C, kernel_size, groups=C, padding=kernel_size - 1, bias=bias)
        self.weight, self.bias, self.padding, self.groups = conv.weight, conv.bias, conv.padding, conv.groups

    def forward(self, x):
        y = TF.conv1d(x.transpose(1, 2), self.weight, self.bias, padding=self.padding, groups=self.groups)
        return y[..., :x.shape[1]].transpose(1, 2)


@pytest.mark.parametrize("kernel_size, bias", [(1, False), (3, True), (4, False)])
def test_short_convolution_is_a_causal_depthwise_conv1d(kernel_size, bias):
    torch.manual_seed(kernel_size)
    check_module_against_torch(ShortConvolution(6, kernel_size, bias=bias), TorchShortConvolution(6, kernel_size, bias),
                 random_array((2, 13, 6), seed=kernel_size))


# ---- recurrent-state sizes ----------------------------------------------------------------------

def test_state_sizes_follow_the_formulas():
    """E 64, 4 heads of 16, d' 16 (F = 273), window 64, kernel 3."""
    mixer = BasedMixer(64, 4, feature_dim=16, window=64, conv_kernel=3)
    assert mixer.linear.num_features == 273
    assert mixer.linear.state_size() == 4 * 273 * (16 + 1)
    assert mixer.sliding.state_size() == 2 * 63 * 64
    assert mixer.conv.state_size() == 2 * 64
    assert mixer.state_size() == 4 * 273 * 17 + 2 * 63 * 64 + 2 * 64
    assert BasedMixer(64, 4, conv_kernel=None).state_size() == 4 * 273 * 17 + 2 * 63 * 64


def test_linear_state_size_is_the_state_the_recurrent_form_keeps():
    attention = BasedLinearAttention(16, 2, feature_dim=4).double()
    x = mg.tensor(random_array((1, 5, 16), seed=6))
    q, k = (t.reshape(1, 5, 2, 4).transpose(1, 2) for t in (attention.proj_q(x), attention.proj_k(x)))
    v = attention.proj_v(x).reshape(1, 5, 2, 8).transpose(1, 2)
    state, outputs = None, []
    for t in range(5):
        o, state = linear_attention_step(q[:, :, t], k[:, :, t], v[:, :, t], state, feature_map="taylor")
        outputs.append(o)
    assert sum(s.numel() for s in state) == attention.state_size()
    recurrent = attention.proj_o(mg.stack(outputs, dim=2).transpose(1, 2).reshape(1, 5, 16))
    np.testing.assert_allclose(recurrent.data, attention(x).data, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda: BasedLinearAttention(10, 4), "multiple of num_heads"),
    (lambda: SlidingWindowAttention(8, 2, window=0), "window must be >= 1"),
    (lambda: ShortConvolution(4, 0), "kernel_size >= 1"),
    (lambda: BasedMixer(8, 2)(mg.randn(1, 5, 6)), r"BasedMixer: expected x \(B, T, 8\)"),
    (lambda: BaseConv(8)(mg.randn(5, 8)), r"BaseConv: expected x \(B, T, 8\)"),
])
def test_bad_input_is_explained(make, message):
    with pytest.raises(ValueError, match=message):
        make()
