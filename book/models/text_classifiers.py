"""Text classifiers: embedding -> BiGRU -> pooler -> classifier, with the pooler chosen by name.

Every pooler maps encoder states H (B, n, d) and a mask of real tokens (B, n) to a fixed-size vector and
the attention it used:  forward(hidden, mask) -> (pooled (B, out_features), attention (B, heads, n)).

    "mean"        mean pooling:  r = (1/n) sum_i h_i                       (attention: 1/n on every token)
    "additive"    single-head additive attention (Bahdanau et al., 2015, as a pooler):
                      e_i = v^T tanh(W h_i + b),  a = softmax(e),  r = sum_i a_i h_i
    "structured"  structured self-attention (Lin et al., 2017), r heads:
                      A = softmax(W_s2 tanh(W_s1 H^T)) (r, n),  M = A H (r, d) flattened
                  with the optional penalization P = ||A A^T - I||_F^2 (attention_penalty)
    "lama"        low-rank multi-head attention over a global context (book.models.lama.LAMA)

Pads get -inf scores (zero attention) and never reach the pooled vector. The encoder is a one-layer
bidirectional GRU run with packed-sequence semantics: a pad leaves the state unchanged, so the backward
direction starts at each sequence's last real token, as torch.nn.utils.rnn.pack_padded_sequence does,
and the outputs do not depend on the pads (their contents or their number).
"""
from dataclasses import dataclass

from minigrad import backend
from minigrad import nn
from minigrad.nn import functional as F
from minigrad.ops import cat
from minigrad.ops.elementwise import check_same_dtype
from minigrad.tensor import Tensor, record
from book.models.lama import LAMA, masked_attention, masked_mean, padding_mask, zero_pads


class MeanPooling(nn.Module):
    """r = (1/n) sum_i h_i over the real tokens: no parameters."""

    def __init__(self, input_dim):
        super().__init__()
        self.input_dim = self.out_features = input_dim

    def forward(self, hidden, mask=None):
        mask = padding_mask("MeanPooling", hidden, mask)
        weights = mask / mask.sum(axis=1, keepdims=True)                       # (B, n): 1/n on real tokens
        pooled = masked_mean(zero_pads(hidden, mask), mask)                    # (B, d)
        return pooled, Tensor(weights[:, None, :].astype(hidden.dtype))        # attention (B, 1, n)


class AdditiveAttention(nn.Module):
    """e_i = v^T tanh(W h_i + b), a = softmax over real tokens, r = sum_i a_i h_i.

    Parameters: proj (W, b: attention_dim x input_dim), v (1 x attention_dim, no bias)."""

    def __init__(self, input_dim, attention_dim, device=None, dtype=None, generator=None):
        super().__init__()
        self.input_dim, self.attention_dim, self.out_features = input_dim, attention_dim, input_dim
        self.proj = nn.Linear(input_dim, attention_dim, device=device, dtype=dtype, generator=generator)
        self.v = nn.Linear(attention_dim, 1, bias=False, device=device, dtype=dtype, generator=generator)

    def forward(self, hidden, mask=None):
        mask = padding_mask("AdditiveAttention", hidden, mask)
        hidden = zero_pads(hidden, mask)                                       # (B, n, d)
        scores = self.v(self.proj(hidden).tanh()).transpose(1, 2)              # (B, 1, n)
        attention = masked_attention(scores, mask)                             # (B, 1, n)
        pooled = attention @ hidden                                            # (B, 1, d)
        return pooled.reshape(hidden.shape[0], self.input_dim), attention


class StructuredSelfAttention(nn.Module):
    """A = softmax(W_s2 tanh(W_s1 H^T)) with r = num_heads rows, M = A H flattened (Lin et al., 2017).

    Parameters: ws1 (W_s1: attention_dim x input_dim), ws2 (W_s2: num_heads x attention_dim), no biases."""

    def __init__(self, input_dim, attention_dim, num_heads, device=None, dtype=None, generator=None):
        super().__init__()
        self.input_dim, self.attention_dim, self.num_heads = input_dim, attention_dim, num_heads
        self.out_features = num_heads * input_dim
        self.ws1 = nn.Linear(input_dim, attention_dim, bias=False, device=device, dtype=dtype, generator=generator)
        self.ws2 = nn.Linear(attention_dim, num_heads, bias=False, device=device, dtype=dtype, generator=generator)

    def forward(self, hidden, mask=None):
        mask = padding_mask("StructuredSelfAttention", hidden, mask)
        hidden = zero_pads(hidden, mask)                                       # (B, n, d)
        scores = self.ws2(self.ws1(hidden).tanh()).transpose(1, 2)             # (B, r, n)
        attention = masked_attention(scores, mask)                             # (B, r, n)
        pooled = attention @ hidden                                            # (B, r, d): M = A H
        return pooled.reshape(hidden.shape[0], self.out_features), attention


def attention_penalty(attention):
    """Lin et al.'s penalization ||A A^T - I||_F^2, averaged over the batch: A (B, r, n) -> scalar.

    It pushes the r heads towards different positions, each with its mass on few tokens."""
    if attention.ndim != 3:
        raise ValueError(f"attention_penalty: expected attention of shape (batch, heads, length), "
                         f"got {attention.shape}")
    xp = backend.array_module(attention.data)
    eye = Tensor(xp.eye(attention.shape[1], dtype=attention.dtype))            # (r, r)
    gram = attention @ attention.transpose(1, 2)                               # (B, r, r): A A^T
    return ((gram - eye) ** 2).sum(dim=(1, 2)).mean()


def _sigmoid(xp, v):
    return 0.5 * (1 + xp.tanh(0.5 * v))  # = 1 / (1 + e^-v), without overflow


def gru_scan(x_proj, weight_hh, bias_hh, keep, reverse=False):
    """A whole GRU direction as one op: x_proj (B, n, 3H) = W_ih x_t + b_ih for every t, keep (B, n) 0/1 array
    -> the states (B, n, H), in PyTorch's gate order r, z, n (see minigrad.nn.rnn), with pads carried over:

        r = sigma(x_r + W_hr h + b_hr)   z = sigma(x_z + W_hz h + b_hz)   u = tanh(x_n + r * (W_hn h + b_hn))
        h' = (1 - z) * u + z * h          h_t = h + k_t (h' - h)        (k_t = 0 on a pad: h_t = h)

    The loop runs on arrays and the backward is written out (backpropagation through time), so a step costs
    a few array operations instead of a dozen recorded ops. Backward, step t in reverse, with dh the gradient
    reaching h_t from the output and from step t+1:
        dh' = k dh;  du = dh' (1 - z);  dz = dh' (h - u);  da_n = du (1 - u^2);  da_z = dz z (1 - z);
        da_r = da_n (W_hn h + b_hn) r (1 - r);  dx_t = [da_r, da_z, da_n];  dg = [da_r, da_z, da_n * r];
        dh_prev = (1 - k) dh + dh' z + dg W_hh;  dW_hh = sum_t dg^T h_prev;  db_hh = sum_t dg.
    """
    B, n, three_h = x_proj.shape
    H = weight_hh.shape[1]
    if weight_hh.shape != (3 * H, H) or three_h != 3 * H or keep.shape != (B, n):
        raise ValueError(f"gru_scan: expected x_proj (B, n, 3H), weight_hh (3H, H) and keep (B, n), got "
                         f"{x_proj.shape}, {weight_hh.shape} and {keep.shape}")
    check_same_dtype("gru_scan", x_proj, weight_hh, bias_hh)
    xp = backend.array_module(x_proj.data)
    dtype = x_proj.dtype
    xs = xp.ascontiguousarray(x_proj.data.transpose(1, 0, 2))                        # (n, B, 3H), time-major
    ks = xp.ascontiguousarray(keep.T.astype(dtype))[:, :, None]                        # (n, B, 1)
    w, b = weight_hh.data, (bias_hh.data if bias_hh is not None else 0)
    steps = range(n - 1, -1, -1) if reverse else range(n)
    h_prev, r_all, z_all, u_all, hn_all, out = (xp.empty((n, B, H), dtype=dtype) for _ in range(6))
    h = xp.zeros((B, H), dtype=dtype)
    for t in steps:
        x, g = xs[t], h @ w.T + b                                                     # (B, 3H) each
        r = _sigmoid(xp, x[:, :H] + g[:, :H])
        z = _sigmoid(xp, x[:, H:2 * H] + g[:, H:2 * H])
        u = xp.tanh(x[:, 2 * H:] + r * g[:, 2 * H:])
        h_prev[t], r_all[t], z_all[t], u_all[t], hn_all[t] = h, r, z, u, g[:, 2 * H:]
        h = h + ks[t] * ((1 - z) * u + z * h - h)
        out[t] = h

    def backward(grad):
        g_t = grad.transpose(1, 0, 2)                                                 # (n, B, H)
        dx = xp.empty((n, B, 3 * H), dtype=dtype)                                     # d x_proj, time-major
        dgates = xp.empty_like(dx)                                                    # d (W_hh h + b_hh)
        dh = xp.zeros((B, H), dtype=dtype)
        for t in reversed(steps):
            r, z, u, k = r_all[t], z_all[t], u_all[t], ks[t]
            dh = dh + g_t[t]
            dh_new = k * dh
            da_n = dh_new * (1 - z) * (1 - u * u)
            da_z = dh_new * (h_prev[t] - u) * z * (1 - z)
            da_r = da_n * hn_all[t] * r * (1 - r)
            dx[t, :, :H], dx[t, :, H:2 * H], dx[t, :, 2 * H:] = da_r, da_z, da_n
            dgates[t, :, :2 * H], dgates[t, :, 2 * H:] = dx[t, :, :2 * H], da_n * r
            dh = (1 - k) * dh + dh_new * z + dgates[t] @ w
        flat = dgates.reshape(-1, 3 * H)                                              # (n B, 3H)
        dw = flat.T @ h_prev.reshape(-1, H) if weight_hh.requires_grad else None     # (3H, H)
        db = flat.sum(axis=0) if bias_hh is not None and bias_hh.requires_grad else None
        return (dx.transpose(1, 0, 2) if x_proj.requires_grad else None, dw, db)
    parents = (x_proj, weight_hh) + ((bias_hh,) if bias_hh is not None else ())
    return record(out.transpose(1, 0, 2), parents, lambda g: backward(g)[:len(parents)], "gru_scan")


def packed_bidirectional_gru(gru, x, mask):
    """A one-layer bidirectional nn.GRU over x (B, n, E) in which pads leave the state unchanged.

    Each direction runs h <- h + mask_t (GRU(x_t, h) - h) (gru_scan): on a pad the state is carried over,
    so the result equals pack_padded_sequence -> GRU -> pad_packed_sequence for right-padded batches (and
    skips pads anywhere in general). Returns (B, n, 2 hidden) with zeros at the pads."""
    if not (isinstance(gru, nn.GRU) and gru.bidirectional and gru.num_layers == 1 and gru.batch_first):
        raise ValueError(f"packed_bidirectional_gru: expected nn.GRU(..., num_layers=1, batch_first=True, "
                         f"bidirectional=True), got {gru!r}")
    if x.ndim != 3 or x.shape[2] != gru.input_size:
        raise ValueError(f"packed_bidirectional_gru: expected input (batch, length, {gru.input_size}), got {x.shape}")
    mask = padding_mask("packed_bidirectional_gru", x, mask)
    outputs = []
    for suffix, reverse in (("_l0", False), ("_l0_reverse", True)):
        x_proj = F.linear(x, getattr(gru, "weight_ih" + suffix), getattr(gru, "bias_ih" + suffix, None))  # (B, n, 3H)
        outputs.append(gru_scan(x_proj, getattr(gru, "weight_hh" + suffix), getattr(gru, "bias_hh" + suffix, None),
                                mask, reverse))                                 # (B, n, hidden)
    return zero_pads(cat(outputs, dim=2), mask)                                # (B, n, 2 hidden)


@dataclass
class TextClassifierConfig:
    vocab_size: int
    num_classes: int
    pooler: str = "lama"          # "mean" | "additive" | "structured" | "lama"
    embedding_dim: int = 32
    hidden_size: int = 32         # per GRU direction: the pooler sees d = 2 * hidden_size
    attention_dim: int = 32       # d_a of "additive" and "structured"
    num_heads: int = 4            # r of "structured", m of "lama"
    normalize_heads: bool = False  # LAMA's L2 normalization across heads (see book.models.lama)
    mlp_hidden: int = 64          # classifier: Linear -> ReLU -> Linear; 0 for a single Linear
    penalization_coef: float = 0.0  # adds coef * ||A A^T - I||_F^2 to the loss when > 0
    padding_idx: int = 0


POOLERS = ("mean", "additive", "structured", "lama")


def build_pooler(config: TextClassifierConfig, generator=None):
    d = 2 * config.hidden_size
    if config.pooler == "mean":
        return MeanPooling(d)
    if config.pooler == "additive":
        return AdditiveAttention(d, config.attention_dim, generator=generator)
    if config.pooler == "structured":
        return StructuredSelfAttention(d, config.attention_dim, config.num_heads, generator=generator)
    if config.pooler == "lama":
        return LAMA(d, config.num_heads, normalize_heads=config.normalize_heads, generator=generator)
    raise ValueError(f"TextClassifier: unknown pooler {config.pooler!r}; expected one of {POOLERS}")


class TextClassifier(nn.Module):
    """tokens (B, n) -> embedding (B, n, E) -> BiGRU (B, n, d) -> pooler (B, features) -> logits (B, classes).

    Parameter names: embedding.weight, encoder.weight_ih_l0[_reverse] ..., pooler.*, classifier.*
    (the same as a torch model built from torch.nn.Embedding, torch.nn.GRU, ... under these names)."""

    def __init__(self, config: TextClassifierConfig, generator=None):
        super().__init__()
        self.config = config
        kw = dict(generator=generator)
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.padding_idx, **kw)
        self.encoder = nn.GRU(config.embedding_dim, config.hidden_size, batch_first=True, bidirectional=True, **kw)
        self.pooler = build_pooler(config, generator)
        features = self.pooler.out_features
        if config.mlp_hidden:
            self.classifier = nn.Sequential(nn.Linear(features, config.mlp_hidden, **kw), nn.ReLU(),
                                            nn.Linear(config.mlp_hidden, config.num_classes, **kw))
        else:
            self.classifier = nn.Linear(features, config.num_classes, **kw)

    def mask_of(self, tokens):
        return (tokens.data if isinstance(tokens, Tensor) else tokens) != self.config.padding_idx

    def pool(self, tokens, mask=None):
        """tokens (B, n) ints -> (pooled (B, features), attention (B, heads, n)); mask defaults to tokens != pad."""
        if tokens.ndim != 2:
            raise ValueError(f"TextClassifier: expected tokens of shape (batch, length), got {tokens.shape}")
        mask = self.mask_of(tokens) if mask is None else mask
        hidden = packed_bidirectional_gru(self.encoder, self.embedding(tokens), mask)  # (B, n, d)
        return self.pooler(hidden, mask)

    def forward(self, tokens, targets=None, mask=None):
        """-> (logits (B, classes), loss or None): cross-entropy (+ penalization_coef * attention_penalty)."""
        pooled, attention = self.pool(tokens, mask)
        logits = self.classifier(pooled)                                       # (B, classes)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits, targets)
        if self.config.penalization_coef > 0:
            loss = loss + self.config.penalization_coef * attention_penalty(attention)
        return logits, loss
