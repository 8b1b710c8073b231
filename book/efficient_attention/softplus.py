"""Causal self-attention with softplus attention (LSSA) and its re-weighting (LSSAR), from Softplus Attention with
Re-weighting Boosts Length Extrapolation in Large Language Models (Gao & Spratling, 2025, arXiv:2501.13428).

A drop-in for GPT's CausalSelfAttention (book/models/gpt.py): the same projections and names (c_attn, c_proj,
so a GPT checkpoint loads when qk_norm=False), the same forward(x, kv_cache=None), and softmax replaced by LSSA
(power=None) or LSSAR (power=p), computed by `softplus_attention` (two-pass tiled kernels). The equations, and the
choices the paper leaves open, are in kernels/softplus_attention/__init__.py; here, causal, query i sees n_i = i + 1
keys. QK-norm (the paper uses it): q and k of each head pass an RMSNorm with a learned gain (q_norm, k_norm) before
the scores, which bounds q . k. scale = 1 / sqrt(D), or, with train_length L, 1 / (sqrt(D) log L), so that the
length scale is 1 / sqrt(D) at the training length (entropy invariance).

LSSAR needs no retraining: set `attn.power = 7` on a model trained with LSSA (power=None).
KV cache: the prefill (no cached positions) and then one new position per call, which sees every cached key
(query i of a longer chunk after cached positions would need a bottom-right causal mask the kernels lack).
"""
import math

from minigrad.nn.layers import Linear
from minigrad.nn.module import Module
from minigrad.nn.normalization import RMSNorm
from minigrad.nn.softplus_attention import softplus_attention


class SoftplusSelfAttention(Module):
    """x (B, T, E) -> (B, T, E). power: None (LSSA) or p >= 1 (LSSAR). qk_norm: RMSNorm on each head's q and k.
    train_length: the training length L for the entropy-invariant scale (None: scale 1 / sqrt(D))."""

    def __init__(self, embed_dim, num_heads, power=None, qk_norm=True, train_length=None, bias=True, device=None,
                 dtype=None, generator=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"SoftplusSelfAttention: embed_dim {embed_dim} must be a positive multiple of num_heads "
                             f"{num_heads}")
        if train_length is not None and train_length < 2:
            raise ValueError(f"SoftplusSelfAttention: train_length must be >= 2 (log L > 0), got {train_length}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.power, self.train_length = power, train_length
        self.scale = 1 / math.sqrt(self.head_dim) / (1 if train_length is None else math.log(train_length))
        kw = dict(bias=bias, device=device, dtype=dtype, generator=generator)
        self.c_attn = Linear(embed_dim, 3 * embed_dim, **kw)
        self.c_proj = Linear(embed_dim, embed_dim, **kw)
        if qk_norm:
            self.q_norm = RMSNorm(self.head_dim, device=device, dtype=dtype)
            self.k_norm = RMSNorm(self.head_dim, device=device, dtype=dtype)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x, kv_cache=None):
        """x (B, T, E); kv_cache: a layer cache with .length and .update(k, v) (gpt.LayerKVCache), extended here."""
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"SoftplusSelfAttention: expected x (B, T, {self.embed_dim}), got shape {x.shape}")
        B, T, E = x.shape
        H, D = self.num_heads, self.head_dim
        q, k, v = (t.reshape(B, T, H, D).transpose(1, 2) for t in self.c_attn(x).split(E, dim=2))  # (B, H, T, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        past = 0 if kv_cache is None else kv_cache.length
        if past and T != 1:
            raise ValueError(f"SoftplusSelfAttention: after {past} cached positions, feed one new position at a time; "
                             f"got {T}")
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)                                         # (B, H, past + T, D)
        y = softplus_attention(q, k, v, causal=not past, scale=self.scale, power=self.power)   # (B, H, T, D)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, E))

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, power={self.power}, "
                f"qk_norm={self.q_norm is not None}, train_length={self.train_length}")
