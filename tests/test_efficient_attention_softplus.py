"""SoftplusSelfAttention (LSSA / LSSAR) against a PyTorch twin written here from the definitions.

The twin computes the whole (T, T) matrices: A = l1-normalized softplus(s_i q_i . k_j) under the causal mask with
s_i = scale log(i + 1), and for LSSAR W = relu((i + 1) A - 1)^p normalized (rows with nothing above uniform keep
A). The minigrad module (two-pass kernels inside) gets the twin's state_dict; outputs and the gradients of the
input and of every parameter (QK-norm gains included) are compared in float64 and float32 under random upstream
gradients, at odd lengths.
"""
import math

import pytest
import torch
import torch.nn.functional as TF

import minigrad as mg
from minigrad.backend import np
from book.efficient_attention import SoftplusSelfAttention
from book.testing import check_module_against_torch, random_array


# ---- the twin -----------------------------------------------------------------------------------

def torch_softplus_attention(q, k, v, scale, power=None):
    T = q.shape[2]
    n = torch.arange(1, T + 1, dtype=q.dtype)[:, None]                          # keys query i sees
    seen = torch.ones(T, T, dtype=torch.bool).tril()
    p = torch.where(seen, TF.softplus(scale * torch.log(n) * (q @ k.transpose(-1, -2))), 0.0)
    a = p / p.sum(-1, keepdim=True)
    if power is None:
        return a @ v
    u = torch.relu(n * a - 1)
    raw = u ** power
    total = raw.sum(-1, keepdim=True)
    uniform = u.amax(-1, keepdim=True) <= 0
    return torch.where(uniform, a, raw / torch.where(total == 0, 1.0, total)) @ v


class TorchSoftplusSelfAttention(torch.nn.Module):
    def __init__(self, E, H, power=None, qk_norm=True, train_length=None):
        super().__init__()
        self.H, self.D, self.power = H, E // H, power
        self.scale = 1 / math.sqrt(self.D) / (math.log(train_length) if train_length else 1)
        self.c_attn = torch.nn.Linear(E, 3 * E)
        self.c_proj = torch.nn.Linear(E, E)
        self.q_norm = torch.nn.RMSNorm(self.D) if qk_norm else None
        self.k_norm = torch.nn.RMSNorm(self.D) if qk_norm else None

    def forward(self, x):
        B, T, E = x.shape
        q, k, v = (t.reshape(B, T, self.H, self.D).transpose(1, 2) for t in self.c_attn(x).split(E, dim=2))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        y = torch_softplus_attention(q, k, v, self.scale, self.power)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, E))


CONFIGS = {  # (power, qk_norm, train_length)
    "LSSA": (None, True, None),
    "LSSA-no-qk-norm": (None, False, None),
    "LSSAR-p3": (3, True, None),
    "LSSAR-p7-train-length-16": (7, True, 16),
}


def _randomized(twin, seed):
    """Random QK-norm gains (they start at one), so that their gradients are tested on general values."""
    with torch.no_grad():
        for norm in (twin.q_norm, twin.k_norm):
            if norm is not None:
                noise = torch.randn(norm.weight.shape, generator=torch.Generator().manual_seed(seed))
                norm.weight.copy_(1 + 0.3 * noise)
    return twin


@pytest.mark.parametrize("T", [13, 40])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_softplus_self_attention_matches_torch(config, T):
    power, qk_norm, train_length = CONFIGS[config]
    torch.manual_seed(T)
    twin = _randomized(TorchSoftplusSelfAttention(16, 2, power, qk_norm, train_length), T)
    check_module_against_torch(SoftplusSelfAttention(16, 2, power, qk_norm, train_length), twin, random_array((2, T, 16), seed=T))


def test_lssar_switches_on_without_retraining():
    """Setting `power` on a trained LSSA layer changes the weights (sharper), not the parameters."""
    torch.manual_seed(0)
    twin = TorchSoftplusSelfAttention(16, 2, power=7)
    layer = SoftplusSelfAttention(16, 2).double()
    layer.load_state_dict(twin.double().state_dict())
    x = random_array((1, 13, 16), seed=1)
    lssa = layer(mg.tensor(x)).data
    layer.power = 7
    np.testing.assert_allclose(layer(mg.tensor(x)).data, twin(torch.tensor(x)).detach().numpy(), rtol=1e-10)
    assert not np.allclose(lssa, layer(mg.tensor(x)).data)


class _Cache:
    """A layer cache with GPT's interface: .length and .update(k, v) -> all keys and values."""

    def __init__(self):
        self.key = self.value = None

    @property
    def length(self):
        return 0 if self.key is None else self.key.shape[2]

    def update(self, key, value):
        if self.key is None:
            self.key, self.value = key, value
        else:
            self.key, self.value = mg.cat([self.key, key], dim=2), mg.cat([self.value, value], dim=2)
        return self.key, self.value


@pytest.mark.parametrize("power", [None, 3])
def test_kv_cache_decoding_equals_the_whole_sequence(power):
    layer = SoftplusSelfAttention(16, 2, power=power).double()
    x = mg.tensor(random_array((2, 11, 16), seed=2))
    cache = _Cache()
    chunks = [layer(x[:, :6], kv_cache=cache)] + [layer(x[:, t:t + 1], kv_cache=cache) for t in range(6, 11)]
    np.testing.assert_allclose(mg.cat(chunks, dim=1).data, layer(x).data, rtol=1e-10, atol=1e-12)
    assert cache.length == 11


def test_state_dict_names_are_nanogpts():
    layer = SoftplusSelfAttention(16, 2, qk_norm=False)
    assert list(layer.state_dict()) == ["c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias"]


@pytest.mark.parametrize("make, message", [
    (lambda: SoftplusSelfAttention(10, 4), "multiple of num_heads"),
    (lambda: SoftplusSelfAttention(8, 2, train_length=1), "train_length must be >= 2"),
    (lambda: SoftplusSelfAttention(8, 2)(mg.randn(1, 5, 6)), r"expected x \(B, T, 8\)"),
    (lambda: SoftplusSelfAttention(8, 2, power=0.5)(mg.randn(1, 5, 8)), "power"),
])
def test_bad_input_is_explained(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_chunk_after_cached_positions_is_refused():
    layer, cache = SoftplusSelfAttention(8, 2), _Cache()
    layer(mg.randn(1, 4, 8), kv_cache=cache)
    with pytest.raises(ValueError, match="one new position at a time"):
        layer(mg.randn(1, 2, 8), kv_cache=cache)
