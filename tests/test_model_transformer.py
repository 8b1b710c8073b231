"""A 2-layer pre-LN GPT written once with minigrad.nn and once with torch.nn, with the same parameter names.

torch's state_dict loads into the minigrad model; the logits, the cross-entropy loss and the gradient of
every parameter must agree (float64 tightly, float32 realistically), with tied and untied output heads.
A few training steps (clip_grad_norm_, AdamW, warmup-cosine schedule) must then agree too.
"""
import math

import pytest
import torch

import minigrad as mg
from minigrad import nn, optim
from minigrad.backend import np
from minigrad.optim import lr_scheduler
from book.testing import TOLERANCES, assert_close

VOCAB, BLOCK, D_MODEL, N_HEAD, N_LAYER = 11, 8, 12, 3, 2
B, T = 2, 7  # T < BLOCK: the causal mask is sliced


def gpt_classes(tl):
    """The model over either library (tl: minigrad or torch), written once, as a reader would."""
    lib, functional = tl.nn, tl.nn.functional

    class CausalSelfAttention(lib.Module):
        def __init__(self):
            super().__init__()
            self.qkv = lib.Linear(D_MODEL, 3 * D_MODEL)
            self.proj = lib.Linear(D_MODEL, D_MODEL)
            future = tl.triu(tl.ones(BLOCK, BLOCK), diagonal=1)
            self.register_buffer("future", future.bool(), persistent=False)  # True above the diagonal

        def forward(self, x):
            Bx, Tx, C = x.shape
            hd = C // N_HEAD
            q, k, v = self.qkv(x).split(C, dim=2)                             # (B, T, C) each
            q, k, v = (t.reshape(Bx, Tx, N_HEAD, hd).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))          # (B, H, T, T)
            att = att.masked_fill(self.future[:Tx, :Tx], float("-inf"))
            att = att.softmax(dim=-1)
            y = (att @ v).transpose(1, 2).reshape(Bx, Tx, C)                  # (B, T, C)
            return self.proj(y)

    class MLP(lib.Module):
        def __init__(self):
            super().__init__()
            self.fc = lib.Linear(D_MODEL, 4 * D_MODEL)
            self.act = lib.GELU()
            self.proj = lib.Linear(4 * D_MODEL, D_MODEL)

        def forward(self, x):
            return self.proj(self.act(self.fc(x)))

    class Block(lib.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = lib.LayerNorm(D_MODEL)
            self.attn = CausalSelfAttention()
            self.ln_2 = lib.LayerNorm(D_MODEL)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(lib.Module):
        def __init__(self, tied):
            super().__init__()
            self.tok_emb = lib.Embedding(VOCAB, D_MODEL)
            self.pos_emb = lib.Embedding(BLOCK, D_MODEL)
            self.blocks = lib.ModuleList([Block() for _ in range(N_LAYER)])
            self.ln_f = lib.LayerNorm(D_MODEL)
            self.head = lib.Linear(D_MODEL, VOCAB, bias=False)
            if tied:
                self.head.weight = self.tok_emb.weight

        def forward(self, idx, targets):
            positions = tl.arange(idx.shape[1])
            x = self.tok_emb(idx) + self.pos_emb(positions)                  # (B, T, C)
            for block in self.blocks:
                x = block(x)
            logits = self.head(self.ln_f(x))                                  # (B, T, V)
            loss = functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
            return logits, loss

    return GPT


MGGPT, TorchGPT = gpt_classes(mg), gpt_classes(torch)


def _models(tied, dtype):
    torch.manual_seed(0)
    ref = TorchGPT(tied).double()
    for name, p in ref.named_parameters():  # LayerNorm's ones and zeros would hide mistakes
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            torch.nn.init.uniform_(p, 0.5, 1.5)
        elif name.endswith(("ln_1.bias", "ln_2.bias", "ln_f.bias")):
            torch.nn.init.normal_(p, std=0.1)
    ours = MGGPT(tied).to(np.dtype(dtype))  # cast first: load_state_dict copies into the existing dtype
    ours.load_state_dict(ref.state_dict())
    return ours, ref.to(getattr(torch, dtype))


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, VOCAB, size=(B, T)), rng.integers(0, VOCAB, size=(B, T))


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpt_logits_loss_and_every_gradient_match_torch(tied, dtype):
    ours, ref = _models(tied, dtype)
    names = [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == names
    assert ("head.weight" not in names) == tied  # a tied weight is one parameter, named where first seen
    assert list(ours.state_dict()) == list(ref.state_dict())
    idx, targets = _batch()
    logits, loss = ours(mg.tensor(idx), mg.tensor(targets))
    t_logits, t_loss = ref(torch.from_numpy(idx), torch.from_numpy(targets))
    tol = TOLERANCES[dtype]
    assert logits.dtype == np.dtype(dtype) and loss.shape == ()
    assert_close(f"[{dtype}] logits", logits.data, t_logits.detach().numpy(), **tol)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)
    loss.backward()
    t_loss.backward()
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert p.grad is not None and p.grad.dtype == p.dtype and p.grad.shape == p.shape, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, tp.grad.numpy(), **tol)


def test_gpt_training_steps_match_torch():
    """clip_grad_norm_ + AdamW (decay on 2-D weights only, two groups) + warmup-cosine, 4 steps, float64."""
    ours, ref = _models(tied=True, dtype="float64")

    def groups(model):
        params = list(model.named_parameters())
        return [{"params": [p for n, p in params if p.ndim >= 2], "weight_decay": 0.1},
                {"params": [p for n, p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = optim.AdamW(groups(ours), lr=3e-3, betas=(0.9, 0.95))
    t_opt = torch.optim.AdamW(groups(ref), lr=3e-3, betas=(0.9, 0.95))
    sched = lr_scheduler.get_cosine_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=4)
    cosine = lambda s: s / 2 if s < 2 else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - 2) / 2)))  # noqa: E731
    t_sched = torch.optim.lr_scheduler.LambdaLR(t_opt, cosine)
    for step in range(4):
        idx, targets = _batch(seed=step + 1)
        opt.zero_grad()
        t_opt.zero_grad()
        _, loss = ours(mg.tensor(idx), mg.tensor(targets))
        _, t_loss = ref(torch.from_numpy(idx), torch.from_numpy(targets))
        assert_close(f"loss at step {step}", loss.data, t_loss.detach().numpy(), **TOLERANCES["float64"])
        loss.backward()
        t_loss.backward()
        norm = nn.utils.clip_grad_norm_(ours.parameters(), 0.5)
        t_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        assert_close(f"grad norm at step {step}", norm.data, t_norm.numpy(), **TOLERANCES["float64"])
        opt.step()
        t_opt.step()
        sched.step()
        t_sched.step()
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_close(f"{name} after 4 steps", p.data, tp.detach().numpy(), **TOLERANCES["float64"])
