"""A decoder-only transformer whose parts can be swapped, for the experiments of chapter 02.

    x = tok_emb(idx) (+ pos_emb(0..T-1) for sinusoidal / learned positions)            # (B, T, C)
    pre-LN  (norm_first=True):   x = x + attn(norm1(x));    x = x + ffn(norm2(x));    then norm_f(x)
    post-LN (norm_first=False):  x = norm1(x + attn(x));    x = norm2(x + ffn(x))      (no final norm)
    logits = head(x)                                                                  # (B, T, vocab)

Attention is causal, softmax(Q K^T / sqrt(d) + M) V, and the position scheme decides where order enters:
    none                 no position information at all (only the causal mask breaks the symmetry);
    sinusoidal, learned  a vector added to the token embedding (Vaswani et al.; GPT-2);
    rope                 Q and K rotated by their positions (Su et al.), split-halves pairing;
    alibi                M = -m_h (i - j) for j <= i, -inf above the diagonal (Press et al.).
norm: LayerNorm or RMSNorm; ffn: W_2 GELU(W_1 x) (width 4C) or SwiGLU W_2 (SiLU(W_1 x) * W_3 x) (width 2/3 * 4C,
the same number of parameters).
"""
from dataclasses import dataclass

import minigrad
from minigrad import nn
from minigrad.nn import functional as F
from minigrad.nn.positional import (LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEmbedding,
                                    alibi_bias)
from minigrad.nn.transformer import FeedForward, SwiGLU, swiglu_hidden_size

POSITIONS = ("none", "sinusoidal", "learned", "rope", "alibi")


@dataclass
class DecoderLMConfig:
    vocab_size: int = 64
    max_len: int = 64          # rows of the learned position table; the other schemes run at any length
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int = 0              # 0: 4 d_model for gelu, swiglu_hidden_size(d_model) for swiglu
    position: str = "rope"     # none | sinusoidal | learned | rope | alibi
    norm: str = "layernorm"    # layernorm | rmsnorm
    ffn: str = "gelu"          # gelu | swiglu
    norm_first: bool = True    # pre-LN (True) or post-LN (False)
    bias: bool = True
    dropout: float = 0.0
    norm_eps: float = 1e-5
    rope_base: float = 10000.0

    def __post_init__(self):
        choices = dict(position=POSITIONS, norm=("layernorm", "rmsnorm"), ffn=("gelu", "swiglu"))
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"DecoderLMConfig: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"DecoderLMConfig: d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if self.position == "rope" and (self.d_model // self.n_head) % 2:
            raise ValueError(f"DecoderLMConfig: RoPE needs an even head size, got {self.d_model // self.n_head}")

    @property
    def ffn_hidden(self):
        if self.d_ff:
            return self.d_ff
        return 4 * self.d_model if self.ffn == "gelu" else swiglu_hidden_size(self.d_model)


def _norm(config):
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)


class SelfAttention(nn.Module):
    def __init__(self, config: DecoderLMConfig):
        super().__init__()
        self.n_head, self.position, self.dropout = config.n_head, config.position, config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.rope = RotaryEmbedding(config.d_model // config.n_head, config.rope_base) \
            if config.position == "rope" else None
        self._alibi = {}  # (T, dtype, device) -> the (H, T, T) bias, built once per length

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)                                     # 3 x (B, T, C)
        q = q.reshape(B, T, H, D).transpose(1, 2)                                 # (B, H, T, D)
        k = k.reshape(B, T, H, D).transpose(1, 2)                                 # (B, H, T, D)
        v = v.reshape(B, T, H, D).transpose(1, 2)                                 # (B, H, T, D)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)                                     # rotated by position
        dropout_p = self.dropout if self.training else 0.0
        if self.position == "alibi":
            key = (T, str(x.dtype), x.device)
            if key not in self._alibi:
                self._alibi[key] = alibi_bias(H, T, dtype=x.dtype, device=x.device)  # (H, T, T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self._alibi[key], dropout_p=dropout_p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)  # (B, H, T, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))                      # (B, T, C)


class DecoderBlock(nn.Module):
    def __init__(self, config: DecoderLMConfig):
        super().__init__()
        self.norm_first = config.norm_first
        self.norm1 = _norm(config)
        self.attn = SelfAttention(config)
        self.norm2 = _norm(config)
        if config.ffn == "swiglu":
            self.ffn = SwiGLU(config.d_model, config.ffn_hidden, bias=config.bias)
        else:
            self.ffn = FeedForward(config.d_model, config.ffn_hidden, activation="gelu", bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x):
        if self.norm_first:
            x = x + self.drop(self.attn(self.norm1(x)))
            return x + self.drop(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.ffn(x)))


class DecoderLM(nn.Module):
    """forward(idx (B, T), targets (B, T) or None) -> (logits (B, T, vocab), mean cross-entropy or None).

    Targets equal to -100 are ignored (positions without a label). Weights keep torch's default init."""

    def __init__(self, config: DecoderLMConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        if config.position == "learned":
            self.pos_emb = LearnedPositionalEmbedding(config.max_len, config.d_model)
        elif config.position == "sinusoidal":
            self.pos_emb = SinusoidalPositionalEmbedding(config.d_model)
        else:
            self.pos_emb = None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([DecoderBlock(config) for _ in range(config.n_layer)])
        self.norm_f = _norm(config) if config.norm_first else None
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, idx, targets=None):
        if idx.ndim != 2:
            raise ValueError(f"DecoderLM: expected token ids of shape (B, T), got {idx.shape}")
        B, T = idx.shape
        x = self.tok_emb(idx)                                                     # (B, T, C)
        if self.pos_emb is not None:
            positions = minigrad.arange(T, device=idx.device)                     # (T,)
            if isinstance(self.pos_emb, SinusoidalPositionalEmbedding):
                x = x + self.pos_emb(positions, dtype=x.dtype)                    # (B, T, C)
            else:
                x = x + self.pos_emb(positions)                                   # (B, T, C)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        if self.norm_f is not None:
            x = self.norm_f(x)
        logits = self.head(x)                                                     # (B, T, vocab)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
