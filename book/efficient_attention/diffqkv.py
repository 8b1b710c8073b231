"""DiffQKV attention from Sigma: Differential Rescaling of Query, Key and Value for Efficient Language Models
(Lin et al., 2025, arXiv:2501.13629): keys and values compressed differently, queries augmented.

GQA shares each key/value head among a group of query heads, with as many key heads as value heads. DiffQKV
makes the two counts independent (and the head dims too): Hq query heads, Hk key heads, Hv value heads,

    query head h reads key head h // (Hq / Hk) and value head h // (Hq / Hv)      (= floor(h Hk / Hq), floor(h Hv / Hq))

computed by `flash_attention`'s head mapping, with no repeated copies of K or V. The KV cache of one layer then
holds, per token,

    Hk Dk + Hv Dv floats      (`kv_cache_size`; GQA 16/16 heads of 64: 2048, Sigma's 4 K / 16 V heads: 1280)

The paper's ablations: fewer key heads hurt less than fewer value heads, and a smaller key head dim is harmless.

Augmented Q (a switch, `augmented_q_dim`): the query projection gets an intermediate layer,
q = act(x W_1) W_2 with W_1: E -> augmented_q_dim, W_2: augmented_q_dim -> Hq Dk, act from `q_activation`
(None for a purely linear bottleneck), adding capacity on the query side to make up for the compressed keys. The
paper's text leaves the exact form open; we choose this two-layer bottleneck with a switchable nonlinearity, off
by default (tests/test_efficient_attention_diffqkv.py::test_augmented_q_is_a_switch).

The output of query head h has value head dim Dv; o_proj maps Hq Dv -> E. No positional encoding inside:
add it to the input (learned positions) or to q and k before a subclass calls the attention.
"""
from minigrad.nn import functional as F
from minigrad.nn.flash_attention import flash_attention
from minigrad.nn.layers import Linear
from minigrad.nn.module import Module

ACTIVATIONS = {None: lambda x: x, "silu": F.silu, "gelu": F.gelu, "relu": F.relu}


def kv_cache_size(num_key_heads, num_value_heads, key_head_dim, value_head_dim, seq_len=1, batch_size=1,
                  num_layers=1):
    """Floats in a KV cache: batch_size seq_len num_layers (Hk Dk + Hv Dv)."""
    return batch_size * seq_len * num_layers * (num_key_heads * key_head_dim + num_value_heads * value_head_dim)


class DiffQKVAttention(Module):
    """Causal (by default) self-attention x (B, T, E) -> (B, T, E) with num_heads query heads, num_key_heads key
    heads and num_value_heads value heads (each count divides num_heads); head_dim for q and k (default
    E / num_heads), value_head_dim for v (default head_dim). Parameters: q_proj (and q_aug when augmented_q_dim),
    k_proj, v_proj, o_proj."""

    def __init__(self, embed_dim, num_heads, num_key_heads, num_value_heads, head_dim=None, value_head_dim=None,
                 augmented_q_dim=None, q_activation="silu", causal=True, bias=False, device=None, dtype=None,
                 generator=None):
        super().__init__()
        for name, n in (("num_key_heads", num_key_heads), ("num_value_heads", num_value_heads)):
            if n < 1 or num_heads % n:
                raise ValueError(f"DiffQKVAttention: {name} {n} must divide num_heads {num_heads} (query head h reads "
                                 f"head h // (num_heads / {name}))")
        if head_dim is None and embed_dim % num_heads:
            raise ValueError(f"DiffQKVAttention: embed_dim {embed_dim} is not a multiple of num_heads {num_heads}; "
                             f"pass head_dim")
        if q_activation not in ACTIVATIONS:
            raise ValueError(f"DiffQKVAttention: q_activation must be one of {list(ACTIVATIONS)}, got {q_activation!r}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.num_key_heads, self.num_value_heads = num_key_heads, num_value_heads
        self.head_dim = embed_dim // num_heads if head_dim is None else head_dim
        self.value_head_dim = self.head_dim if value_head_dim is None else value_head_dim
        self.augmented_q_dim, self.q_activation, self.causal = augmented_q_dim, q_activation, causal
        kw = dict(bias=bias, device=device, dtype=dtype, generator=generator)
        if augmented_q_dim is None:
            self.q_aug = None
            self.q_proj = Linear(embed_dim, num_heads * self.head_dim, **kw)
        else:
            self.q_aug = Linear(embed_dim, augmented_q_dim, **kw)
            self.q_proj = Linear(augmented_q_dim, num_heads * self.head_dim, **kw)
        self.k_proj = Linear(embed_dim, num_key_heads * self.head_dim, **kw)
        self.v_proj = Linear(embed_dim, num_value_heads * self.value_head_dim, **kw)
        self.o_proj = Linear(num_heads * self.value_head_dim, embed_dim, **kw)

    def forward(self, x, key_padding_mask=None):
        """x (B, T, E); key_padding_mask: bool (B, T), True = a real token."""
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"DiffQKVAttention: expected x (B, T, {self.embed_dim}), got shape {x.shape}")
        B, T, _ = x.shape

        def heads(t, n):
            return t.reshape(B, T, n, -1).transpose(1, 2)                        # (B, n, T, d)
        hidden = x if self.q_aug is None else ACTIVATIONS[self.q_activation](self.q_aug(x))
        q = heads(self.q_proj(hidden), self.num_heads)                           # (B, Hq, T, Dk)
        k = heads(self.k_proj(x), self.num_key_heads)                            # (B, Hk, T, Dk)
        v = heads(self.v_proj(x), self.num_value_heads)                          # (B, Hv, T, Dv)
        y = flash_attention(q, k, v, causal=self.causal, key_padding_mask=key_padding_mask)  # (B, Hq, T, Dv)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.num_heads * self.value_head_dim))

    def kv_cache_size(self, seq_len=1, batch_size=1):
        """Floats this layer caches for seq_len tokens: batch_size seq_len (Hk Dk + Hv Dv)."""
        return kv_cache_size(self.num_key_heads, self.num_value_heads, self.head_dim, self.value_head_dim, seq_len,
                             batch_size)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, heads (q, k, v)=({self.num_heads}, {self.num_key_heads}, "
                f"{self.num_value_heads}), head_dim={self.head_dim}, value_head_dim={self.value_head_dim}, "
                f"augmented_q_dim={self.augmented_q_dim}")
