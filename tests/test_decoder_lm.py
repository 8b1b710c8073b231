"""The configurable decoder (book/models/decoder_lm.py) against a torch twin written here with the same names.

torch's state_dict loads into the minigrad model; logits, loss and the gradient of every parameter are compared
(float64 tightly, float32 realistically) for each position scheme, both norms, both FFNs, pre-LN and post-LN,
including rope + rmsnorm + swiglu + pre-LN (a LLaMA-style block) and alibi + layernorm + gelu + post-LN.
RoPE (split halves, as Hugging Face LLaMA) and ALiBi (slopes as the paper's code) are written out in torch.
"""
import math

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as tF

import minigrad as mg
from minigrad.backend import np
from book.models.decoder_lm import DecoderLM, DecoderLMConfig
from book.testing import TOLERANCES, assert_close

VOCAB, MAX_LEN, B, T = 13, 12, 2, 9


def torch_slopes(n):
    if math.log2(n).is_integer():
        return [2 ** (-8 * (h + 1) / n) for h in range(n)]
    closest = 2 ** math.floor(math.log2(n))
    return torch_slopes(closest) + torch_slopes(2 * closest)[0::2][:n - closest]


class TorchDecoderLM(tnn.Module):
    def __init__(self, c: DecoderLMConfig):
        super().__init__()
        self.c = c
        self.tok_emb = tnn.Embedding(c.vocab_size, c.d_model)
        if c.position == "learned":
            self.pos_emb = tnn.Embedding(c.max_len, c.d_model)
        norm = (lambda: tnn.RMSNorm(c.d_model, eps=c.norm_eps)) if c.norm == "rmsnorm" else \
            (lambda: tnn.LayerNorm(c.d_model, eps=c.norm_eps, bias=c.bias))
        self.blocks = tnn.ModuleList()
        for _ in range(c.n_layer):
            block = tnn.Module()
            block.norm1 = norm()
            block.attn = tnn.Module()
            block.attn.qkv = tnn.Linear(c.d_model, 3 * c.d_model, bias=c.bias)
            block.attn.proj = tnn.Linear(c.d_model, c.d_model, bias=c.bias)
            block.norm2 = norm()
            block.ffn = tnn.Module()
            if c.ffn == "swiglu":
                block.ffn.w1 = tnn.Linear(c.d_model, c.ffn_hidden, bias=c.bias)
                block.ffn.w3 = tnn.Linear(c.d_model, c.ffn_hidden, bias=c.bias)
                block.ffn.w2 = tnn.Linear(c.ffn_hidden, c.d_model, bias=c.bias)
            else:
                block.ffn.linear1 = tnn.Linear(c.d_model, c.ffn_hidden, bias=c.bias)
                block.ffn.linear2 = tnn.Linear(c.ffn_hidden, c.d_model, bias=c.bias)
            self.blocks.append(block)
        if c.norm_first:
            self.norm_f = norm()
        self.head = tnn.Linear(c.d_model, c.vocab_size, bias=False)

    def sinusoidal(self, Tx, dtype):
        pos = torch.arange(Tx, dtype=torch.float64)[:, None]
        div = torch.exp(torch.arange(0, self.c.d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / self.c.d_model))
        pe = torch.zeros(Tx, self.c.d_model, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        return pe.to(dtype)

    def rope(self, x):
        Tx, D = x.shape[-2:]
        inv_freq = 1.0 / (self.c.rope_base ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
        freqs = torch.arange(Tx, dtype=torch.float64)[:, None] * inv_freq
        emb = torch.cat((freqs, freqs), -1)
        x1, x2 = x[..., :D // 2], x[..., D // 2:]
        return x * emb.cos().to(x.dtype) + torch.cat((-x2, x1), -1) * emb.sin().to(x.dtype)

    def attention(self, attn, x):
        Bx, Tx, C = x.shape
        H = self.c.n_head
        q, k, v = (t.reshape(Bx, Tx, H, C // H).transpose(1, 2) for t in attn.qkv(x).split(C, dim=2))
        if self.c.position == "rope":
            q, k = self.rope(q), self.rope(k)
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)                    # (B, H, T, T)
        i, j = torch.arange(Tx)[:, None], torch.arange(Tx)[None, :]
        if self.c.position == "alibi":
            slopes = torch.tensor(torch_slopes(H), dtype=x.dtype)[:, None, None]
            scores = scores - slopes * (i - j)
        scores = scores.masked_fill(j > i, float("-inf"))
        y = scores.softmax(-1) @ v
        return attn.proj(y.transpose(1, 2).reshape(Bx, Tx, C))

    def feed_forward(self, ffn, x):
        if self.c.ffn == "swiglu":
            return ffn.w2(tF.silu(ffn.w1(x)) * ffn.w3(x))
        return ffn.linear2(tF.gelu(ffn.linear1(x)))

    def forward(self, idx, targets):
        x = self.tok_emb(idx)
        if self.c.position == "learned":
            x = x + self.pos_emb(torch.arange(idx.shape[1]))
        elif self.c.position == "sinusoidal":
            x = x + self.sinusoidal(idx.shape[1], x.dtype)
        for blk in self.blocks:
            if self.c.norm_first:
                x = x + self.attention(blk.attn, blk.norm1(x))
                x = x + self.feed_forward(blk.ffn, blk.norm2(x))
            else:
                x = blk.norm1(x + self.attention(blk.attn, x))
                x = blk.norm2(x + self.feed_forward(blk.ffn, x))
        if self.c.norm_first:
            x = self.norm_f(x)
        logits = self.head(x)
        return logits, tF.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


CONFIGS = [
    dict(position="rope", norm="rmsnorm", ffn="swiglu", norm_first=True),       # LLaMA-style
    dict(position="alibi", norm="layernorm", ffn="gelu", norm_first=False),     # post-LN with ALiBi
    dict(position="sinusoidal", norm="layernorm", ffn="swiglu", norm_first=True, n_head=3),
    dict(position="learned", norm="rmsnorm", ffn="gelu", norm_first=False, bias=False),
    dict(position="none", norm="layernorm", ffn="gelu", norm_first=True),
    dict(position="alibi", norm="rmsnorm", ffn="swiglu", norm_first=True, n_head=6),  # slopes for H not a power of 2
]


def _config(options):
    return DecoderLMConfig(**{**dict(vocab_size=VOCAB, max_len=MAX_LEN, n_layer=2, n_head=2, d_model=12), **options})


@pytest.mark.parametrize("options", CONFIGS, ids=["-".join(str(v) for v in o.values()) for o in CONFIGS])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_decoder_lm_matches_torch_twin(options, dtype):
    config = _config(options)
    torch.manual_seed(0)
    ref = TorchDecoderLM(config).double()
    with torch.no_grad():  # norm weights away from (1, 0): ones and zeros hide mistakes
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else 0.1 * torch.randn_like(p))
    ours = DecoderLM(config).to(np.dtype(dtype))
    ours.load_state_dict(ref.state_dict())
    ref = ref.to(getattr(torch, dtype))
    names = [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == names
    rng = np.random.default_rng(1)
    idx = rng.integers(0, VOCAB, size=(B, T))
    targets = rng.integers(0, VOCAB, size=(B, T))
    targets[:, :2] = -100                                   # positions without a label are ignored
    logits, loss = ours(mg.tensor(idx), mg.tensor(targets))
    t_logits, t_loss = ref(torch.from_numpy(idx), torch.from_numpy(targets))
    tol = TOLERANCES[dtype]
    assert logits.dtype == np.dtype(dtype)
    assert_close(f"[{dtype}] logits", logits.data, t_logits.detach().numpy(), **tol)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)
    loss.backward()
    t_loss.backward()
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert p.grad is not None and p.grad.dtype == p.dtype and p.grad.shape == p.shape, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, tp.grad.numpy(), **tol)


def test_lengths_beyond_training():
    """Every scheme but learned positions runs past max_len; learned positions say why they cannot."""
    for position in ("none", "sinusoidal", "rope", "alibi"):
        logits, _ = DecoderLM(_config(dict(position=position)))(mg.zeros(1, 3 * MAX_LEN, dtype=mg.int64))
        assert logits.shape == (1, 3 * MAX_LEN, VOCAB) and np.isfinite(logits.data).all()
    with pytest.raises(ValueError, match="outside the table of 12 learned positions"):
        DecoderLM(_config(dict(position="learned")))(mg.zeros(1, MAX_LEN + 1, dtype=mg.int64))


def test_swiglu_width_matches_the_gelu_parameters_and_bad_configs_are_explained():
    count = lambda c: sum(p.data.size for p in DecoderLM(c).parameters())  # noqa: E731
    gelu, swiglu = count(_config(dict(ffn="gelu", d_model=48))), count(_config(dict(ffn="swiglu", d_model=48)))
    assert abs(swiglu - gelu) / gelu < 0.01
    with pytest.raises(ValueError, match="position must be one of"):
        _config(dict(position="relative"))
    with pytest.raises(ValueError, match="RoPE needs an even head size"):
        _config(dict(n_head=4, d_model=12))
