"""Position prediction (MP3), from Position Prediction as an Effective Pretraining Strategy (Zhai et al., ICML 2022,
arXiv:2207.07611).

A Transformer without position embeddings cannot tell where a token sits: self-attention is permutation-equivariant.
MP3 turns that into a pretext task: predict every token's position from the content alone.

    visible    V ~ a random subset of the T tokens of each sequence, |V| = T - floor(eta T)   (eta: masking ratio)
    attention  every token is a query; keys and values come only from V, in every layer:
                   A_ij = softmax_j(q_i . k_j / sqrt(d) + M_ij),   M_ij = 0 if j in V else -inf
    head       z_i = W LayerNorm(h_i) + b  in R^T                      (one score per position)
    loss       L_MP3 = -1/T sum_i log softmax(z_i)[i]                  (cross-entropy, the label of token i is i)

Masking the keys makes the task harder (a token must place itself among few others) and cheaper; with eta = 0 every
token sees every other one. After pretraining, the model is fine-tuned with position embeddings added
(`OrderClassifier` here: learned embeddings initialised to zero, so fine-tuning starts from the pretrained function).

Choices where the paper leaves room (tested and stated in the notebook):
  - the visible subset is drawn per sequence (as the paper and lucidrains' vit-pytorch `mp3.py`), floor(eta n) of the
    n real tokens masked, at least one left visible; padding is never visible and never a target;
  - a query's own token is among its keys only if that token is visible: a masked token must place itself from the
    visible context and its own embedding (which reaches its output through the residual path);
  - keys and values are the visible tokens' hidden states of the current layer (the paper's masked self-attention).
    lucidrains' code instead keeps the *input* embeddings of the visible tokens as the keys of every layer
    (cross-attention to a fixed context); we follow the paper;
  - no other source of order: no causal mask, no padding pattern (padding is at the end but is never a key).

Every random draw is an argument: `draw_visible(attention_mask, eta, rng)` returns the bool subset, which the
tests pass to both minigrad and a PyTorch twin. `visible_key_mask` builds the (B * H, T, T) mask of
nn.MultiheadAttention's convention (True = the key is ignored).
"""
import minigrad
from minigrad import backend, nn
from minigrad.backend import np
from minigrad.nn import functional as F
from minigrad.nn import init

IGNORE_INDEX = -100


def _as_bool_rows(op, name, mask):
    mask = np.asarray(mask.data if isinstance(mask, minigrad.Tensor) else mask)
    if mask.ndim != 2:
        raise ValueError(f"{op}: {name} must be (B, T), got shape {mask.shape}")
    return mask.astype(bool)


def draw_visible(attention_mask, eta, rng):
    """The visible subset of each row: bool (B, T), True on T_b - floor(eta T_b) of the T_b real tokens.

    attention_mask: (B, T), 1 (or True) on real tokens, 0 on padding; every row needs one real token.
    eta: the masking ratio in [0, 1). rng: a NumPy Generator (one uniform per token ranks the tokens)."""
    real = _as_bool_rows("draw_visible", "attention_mask", attention_mask)
    if not 0.0 <= eta < 1.0:
        raise ValueError(f"draw_visible: eta must be in [0, 1) so that a token stays visible, got {eta}")
    lengths = real.sum(axis=1)                                              # (B,)
    if (lengths == 0).any():
        raise ValueError(f"draw_visible: rows {np.flatnonzero(lengths == 0).tolist()} of attention_mask "
                         f"{real.shape} have no real token")
    u = np.where(real, rng.random(real.shape), 2.0)                         # padding ranks last
    ranks = np.argsort(np.argsort(u, axis=1), axis=1)                       # (B, T) 0 = first masked
    num_masked = np.floor(eta * lengths).astype(np.int64)                   # (B,)
    return real & (ranks >= num_masked[:, None])


def visible_key_mask(visible, num_heads):
    """MultiheadAttention's attn_mask for MP3: bool (B * num_heads, T, T), True where query i may NOT look at key j,
    i.e. where token j is not visible; the same for every query and every head of a row (rows repeat per head,
    batch-major, as torch lays out a 3-D attn_mask)."""
    visible = _as_bool_rows("visible_key_mask", "visible", visible)
    if not visible.any(axis=1).all():
        raise ValueError(f"visible_key_mask: every row of visible {visible.shape} needs a visible token")
    B, T = visible.shape
    hidden = ~visible[:, None, None, :]                                     # (B, 1, 1, T)
    return np.broadcast_to(hidden, (B, num_heads, T, T)).reshape(B * num_heads, T, T)


def position_labels(attention_mask):
    """int64 (B, T): the label of token i is i; IGNORE_INDEX on padding."""
    real = _as_bool_rows("position_labels", "attention_mask", attention_mask)
    return np.where(real, np.arange(real.shape[1]), IGNORE_INDEX).astype(np.int64)


def position_loss(logits, attention_mask):
    """L_MP3: mean cross-entropy of the position scores logits (B, T, P), P >= T, against each token's index,
    over the real tokens."""
    labels = position_labels(attention_mask)
    B, T = labels.shape
    if logits.ndim != 3 or logits.shape[:2] != (B, T) or logits.shape[2] < T:
        raise ValueError(f"position_loss: logits of shape {logits.shape} do not fit attention_mask {(B, T)}; "
                         f"expected (B, T, P) with P >= T positions")
    return F.cross_entropy(logits.reshape(B * T, -1), minigrad.tensor(labels.reshape(-1)))


class MP3Encoder(nn.Module):
    """Token embeddings (no positions), a pre-LN Transformer encoder (torch.nn.TransformerEncoder's names, GELU, no
    dropout) with a final LayerNorm, and the MP3 head LayerNorm -> Linear(d, max_len).

    forward(ids (B, T), visible=None, embedding_offset=None) -> hidden states (B, T, d); visible (B, T) bool restricts
    the keys (None: all keys); embedding_offset (T, d), added to the token embeddings, is how OrderClassifier brings
    in positions. position_logits(hidden) -> (B, T, max_len)."""

    def __init__(self, vocab_size, max_len, d_model=64, nhead=2, num_layers=2, dim_feedforward=128):
        super().__init__()
        self.max_len, self.nhead = max_len, nhead
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.head_norm = nn.LayerNorm(d_model)
        self.position_head = nn.Linear(d_model, max_len)
        init.normal_(self.token_embedding.weight, 0.0, d_model ** -0.5)

    def forward(self, ids, visible=None, embedding_offset=None):
        ids = ids if isinstance(ids, minigrad.Tensor) else minigrad.tensor(np.asarray(ids))
        if ids.ndim != 2 or ids.shape[1] > self.max_len:
            raise ValueError(f"MP3Encoder: ids must be (B, T) with T <= max_len {self.max_len}, got {ids.shape}")
        x = self.token_embedding(ids)                                       # (B, T, d)
        if embedding_offset is not None:
            x = x + embedding_offset                                        # (B, T, d)
        mask = None if visible is None else visible_key_mask(visible, self.nhead)   # (B*H, T, T)
        return self.encoder(x, mask=mask, is_causal=False)                  # (B, T, d)

    def position_logits(self, hidden):
        return self.position_head(self.head_norm(hidden))                   # (B, T, max_len)

    def mp3_loss(self, ids, attention_mask, visible):
        """L_MP3 of a batch: ids (B, T), attention_mask (B, T), visible (B, T) bool from draw_visible."""
        visible = _as_bool_rows("MP3Encoder.mp3_loss", "visible", visible)
        real = _as_bool_rows("MP3Encoder.mp3_loss", "attention_mask", attention_mask)
        if visible.shape != real.shape or (visible & ~real).any():
            raise ValueError(f"MP3Encoder.mp3_loss: visible {visible.shape} must be a subset of the real tokens of "
                             f"attention_mask {real.shape}")
        return position_loss(self.position_logits(self(ids, visible)), real)


class OrderClassifier(nn.Module):
    """Fine-tuning with positions: the encoder plus learned position embeddings (initialised to zero) and a linear
    head on the mean of the real tokens' hidden states. forward(ids (B, T), attention_mask (B, T)) -> (B, classes).
    Padding is never a key (visible = attention_mask)."""

    def __init__(self, encoder: MP3Encoder, num_classes=2):
        super().__init__()
        d_model = encoder.token_embedding.embedding_dim
        self.encoder = encoder
        self.position_embedding = nn.Embedding(encoder.max_len, d_model)
        init.zeros_(self.position_embedding.weight)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, ids, attention_mask):
        real = _as_bool_rows("OrderClassifier", "attention_mask", attention_mask)
        B, T = real.shape
        positions = self.position_embedding(minigrad.tensor(np.arange(T)))  # (T, d)
        hidden = self.encoder(ids, visible=real, embedding_offset=positions)  # (B, T, d)
        weights = minigrad.tensor((real / real.sum(axis=1, keepdims=True)).astype(hidden.dtype))
        pooled = (hidden * weights.unsqueeze(-1)).sum(dim=1)                # (B, d)
        return self.classifier(pooled)                                      # (B, classes)
