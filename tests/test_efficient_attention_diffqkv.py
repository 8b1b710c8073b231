"""DiffQKVAttention (Sigma) against a PyTorch twin that repeats the key and value heads and calls SDPA.

The twin materializes repeat_interleave copies of K and V (the plain GQA recipe, extended to different key and
value head counts) and runs torch's scaled_dot_product_attention; the minigrad module maps query heads to key and
value heads inside flash_attention without copies. Outputs and the gradients of the input and of every parameter
are compared in float64 and float32 under random upstream gradients, at odd lengths, for independent key / value
head counts and dims, with and without the augmented Q.
"""
import pytest
import torch
import torch.nn.functional as TF

import minigrad as mg
from minigrad.backend import np
from book.efficient_attention import DiffQKVAttention, kv_cache_size
from book.testing import check_module_against_torch, random_array


ACTIVATIONS = {None: lambda x: x, "silu": TF.silu, "gelu": TF.gelu}


class TorchDiffQKV(torch.nn.Module):
    def __init__(self, E, Hq, Hk, Hv, Dk, Dv, augmented_q_dim=None, q_activation="silu", causal=True):
        super().__init__()
        self.Hq, self.Hk, self.Hv, self.Dv, self.causal = Hq, Hk, Hv, Dv, causal
        self.activation = ACTIVATIONS[q_activation]
        self.q_aug = torch.nn.Linear(E, augmented_q_dim, bias=False) if augmented_q_dim else None
        self.q_proj = torch.nn.Linear(augmented_q_dim or E, Hq * Dk, bias=False)
        self.k_proj = torch.nn.Linear(E, Hk * Dk, bias=False)
        self.v_proj = torch.nn.Linear(E, Hv * Dv, bias=False)
        self.o_proj = torch.nn.Linear(Hq * Dv, E, bias=False)

    def forward(self, x, key_padding_mask=None):
        B, T, _ = x.shape

        def heads(t, n):
            return t.reshape(B, T, n, -1).transpose(1, 2)
        hidden = x if self.q_aug is None else self.activation(self.q_aug(x))
        q = heads(self.q_proj(hidden), self.Hq)
        k = heads(self.k_proj(x), self.Hk).repeat_interleave(self.Hq // self.Hk, dim=1)   # repeat_kv
        v = heads(self.v_proj(x), self.Hv).repeat_interleave(self.Hq // self.Hv, dim=1)
        if key_padding_mask is None:
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            seen = torch.as_tensor(key_padding_mask)[:, None, None, :] & torch.ones(T, T, dtype=torch.bool).tril()
            y = TF.scaled_dot_product_attention(q, k, v, attn_mask=seen)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.Hq * self.Dv))


E = 16
CONFIGS = {  # (Hq, Hk, Hv, Dk, Dv, augmented_q_dim, q_activation, causal)
    "GQA": (4, 2, 2, 4, 4, None, None, True),
    "fewer-K-heads": (4, 1, 2, 4, 4, None, None, True),
    "fewer-V-heads": (4, 2, 1, 4, 4, None, None, True),
    "K-dim-4-V-dim-8": (4, 1, 4, 4, 8, None, None, True),
    "augmented-Q-silu": (4, 1, 2, 4, 4, 24, "silu", True),
    "augmented-Q-linear": (4, 2, 1, 6, 4, 24, None, True),
    "non-causal": (2, 1, 2, 8, 8, 12, "gelu", False),
}


def _modules(config):
    Hq, Hk, Hv, Dk, Dv, aug, act, causal = CONFIGS[config]
    return (DiffQKVAttention(E, Hq, Hk, Hv, Dk, Dv, augmented_q_dim=aug, q_activation=act, causal=causal),
            TorchDiffQKV(E, Hq, Hk, Hv, Dk, Dv, aug, act, causal))


@pytest.mark.parametrize("T", [13, 40])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_diffqkv_attention_matches_torch(config, T):
    torch.manual_seed(T)
    module, twin = _modules(config)
    check_module_against_torch(module, twin, random_array((2, T, E), seed=T))


def test_key_padding_mask_matches_torch():
    torch.manual_seed(1)
    module, twin = _modules("fewer-V-heads")
    keep = np.random.default_rng(3).random((2, 13)) > 0.3
    keep[:, 0] = True                                                 # every causal query sees a key
    check_module_against_torch(module, twin, random_array((2, 13, E), seed=4), forward_args=(keep,))


def test_kv_cache_sizes():
    """Sigma-1.5B's heads (4 K, 16 V of 64) against GQA with 16 / 16: 37.5% less KV cache per token."""
    gqa, sigma = kv_cache_size(16, 16, 64, 64), kv_cache_size(4, 16, 64, 64)
    assert (gqa, sigma) == (2048, 1280) and 1 - sigma / gqa == 0.375
    assert kv_cache_size(4, 16, 64, 64, seq_len=100, batch_size=2, num_layers=26) == 2 * 100 * 26 * 1280
    layer = DiffQKVAttention(E, 4, 1, 2, head_dim=4, value_head_dim=8)
    assert layer.kv_cache_size() == 1 * 4 + 2 * 8 and layer.kv_cache_size(seq_len=10, batch_size=3) == 30 * 20


def test_augmented_q_is_a_switch():
    plain = DiffQKVAttention(E, 4, 1, 2)
    augmented = DiffQKVAttention(E, 4, 1, 2, augmented_q_dim=32)
    assert [n for n, _ in plain.named_parameters()] == ["q_proj.weight", "k_proj.weight", "v_proj.weight",
                                                        "o_proj.weight"]
    assert augmented.q_aug.weight.shape == (32, E) and augmented.q_proj.weight.shape == (16, 32)
    assert augmented(mg.randn(1, 5, E)).shape == (1, 5, E)


@pytest.mark.parametrize("make, message", [
    (lambda: DiffQKVAttention(E, 4, 3, 2), "num_key_heads 3 must divide num_heads 4"),
    (lambda: DiffQKVAttention(E, 4, 2, 0), "num_value_heads 0 must divide"),
    (lambda: DiffQKVAttention(18, 4, 2, 2), "pass head_dim"),
    (lambda: DiffQKVAttention(E, 4, 2, 2, augmented_q_dim=8, q_activation="tanh"), "q_activation"),
    (lambda: DiffQKVAttention(E, 4, 2, 2)(mg.randn(1, 5, 8)), r"expected x \(B, T, 16\)"),
])
def test_bad_input_is_explained(make, message):
    with pytest.raises(ValueError, match=message):
        make()
