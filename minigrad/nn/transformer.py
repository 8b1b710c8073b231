"""The Transformer (Vaswani et al., 2017) with torch.nn.Transformer's modules, names, arguments and masks.

Encoder layer, post-LN (the paper, norm_first=False) or pre-LN (Xiong et al., 2020, norm_first=True):
    post-LN:  x = LN(x + SelfAttn(x));           x = LN(x + FFN(x))
    pre-LN:   x = x + SelfAttn(LN(x));           x = x + FFN(LN(x))
Decoder layer: the same with a cross-attention block between the two, whose queries come from the
decoder and whose keys and values are the encoder's output (the "memory"):
    post-LN:  x = LN(x + SelfAttn(x, causal));   x = LN(x + CrossAttn(x, memory));   x = LN(x + FFN(x))
FFN(x) = W_2 act(W_1 x + b_1) + b_2 with act ReLU (the paper) or GELU.

A torch state_dict loads unchanged (encoder.layers.0.self_attn.in_proj_weight, ..., linear1, norm1, ...).
Masks are those of nn.MultiheadAttention: a bool mask is True where attention is NOT allowed, a float mask
is added to the scores; `generate_square_subsequent_mask(T)` is the causal one (-inf above the diagonal).
The `*_is_causal` flags are hints, as in torch: the causal mask itself must be passed.

Also here: SwiGLU (Shazeer, 2020), the gated feed-forward of PaLM and LLaMA,
    SwiGLU(x) = W_2 (SiLU(W_1 x) * W_3 x),
with LLaMA's names w1 (gate), w3 (up), w2 (down).
"""
import copy

from minigrad import backend
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.containers import ModuleList
from minigrad.nn.layers import Dropout, Linear
from minigrad.nn.module import Module
from minigrad.nn.multihead_attention import MultiheadAttention
from minigrad.nn.normalization import LayerNorm
from minigrad.tensor import Tensor

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def _activation(activation, op):
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{op}: activation should be 'relu' or 'gelu' (or a callable), got {activation!r}")
        return _ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError(f"{op}: activation must be 'relu', 'gelu' or a callable, got {type(activation).__name__}")
    return activation


def _check_features(op, d_model, **tensors):
    for name, t in tensors.items():
        if t.ndim not in (2, 3) or t.shape[-1] != d_model:
            raise ValueError(f"{op}: {name} must be (T, N, {d_model}), (N, T, {d_model}) with batch_first, or "
                             f"unbatched (T, {d_model}); got shape {t.shape}")


def generate_square_subsequent_mask(sz, device=None, dtype=None):
    """(sz, sz) float mask: 0 on and below the diagonal, -inf above (query i may not see keys j > i)."""
    xp = backend.module_for_device(device or "cpu")
    future = xp.triu(xp.ones((sz, sz), dtype=bool), 1)
    return Tensor(xp.where(future, -xp.inf, 0.0).astype(dtype or backend.float32))


def _is_causal_mask(mask, is_causal, size):
    """torch's _detect_is_causal_mask: an explicit hint wins; else compare the mask with the causal one."""
    if is_causal is not None:
        return bool(is_causal)
    if mask is None:
        return False
    m = mask.data if isinstance(mask, Tensor) else mask
    if m.shape != (size, size):
        return False
    xp = backend.array_module(m)
    future = xp.triu(xp.ones((size, size), dtype=bool), 1)
    if m.dtype == backend.bool_:
        return bool((m == future).all())
    return bool((xp.isneginf(m) == future).all() and (m[~future] == 0).all())


def _seq_len(x, batch_first):
    return x.shape[0] if x.ndim == 2 else x.shape[1 if batch_first else 0]


class TransformerEncoderLayer(Module):
    """torch.nn.TransformerEncoderLayer: self-attention and a feed-forward block, each with a residual."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            device=device, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, device=device, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, device=device, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(activation, "TransformerEncoderLayer")

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        """src (T, N, E), or (N, T, E) with batch_first, or (T, E) -> the same shape."""
        _check_features("TransformerEncoderLayer", self.self_attn.embed_dim, src=src)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerDecoderLayer(Module):
    """torch.nn.TransformerDecoderLayer: self-attention, cross-attention to the memory, feed-forward."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            device=device, dtype=dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, device=device, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, device=device, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, device=device, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _activation(activation, "TransformerDecoderLayer")

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        """tgt (T, N, E) and memory (S, N, E) (batch first: (N, T, E), (N, S, E)) -> (T, N, E)."""
        _check_features("TransformerDecoderLayer", self.self_attn.embed_dim, tgt=tgt, memory=memory)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal,
                           need_weights=False)[0]
        return self.dropout1(x)

    def _mha_block(self, x, memory, attn_mask, key_padding_mask, is_causal):
        x = self.multihead_attn(x, memory, memory, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                is_causal=is_causal, need_weights=False)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))


def _clones(layer, num_layers):
    """num_layers deep copies: every layer starts with the same weights, as in torch."""
    return ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])


class TransformerEncoder(Module):
    """A stack of num_layers copies of encoder_layer, then an optional final norm (pre-LN models need one).

    enable_nested_tensor and mask_check are accepted for torch's signature; they only select torch's fast
    paths and change no result."""

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers, self.norm = num_layers, norm
        self.enable_nested_tensor, self.mask_check = enable_nested_tensor, mask_check

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        seq_len = _seq_len(src, self.layers[0].self_attn.batch_first)
        is_causal = _is_causal_mask(mask, is_causal, seq_len)
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, is_causal=is_causal, src_key_padding_mask=src_key_padding_mask)
        return self.norm(output) if self.norm is not None else output


class TransformerDecoder(Module):
    """A stack of num_layers copies of decoder_layer, each attending to the same memory; optional final norm."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers, self.norm = num_layers, norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        seq_len = _seq_len(tgt, self.layers[0].self_attn.batch_first)
        tgt_is_causal = _is_causal_mask(tgt_mask, tgt_is_causal, seq_len)
        output = tgt
        for layer in self.layers:
            output = layer(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                           tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                           tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)
        return self.norm(output) if self.norm is not None else output


class Transformer(Module):
    """torch.nn.Transformer: an encoder stack and a decoder stack, each ending in a LayerNorm.

    Every weight matrix (dim > 1) is re-drawn with xavier_uniform_ after construction, as torch does."""

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                 dropout=0.1, activation="relu", custom_encoder=None, custom_decoder=None, layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, norm_first,
                      bias, device, dtype)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(*layer_args), num_encoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(*layer_args), num_decoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, device=device, dtype=dtype))
        self._reset_parameters()
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        """src (S, N, E), tgt (T, N, E) (batch_first: (N, S, E), (N, T, E); unbatched: (S, E), (T, E)) -> like tgt.

        src_mask (S, S), tgt_mask (T, T), memory_mask (T, S) or per head (N*nhead, ., .); key padding masks
        (N, S), (N, T), (N, S). Bool masks are True where attention is not allowed."""
        _check_features("Transformer", self.d_model, src=src, tgt=tgt)
        if src.ndim != tgt.ndim:
            raise ValueError(f"Transformer: src {src.shape} and tgt {tgt.shape} must both be batched or both unbatched")
        batch_dim = 0 if self.batch_first else 1
        if src.ndim == 3 and src.shape[batch_dim] != tgt.shape[batch_dim]:
            raise ValueError(f"Transformer: src {src.shape} and tgt {tgt.shape} have different batch sizes "
                             f"(batch_first={self.batch_first})")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)

    def _reset_parameters(self, generator=None):
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p, generator=generator)


# ---------------------------------------------------------------------------------------------
# Feed-forward blocks
# ---------------------------------------------------------------------------------------------

class FeedForward(Module):
    """The position-wise FFN of the paper: linear2(act(linear1(x))), act 'relu', 'gelu' or a callable."""

    def __init__(self, d_model, dim_feedforward, activation="gelu", bias=True, dropout=0.0, device=None,
                 dtype=None):
        super().__init__()
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, device=device, dtype=dtype)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, device=device, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.activation = _activation(activation, "FeedForward")

    def forward(self, x):
        return self.dropout(self.linear2(self.activation(self.linear1(x))))          # (..., d_model)


class SwiGLU(Module):
    """SwiGLU(x) = w2(SiLU(w1 x) * w3 x) (Shazeer, 2020), bias-free by default as in PaLM and LLaMA.

    Three matrices instead of two: hidden = 2/3 * 4 d_model matches the parameters of a 4 d_model FFN
    (`swiglu_hidden_size`)."""

    def __init__(self, d_model, hidden_features, bias=False, dropout=0.0, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, hidden_features, bias=bias, device=device, dtype=dtype)   # gate
        self.w3 = Linear(d_model, hidden_features, bias=bias, device=device, dtype=dtype)   # up
        self.w2 = Linear(hidden_features, d_model, bias=bias, device=device, dtype=dtype)   # down
        self.dropout = Dropout(dropout)

    def forward(self, x):
        hidden = F.silu(self.w1(x)) * self.w3(x)                                      # (..., hidden)
        return self.dropout(self.w2(hidden))                                          # (..., d_model)


def swiglu_hidden_size(d_model, ffn_hidden=None, multiple_of=1):
    """The SwiGLU width with the parameters of a two-matrix FFN of width ffn_hidden (default 4 d_model):
    3 d h = 2 d ffn_hidden -> h = 2/3 ffn_hidden, rounded up to a multiple of `multiple_of`."""
    ffn_hidden = 4 * d_model if ffn_hidden is None else ffn_hidden
    h = round(2 * ffn_hidden / 3)
    return multiple_of * -(-h // multiple_of)

