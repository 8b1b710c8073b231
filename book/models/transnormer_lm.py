"""A small TransNormerLLM language model, from Scaling TransNormer to 175 Billion Parameters (Qin et al., 2023,
arXiv:2307.14995), for the experiments of chapter 07.

    x = embed(idx)                                          # (B, T, E), no position embedding: LRPE inside
    for l in 0 .. L-1:  x = TransNormerBlock_l(x)           # pre-norm: gated decayed linear attention, then SGLU
    logits = head(SRMSNorm(x))                              # (B, T, vocab)

Block l decays with TransNormerLLM's slopes for layer l of L (`transnormer_slopes`: lambda_h = e^(-slope_h),
lower layers decaying faster, the last one hardly at all). `decay=False` sets every slope to 0 (lambda = 1): the
token mixer becomes plain causal linear attention on the same features (slope 0 in the equations of
kernels/lightning_attention/__init__.py), with no denominator, while every parameter stays the same; the ablation
of the decay, nothing else changed.

The blocks are book.efficient_attention's (checked against a PyTorch twin); `form` picks the attention's
algorithm: "blocked" (Lightning attention kernels, O(T)), "naive" (the masked (T, T) decay matrix) or "recurrent"
(one position at a time). Weights keep the library's default (torch's) initialization.
"""
from dataclasses import dataclass

from minigrad.nn import functional as F
from minigrad.nn.layers import Embedding, Linear
from minigrad.nn.containers import ModuleList
from minigrad.nn.module import Module
from book.efficient_attention import SimpleRMSNorm, TransNormerBlock


@dataclass
class TransNormerLMConfig:
    vocab_size: int = 64
    embed_dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    hidden_features: int = None    # SGLU width; None: 2 embed_dim
    decay: bool = True             # False: every slope 0, causal linear attention without decay
    use_lrpe: bool = True


class TransNormerLM(Module):
    """forward(idx (B, T), targets (B, T) or None, form) -> (logits (B, T, vocab), mean cross-entropy or None)."""

    def __init__(self, config: TransNormerLMConfig, dtype=None, generator=None):
        super().__init__()
        self.config = config
        c = config
        self.embed = Embedding(c.vocab_size, c.embed_dim, dtype=dtype, generator=generator)
        self.layers = ModuleList([TransNormerBlock(c.embed_dim, c.num_heads, layer, c.num_layers, c.use_lrpe,
                                                   c.hidden_features, dtype=dtype, generator=generator)
                                  for layer in range(c.num_layers)])
        if not c.decay:
            for block in self.layers:
                block.token_mixer.slopes = [0.0] * c.num_heads                   # lambda = e^0 = 1: no decay
        self.final_norm = SimpleRMSNorm(c.embed_dim)
        self.head = Linear(c.embed_dim, c.vocab_size, bias=False, dtype=dtype, generator=generator)

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, targets=None, form="blocked"):
        if idx.ndim != 2:
            raise ValueError(f"TransNormerLM: expected token ids of shape (B, T), got {idx.shape}")
        B, T = idx.shape
        x = self.embed(idx)                                                       # (B, T, E)
        for block in self.layers:
            x = block(x, form)                                                    # (B, T, E)
        logits = self.head(self.final_norm(x))                                    # (B, T, vocab)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
