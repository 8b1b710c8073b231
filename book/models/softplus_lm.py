"""A decoder LM whose attention is selectable: softmax, LSSA or LSSAR, for chapter 07; LSSA and LSSAR are from
Softplus Attention with Re-weighting Boosts Length Extrapolation in Large Language Models (Gao & Spratling, 2025,
arXiv:2501.13428).

It is DecoderLM (book/models/decoder_lm.py: embeddings, pre-/post-LN blocks, FFN, head) with every block's
attention replaced by SelectableSelfAttention, which computes q, k, v as DecoderLM's attention does (same
parameter names, qkv and proj), optionally RMS-normalizes q and k per head (QK-norm, learned gains), rotates them
(RoPE), and then applies one of

    attention="softmax":   causal F.scaled_dot_product_attention (scale 1 / sqrt(D))
    attention="softplus":  causal F.softplus_attention, LSSA with power=None, LSSAR with power=p

(the softplus equations are in kernels/softplus_attention/__init__.py). The softplus scale is 1 / (sqrt(D) log L),
L = train_length, so that the length scale of query i, scale log(i + 1), is 1 / sqrt(D) at the training length
(entropy invariance); without train_length it is 1 / sqrt(D).
`set_power(p)` switches the re-weighting on (or off with None) in every layer of a trained model: LSSAR needs
no retraining.

With attention="softmax" and qk_norm=False the model is DecoderLM itself (same parameters, same outputs).
Position schemes: none, sinusoidal, learned (added to the embeddings by DecoderLM) and rope; ALiBi is refused
(it is a bias added to the scores, which softplus attention has no input for).
"""
import math
from dataclasses import dataclass

from minigrad import nn
from minigrad.nn import functional as F
from minigrad.nn.positional import RotaryEmbedding
from book.models.decoder_lm import DecoderLM, DecoderLMConfig

ATTENTIONS = ("softmax", "softplus")


@dataclass
class SoftplusLMConfig(DecoderLMConfig):
    attention: str = "softplus"    # softmax | softplus
    power: float = None            # None: LSSA; p >= 1: LSSAR (softplus only)
    qk_norm: bool = True           # RMSNorm on each head's q and k
    train_length: int = None       # L in s_i = log(i + 1) / (sqrt(D) log L); None: log(i + 1) / sqrt(D)

    def __post_init__(self):
        super().__post_init__()
        if self.attention not in ATTENTIONS:
            raise ValueError(f"SoftplusLMConfig: attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.position == "alibi":
            raise ValueError("SoftplusLMConfig: position 'alibi' is a bias on the scores, which softplus attention "
                             "has no input for; use none, sinusoidal, learned or rope")
        if self.power is not None and self.attention != "softplus":
            raise ValueError(f"SoftplusLMConfig: power (the LSSAR re-weighting) needs attention='softplus', got "
                             f"{self.attention!r}")
        if self.train_length is not None and self.train_length < 2:
            raise ValueError(f"SoftplusLMConfig: train_length must be >= 2 (log L > 0), got {self.train_length}")


class SelectableSelfAttention(nn.Module):
    """x (B, T, C) -> (B, T, C): causal softmax or softplus (LSSA / LSSAR) attention, see the module docstring."""

    def __init__(self, config: SoftplusLMConfig):
        super().__init__()
        D = config.d_model // config.n_head
        self.n_head, self.attention, self.power, self.dropout = config.n_head, config.attention, config.power, \
            config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.q_norm = nn.RMSNorm(D) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(D) if config.qk_norm else None
        self.rope = RotaryEmbedding(D, config.rope_base) if config.position == "rope" else None
        self.softplus_scale = 1 / math.sqrt(D) / (math.log(config.train_length) if config.train_length else 1)

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        q, k, v = (t.reshape(B, T, H, D).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))  # (B, H, T, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)                                 # unit RMS times a gain
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)                                     # rotated by position
        if self.attention == "softmax":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, D)
        else:
            y = F.softplus_attention(q, k, v, causal=True, scale=self.softplus_scale, power=self.power)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))                      # (B, T, C)

    def extra_repr(self):
        return f"attention={self.attention}, power={self.power}, qk_norm={self.q_norm is not None}"


class SoftplusLM(DecoderLM):
    """forward(idx (B, T), targets or None) -> (logits (B, T, vocab), loss or None), as DecoderLM."""

    def __init__(self, config: SoftplusLMConfig):
        super().__init__(config)
        for block in self.blocks:
            block.attn = SelectableSelfAttention(config)

    def set_power(self, power):
        """Switch the LSSAR re-weighting on (power p) or off (None) in every layer, without retraining."""
        if self.config.attention != "softplus":
            raise ValueError("SoftplusLM.set_power: the re-weighting applies to softplus attention, this model "
                             f"uses {self.config.attention!r}")
        for block in self.blocks:
            block.attn.power = power
