"""TransNormerBlock (TransNormerLLM) against a PyTorch twin written here from the paper and nanoTransNormer's layout.

The twin computes the attention in its naive form, ((Q K^T) * M) V with the decay mask M_ts = lambda^(t-s); the
minigrad block runs each of its three forms (naive, blocked = Lightning attention kernels, recurrent = one
position at a time) and must match it: output and the gradients of the input and of every parameter (LRPE's theta
included), float64 and float32, random upstream gradients, odd lengths. The kernels' own tests check the
attention core; these check the module around it.
"""
import pytest
import torch
import torch.nn.functional as TF

import minigrad as mg
from minigrad.backend import np
from book.efficient_attention import LRPE, TransNormerAttention, TransNormerBlock
from book.testing import check_module_against_torch, random_array


# ---- the twin -----------------------------------------------------------------------------------

def srms_norm(x, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def paper_slopes(H, layer, num_layers):
    """ALiBi's 2^(-8 (h+1) / H) for H a power of two, times 1 - layer / (L - 1) + 1e-5 (TransNormerLLM)."""
    scale = 1 - layer / (num_layers - 1) + 1e-5 if num_layers > 1 else 1.0
    return torch.tensor([2 ** (-8 * (h + 1) / H) * scale for h in range(H)], dtype=torch.float64)


class TorchLRPE(torch.nn.Module):
    def __init__(self, H, D):
        super().__init__()
        i = torch.arange(H * D, dtype=torch.float64)
        self.theta = torch.nn.Parameter((10000 ** (-2 * i / (H * D))).reshape(H, 1, D))

    def forward(self, x):
        angles = self.theta * torch.arange(x.shape[2], dtype=x.dtype)[:, None]   # (H, T, D)
        return torch.cat([x * torch.cos(angles), x * torch.sin(angles)], dim=-1)


class TorchTransNormerAttention(torch.nn.Module):
    def __init__(self, E, H, layer, num_layers, use_lrpe):
        super().__init__()
        self.H, self.D = H, E // H
        self.slopes = paper_slopes(H, layer, num_layers)
        self.qkvu_proj = torch.nn.Linear(E, 4 * E, bias=False)
        self.lrpe = TorchLRPE(H, E // H) if use_lrpe else None
        self.out_proj = torch.nn.Linear(E, E, bias=False)

    def forward(self, x):
        B, T, E = x.shape
        q, k, v, u = self.qkvu_proj(x).chunk(4, dim=-1)
        q, k, v = (t.reshape(B, T, self.H, self.D).transpose(1, 2) for t in (q, k, v))
        q, k = TF.silu(q), TF.silu(k)
        if self.lrpe is not None:
            q, k = self.lrpe(q), self.lrpe(k)
        distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]
        decay = torch.where(distance >= 0, torch.exp(-self.slopes[:, None, None] * distance.clamp(min=0)), 0.0)
        o = ((q @ k.transpose(-1, -2)) * decay.to(x.dtype)) @ v
        return self.out_proj(srms_norm(o.transpose(1, 2).reshape(B, T, E)) * u)


class TorchSGLU(torch.nn.Module):
    def __init__(self, E):
        super().__init__()
        self.l1, self.l2 = torch.nn.Linear(E, 2 * E, bias=False), torch.nn.Linear(E, 2 * E, bias=False)
        self.l3 = torch.nn.Linear(2 * E, E, bias=False)

    def forward(self, x):
        return self.l3(self.l1(x) * self.l2(x))


class TorchTransNormerBlock(torch.nn.Module):
    def __init__(self, E, H, layer=0, num_layers=1, use_lrpe=True):
        super().__init__()
        self.token_mixer = TorchTransNormerAttention(E, H, layer, num_layers, use_lrpe)
        self.channel_mixer = TorchSGLU(E)

    def forward(self, x):
        x = x + self.token_mixer(srms_norm(x))
        return x + self.channel_mixer(srms_norm(x))


# ---- the block against the twin -----------------------------------------------------------------

CONFIGS = {"lrpe": (4, 0, 1, True), "lrpe-layer-2-of-4": (2, 2, 4, True), "no-lrpe-last-layer": (4, 3, 4, False)}


@pytest.mark.parametrize("T", [13, 40])
@pytest.mark.parametrize("form", ["naive", "blocked", "recurrent"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_transnormer_block_matches_torch(config, form, T):
    H, layer, num_layers, use_lrpe = CONFIGS[config]
    torch.manual_seed(T)
    twin = TorchTransNormerBlock(16, H, layer, num_layers, use_lrpe)
    block = TransNormerBlock(16, H, layer, num_layers, use_lrpe)
    check_module_against_torch(block, twin, random_array((2, T, 16), seed=T), mg_kwargs=dict(form=form))


def test_attention_alone_matches_torch_and_its_slopes_are_the_papers():
    torch.manual_seed(0)
    twin = TorchTransNormerAttention(16, 4, 1, 3, True)
    attention = TransNormerAttention(16, 4, layer=1, num_layers=3)
    np.testing.assert_allclose(attention.slopes, twin.slopes.numpy(), rtol=1e-15)
    check_module_against_torch(attention, twin, random_array((2, 13, 16), seed=1))


def test_three_forms_agree_in_float64():
    block = TransNormerBlock(16, 4).double()
    x = mg.tensor(random_array((2, 13, 16), seed=2), requires_grad=True)
    results = []
    for form in ("naive", "blocked", "recurrent"):
        x.grad = None
        block.zero_grad()
        out = block(x, form=form)
        out.backward(random_array(out.shape, seed=3))
        results.append([out.data, x.grad.data] + [p.grad.data for p in block.parameters()])
    for naive, other in [(results[0], results[1]), (results[0], results[2])]:
        for a, b in zip(naive, other):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_step_by_step_decoding_equals_the_whole_sequence():
    block = TransNormerBlock(16, 2).double()
    x = mg.tensor(random_array((2, 9, 16), seed=4))
    state, steps = None, []
    for t in range(9):
        y, state = block.step(x[:, t], state)
        steps.append(y.data)
    kv, position = state
    assert position == 9 and kv.shape == (2, 2, 16, 8)                      # (B, H, 2D, D): fixed size
    np.testing.assert_allclose(np.stack(steps, axis=1), block(x, form="blocked").data, rtol=1e-10, atol=1e-12)


def test_lrpe_scores_depend_only_on_the_relative_position():
    """q'_s . k'_t = sum_i q_i k_i cos(theta_i (s - t)), whatever the offset."""
    lrpe = LRPE(2, 4, dtype=np.float64)
    rng = np.random.default_rng(5)
    q, k = mg.tensor(rng.standard_normal((1, 2, 1, 4))), mg.tensor(rng.standard_normal((1, 2, 1, 4)))
    theta = lrpe.theta.data[:, 0]                                               # (H, D)
    for s, t in [(3, 1), (10, 8), (7, 7), (2, 9)]:
        score = (lrpe(q, offset=s) * lrpe(k, offset=t)).sum(-1).data[0, :, 0]  # (H,)
        want = (q.data[0, :, 0] * k.data[0, :, 0] * np.cos(theta * (s - t))).sum(-1)
        np.testing.assert_allclose(score, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(theta.reshape(-1), 10000.0 ** (-2 * np.arange(8) / 8), rtol=1e-15)


@pytest.mark.parametrize("make, message", [
    (lambda: TransNormerBlock(10, 4), "multiple of num_heads"),
    (lambda: TransNormerBlock(8, 2)(mg.randn(1, 5, 8), form="chunked"), "form must be one of"),
    (lambda: TransNormerBlock(8, 2)(mg.randn(1, 5, 6)), r"expected x \(B, T, 8\)"),
    (lambda: TransNormerBlock(8, 2).step(mg.randn(1, 5, 8)), r"expected x \(B, 8\)"),
    (lambda: LRPE(2, 4)(mg.randn(1, 3, 5, 4)), r"expected x \(B, 2, T, 4\)"),
    (lambda: TransNormerBlock(8, 2, layer=2, num_layers=2), "layer < num_layers"),
])
def test_bad_input_is_explained(make, message):
    with pytest.raises(ValueError, match=message):
        make()
