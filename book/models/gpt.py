"""A GPT (decoder-only transformer), the architecture of GPT-2, from Language Models are Unsupervised Multitask
Learners (Radford et al., 2019, OpenAI technical report), in minigrad, with nanoGPT's parameter names.

    x = wte(idx) + wpe(pos)                          # (B, T, C)
    for each block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))      (pre-LN)
    logits = lm_head(ln_f(x))                        # (B, T, vocab)

Causal self-attention:  softmax(Q K^T / sqrt(d) + M) V  with M = -inf above the diagonal.
Parameter names match nanoGPT (transformer.h.0.attn.c_attn.weight, ...), so its state_dicts load, and the
initialization is nanoGPT's: N(0, 0.02) for every weight matrix and embedding, zero biases, and
N(0, 0.02 / sqrt(2 n_layer)) for the projections that write into the residual stream (GPT-2's scaling).

lm_head is untied: its (vocab, C) weight is a parameter of its own, not the token embedding wte.weight.
GPT-2 and nanoGPT tie the two (Press & Wolf, 2017): both hold one C-vector per token, so sharing them
saves vocab * C parameters and trains each token's row from both ends (rare tokens gain most). Untied,
the model has those parameters twice: 2048 * 256 = 524,288 more with the default config (1/8 of the
4.2M that num_parameters() reports), 50257 * 768 = 38.6M more for GPT-2 small. A nanoGPT state_dict,
which lists the shared matrix under both names, still loads: into two copies that then train apart.
To tie, assign model.lm_head.weight = model.transformer.wte.weight.

KV cache (for generation): the keys and values of the positions already seen do not change when a token is
appended (attention is causal), so they can be kept instead of recomputed. With a KVCache,

    cache = KVCache(config.n_layer)
    logits, _ = model(prompt, kv_cache=cache)          # prefill: every prompt position, keys/values stored
    logits, _ = model(next_token, kv_cache=cache)      # one position: its query attends to the stored keys

the second call costs one position's work instead of the whole sequence's, and its logits equal the last
row of model(cat(prompt, next_token)) (up to floating-point rounding). New positions are numbered after the
cached ones; query i of T new tokens sees keys j <= past + i (a causal mask aligned bottom-right).
"""
import math
from dataclasses import dataclass

import minigrad
from minigrad import backend, nn
from minigrad.nn import functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 2048
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    bias: bool = True


class LayerKVCache:
    """One layer's cached keys and values, (B, H, S, D) each (None before the first call)."""

    def __init__(self):
        self.key = self.value = None

    @property
    def length(self):
        return 0 if self.key is None else self.key.shape[2]

    def update(self, key, value):
        """Append the new positions' keys and values (B, H, T, D); return all of them (B, H, S + T, D)."""
        if self.key is None:
            self.key, self.value = key, value
        else:
            if key.shape[:2] != self.key.shape[:2] or key.shape[3] != self.key.shape[3]:
                raise ValueError(f"KVCache.update: new keys of shape {key.shape} do not extend cached keys of "
                                 f"shape {self.key.shape}; expected the same (B, H, _, D)")
            self.key = minigrad.cat([self.key, key], dim=2)
            self.value = minigrad.cat([self.value, value], dim=2)
        return self.key, self.value


class KVCache:
    """Every layer's cached keys and values, and the number of positions they hold."""

    def __init__(self, n_layer):
        self.layers = [LayerKVCache() for _ in range(n_layer)]

    @property
    def length(self):
        return self.layers[0].length

    def __len__(self):
        return self.length


def causal_mask(queries, keys, past, xp):
    """(T, S) bool, True = may look: new query i sits at position past + i and sees keys j <= past + i."""
    return xp.arange(keys)[None, :] <= xp.arange(queries)[:, None] + past


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"CausalSelfAttention: n_embd {config.n_embd} is not divisible by n_head {config.n_head}")
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, kv_cache=None):
        """x (B, T, C); kv_cache: this layer's LayerKVCache, extended with the T new positions."""
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)                  # 3 x (B, T, C)
        q = q.reshape(B, T, H, D).transpose(1, 2)                  # (B, H, T, D)
        k = k.reshape(B, T, H, D).transpose(1, 2)                  # (B, H, T, D)
        v = v.reshape(B, T, H, D).transpose(1, 2)                  # (B, H, T, D)
        past = 0
        if kv_cache is not None:
            past = kv_cache.length
            k, v = kv_cache.update(k, v)                           # (B, H, past + T, D)
        dropout_p = self.dropout if self.training else 0.0
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)   # (B, H, T, D)
        else:  # T == 1 sees every key; T > 1 needs the bottom-right causal mask
            mask = None if T == 1 else causal_mask(T, past + T, past, backend.array_module(q.data))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)                     # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, kv_cache=None):
        x = x + self.attn(self.ln_1(x), kv_cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        """nanoGPT's initialization (see the module docstring); LayerNorms keep ones and zeros."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def num_parameters(self, exclude_embeddings=True):
        """The number of parameters; without the position embeddings by default, as nanoGPT reports it."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.transformer.wpe.weight.numel() if exclude_embeddings else total

    def forward(self, idx, targets=None, kv_cache=None):
        """idx (B, T) token ids -> logits (B, T, vocab), and the mean cross-entropy if targets are given.
        With a KVCache the T tokens are positions past..past+T-1 after the cached ones, and are cached too."""
        B, T = idx.shape
        past = 0 if kv_cache is None else kv_cache.length
        if past + T > self.config.block_size:
            what = f"sequence length {T}" if not past else f"{past} cached positions + {T} new ones"
            raise ValueError(f"GPT: {what} exceeds block_size {self.config.block_size}")
        if kv_cache is not None and len(kv_cache.layers) != self.config.n_layer:
            raise ValueError(f"GPT: the KVCache has {len(kv_cache.layers)} layers, the model {self.config.n_layer}")
        pos = minigrad.arange(past, past + T, device=idx.device)                 # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if kv_cache is None else kv_cache.layers[i])
        logits = self.lm_head(self.transformer.ln_f(x))                          # (B, T, vocab)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss
