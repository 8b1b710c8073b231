"""An encoder-decoder transformer (Vaswani et al., 2017) for sequence-to-sequence tasks, on nn.Transformer.

    memory = Encoder(sqrt(C) * src_embed(src) + PE)                                   # (B, S, C)
    h      = Decoder(sqrt(C) * tgt_embed(tgt_in) + PE, memory)                         # (B, T, C)
    logits = head(h)                                                                  # (B, T, tgt_vocab)

The decoder's self-attention is causal (position t sees the target tokens up to t); its cross-attention
lets every target position look at every source position, softmax(Q_dec K_mem^T / sqrt(d)) V_mem. Padding
tokens (pad_id) are masked as keys in the encoder, in the decoder's self-attention and in the cross-attention.
Training is teacher forcing: tgt_in = [bos, y_1 .. y_{n-1}] predicts [y_1 .. y_n]. `greedy_decode`
generates one token at a time from bos, feeding each argmax back in, until eos or max_len.
"""
import math
from dataclasses import dataclass

import minigrad
from minigrad import backend, nn
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.positional import SinusoidalPositionalEmbedding
from minigrad.nn.transformer import Transformer
from minigrad.tensor import Tensor


@dataclass
class Seq2SeqConfig:
    src_vocab_size: int = 16
    tgt_vocab_size: int = 16
    d_model: int = 64
    nhead: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.0
    activation: str = "relu"
    norm_first: bool = False
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2


class Seq2SeqTransformer(nn.Module):
    """forward(src (B, S), tgt_in (B, T), targets (B, T) or None) -> (logits (B, T, tgt_vocab), loss or None).

    Targets equal to pad_id are ignored in the loss. Embeddings start at N(0, 1/d_model), so that the scaled
    sqrt(d_model) * embedding has entries of the PE's size; nn.Transformer draws its matrices with xavier_uniform_."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.positions = SinusoidalPositionalEmbedding(c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.transformer = Transformer(c.d_model, c.nhead, c.num_encoder_layers, c.num_decoder_layers,
                                       c.dim_feedforward, c.dropout, c.activation, batch_first=True,
                                       norm_first=c.norm_first)
        self.head = nn.Linear(c.d_model, c.tgt_vocab_size)
        for embedding in (self.src_embed, self.tgt_embed):  # sqrt(C) * N(0, 1/C): unit entries, as the PE's
            init.normal_(embedding.weight, std=c.d_model ** -0.5)
            embedding.weight.data[c.pad_id] = 0

    def _embed(self, embedding, ids):
        x = embedding(ids) * math.sqrt(self.config.d_model)                       # (B, T, C)
        positions = minigrad.arange(ids.shape[1], device=ids.device)               # (T,)
        return self.dropout(x + self.positions(positions, dtype=x.dtype))          # (B, T, C)

    def _padding(self, ids):
        return ids.data == self.config.pad_id                                      # (B, T) bool, True = ignore

    def encode(self, src):
        """src (B, S) -> memory (B, S, C)."""
        if src.ndim != 2:
            raise ValueError(f"Seq2SeqTransformer: expected src token ids of shape (B, S), got {src.shape}")
        return self.transformer.encoder(self._embed(self.src_embed, src),
                                        src_key_padding_mask=self._padding(src))  # (B, S, C)

    def decode(self, tgt_in, memory, src):
        """tgt_in (B, T) and the memory of src (B, S) -> logits (B, T, tgt_vocab)."""
        T = tgt_in.shape[1]
        causal = Transformer.generate_square_subsequent_mask(T, device=tgt_in.device)  # (T, T)
        h = self.transformer.decoder(self._embed(self.tgt_embed, tgt_in), memory, tgt_mask=causal,
                                     tgt_key_padding_mask=self._padding(tgt_in),
                                     memory_key_padding_mask=self._padding(src), tgt_is_causal=True)
        return self.head(h)                                                        # (B, T, V)

    def forward(self, src, tgt_in, targets=None):
        if tgt_in.ndim != 2 or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"Seq2SeqTransformer: expected src (B, S) and tgt_in (B, T) with the same B, got "
                             f"{src.shape} and {tgt_in.shape}")
        logits = self.decode(tgt_in, self.encode(src), src)                        # (B, T, V)
        if targets is None:
            return logits, None
        B, T, V = logits.shape
        return logits, F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T),
                                       ignore_index=self.config.pad_id)

    def cross_attention_weights(self, src, tgt_in):
        """Where the last decoder layer looks in the source: its cross-attention weights (B, T, S), averaged over
        the heads (no gradient). The lower layers run as in forward; the last one up to its cross-attention."""
        with minigrad.no_grad():
            memory = self.encode(src)                                              # (B, S, C)
            causal = Transformer.generate_square_subsequent_mask(tgt_in.shape[1], device=tgt_in.device)
            tgt_pad, src_pad = self._padding(tgt_in), self._padding(src)
            x = self._embed(self.tgt_embed, tgt_in)                                # (B, T, C)
            *lower, last = self.transformer.decoder.layers
            for layer in lower:
                x = layer(x, memory, tgt_mask=causal, tgt_key_padding_mask=tgt_pad,
                          memory_key_padding_mask=src_pad, tgt_is_causal=True)
            if last.norm_first:
                x = x + last._sa_block(last.norm1(x), causal, tgt_pad, True)
                query = last.norm2(x)
            else:
                query = last.norm1(x + last._sa_block(x, causal, tgt_pad, True))
            return last.multihead_attn(query, memory, memory, key_padding_mask=src_pad)[1]  # (B, T, S)

    def greedy_decode(self, src, max_len):
        """src (B, S) -> generated ids (B, <= max_len), without bos; after eos, pad_id. No gradient.

        The encoder runs once; the decoder reruns on the growing prefix (no cache: O(T^2) steps, fine here)."""
        c = self.config
        with minigrad.no_grad():
            memory = self.encode(src)
            xp = backend.array_module(src.data)
            out = xp.full((src.shape[0], 1), c.bos_id, dtype=backend.int64)       # (B, 1)
            done = xp.zeros(src.shape[0], dtype=bool)
            for _ in range(max_len):
                logits = self.decode(Tensor(out), memory, src)                     # (B, t, V)
                nxt = logits.data[:, -1].argmax(-1)                                # (B,)
                nxt = xp.where(done, c.pad_id, nxt)
                out = xp.concatenate([out, nxt[:, None]], axis=1)                  # (B, t + 1)
                done |= nxt == c.eos_id
                if done.all():
                    break
        return Tensor(out[:, 1:])
