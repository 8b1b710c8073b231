"""Sequence to sequence with attention and a pointer-generator output: the baseline of the summarization chapter
(Bahdanau, Cho & Bengio, 2015, arXiv:1409.0473, additive attention; See, Liu & Manning, 2017, arXiv:1704.04368,
the pointer-generator).

    encoder   e_j = LSTM_enc(x_j)                                          (B, S, H), padded steps carried over
    decoder   s_t = LSTM_dec(y_{t-1}), started from the encoder's final state
    attention z_t = masked softmax_j( v^T tanh(W s_t + U e_j) ),   context m_t = z_t^T e
    output    the pointer-generator mixture of book.models.nse.PointerGenerator with h = s_t, m = m_t, read = the
              embedded y_{t-1} (See et al.'s decoder input x_t).

It differs from the NSE summarizers only in its encoder memory: the encoder's states, written once and never
rewritten, where an NSE reads and rewrites its memory at every step of encoding and decoding.
"""
import minigrad
from minigrad import nn

from book.models.nse import AdditiveAttention, PointerGenerator, Summarizer, keep_where


class Seq2SeqAttention(Summarizer):
    """forward(src (B, S), sentence_ids (B, S) (unused), tgt_in (B, T)) -> log P (B, T, V); embeddings and both
    LSTMs have width hidden_size."""

    def __init__(self, vocab_size, hidden_size, pad_id=0, bos_id=1, eos_id=2, device=None, dtype=None,
                 generator=None):
        super().__init__(vocab_size, pad_id, bos_id, eos_id)
        kw = dict(device=device, dtype=dtype, generator=generator)
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=pad_id, **kw)
        self.encoder = nn.LSTMCell(hidden_size, hidden_size, **kw)
        self.decoder = nn.LSTMCell(hidden_size, hidden_size, **kw)
        self.attend = AdditiveAttention(hidden_size, hidden_size, hidden_size, **kw)
        self.output = PointerGenerator(hidden_size, hidden_size, hidden_size, vocab_size, **kw)

    def encode(self, src, sentence_ids):
        embedded = self.embedding(minigrad.tensor(src))                            # (B, S, H)
        src_mask, one_hot = self.source_masks(src)
        zeros = minigrad.zeros((src.shape[0], self.hidden_size), dtype=embedded.dtype)
        state, outputs = (zeros, zeros), []
        for t in range(src.shape[1]):
            new = self.encoder(embedded[:, t], state)                              # (B, H) each
            state = tuple(keep_where(src_mask[:, t], n, o) for n, o in zip(new, state))
            outputs.append(state[0])
        return state, (minigrad.stack(outputs, dim=1), src_mask, one_hot)          # (B, S, H)

    def decode_step(self, y, state, context):
        encoded, src_mask, one_hot = context
        x = self.embedding(minigrad.tensor(y))                                     # (B, H)
        h, c = self.decoder(x, state)                                              # (B, H) each
        z = self.attend(h, encoded, src_mask)                                      # (B, S)
        context_vector = (z.unsqueeze(1) @ encoded).squeeze(1)                     # (B, H)
        return self.output(h, [context_vector], x, z, one_hot), (h, c)
