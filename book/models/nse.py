"""Read, Highlight and Summarize: A Hierarchical Neural Semantic Encoder-based Approach (Ambati, Bandyopadhyay &
Mitra, 2019, arXiv:1910.03177), on the Neural Semantic Encoder (Munkhdalai & Yu, 2017, EACL, arXiv:1607.04315).

An NSE keeps a memory M (N slots x D) that it reads and rewrites as it walks over a sequence. One step on input x_t:

    read      r_t = LSTM_r(x_t)                                               (B, D)
    attend    z_t = masked softmax_j( v^T tanh(W r_t + U M_j) )               (B, N)   additive scores
    retrieve  m_t = z_t^T M                                                   (B, D)
    compose   c_t = ReLU(W_c [r_t; m_t] + b_c)                                (B, D)
    write     h_t = LSTM_w(c_t)                                               (B, D)
    update    M  <- M * (1 - z_t 1^T) + z_t h_t^T                             (B, N, D)

The original NSE scores slots with the dot product r_t . M_j; the summarization paper uses the additive score above,
and so does this module. The hierarchical NSE keeps two memories, a sentence memory (one slot per word) and a document
memory (one slot per sentence), attends to each with its own (W, U, v), composes over [r_t; m_s; m_d] and writes the
same h_t into both, each with its own z. The decoder is a second NSE (its own parameters) that keeps reading and
writing the encoder's final memories while it generates; its output is the pointer-generator mixture

    P(w) = p_gen P_vocab(w) + (1 - p_gen) sum_{j: src_j = w} z_j          p_gen = sigmoid(w_p^T [m_s; m_d; h_t; r_t] + b_p)
    P_vocab = softmax(W_o [h_t; m_s; m_d] + b_o)                          (flat NSE: drop m_d)

where z is the decoder's attention over the word slots, scattered onto the source ids (a matmul with their one-hot).

Where the paper leaves room, this module decides:
- The word memory starts as the embedded source words (as in the original NSE); a sentence slot starts as the mean
  of its words' embeddings.
- While encoding, the hierarchical NSE's word attention sees only the words of the current sentence (the sentence
  memory is a memory of that sentence); the document attention sees every sentence. The decoder attends to all
  words (its pointer must reach every sentence) and to all sentences.
- The decoder's read and write LSTMs start from the encoder's final states.
- Padding: padded slots get zero attention; at a padded time step the memories and LSTM states are carried over
  unchanged (`where` on a keep mask), so a padded batch equals its rows run one at a time.
- The source vocabulary is closed (every source id is in the output vocabulary): no extended vocabulary for
  out-of-vocabulary words.

`Summarizer.sample_decode` samples summaries with the graph kept, for the paper's self-critical fine-tuning
(book.experiments.summarization.self_critical_loss).
"""
from dataclasses import dataclass

import minigrad
from minigrad import nn
from minigrad.nn import functional as F
from minigrad.ops import cat
from minigrad.tensor import Tensor


def masked_softmax(scores, mask):
    """softmax over the last dim with masked-out entries (mask False) at exactly zero. scores and mask (B, N); every
    row needs at least one True."""
    if tuple(mask.shape) != tuple(scores.shape):
        raise ValueError(f"masked_softmax: expected a mask of the scores' shape {scores.shape}, got {mask.shape}")
    if not mask.any(axis=-1).all():
        raise ValueError("masked_softmax: every row of the mask needs at least one True (a slot to attend to)")
    return F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def keep_where(keep, new, old):
    """new where keep (B,) is True, else old: the row-wise carry-over at padded time steps."""
    shape = (keep.shape[0],) + (1,) * (new.ndim - 1)
    return minigrad.where(minigrad.tensor(keep.reshape(shape)), new, old)


class AdditiveAttention(nn.Module):
    """forward(query (B, D), keys (B, N, D), mask (B, N) bool) -> weights (B, N): masked softmax(v^T tanh(W q + U k))."""

    def __init__(self, query_size, key_size, hidden_size, device=None, dtype=None, generator=None):
        super().__init__()
        kw = dict(bias=False, device=device, dtype=dtype, generator=generator)
        self.W = nn.Linear(query_size, hidden_size, **kw)
        self.U = nn.Linear(key_size, hidden_size, **kw)
        self.v = nn.Linear(hidden_size, 1, **kw)

    def forward(self, query, keys, mask):
        scores = self.v((self.W(query).unsqueeze(1) + self.U(keys)).tanh()).squeeze(-1)  # (B, N)
        return masked_softmax(scores, mask)


@dataclass
class NSEState:
    """The read and write LSTMs' (h, c), each (B, D), and the memories, each (B, N_k, D)."""
    read: tuple
    write: tuple
    memories: list


@dataclass
class NSEStepOutput:
    read: Tensor        # r_t (B, D)
    retrieved: list     # m_t per memory, (B, D) each
    written: Tensor     # h_t (B, D)
    attention: list     # z_t per memory, (B, N_k) each


class NSECell(nn.Module):
    """One NSE step (read, attend, compose, write, update) over `num_memories` memories of width hidden_size.

    forward(x (B, input_size), state: NSEState, masks: [(B, N_k) bool], keep: (B,) bool or None)
        -> (NSEStepOutput, new NSEState); rows where keep is False return the old state unchanged."""

    def __init__(self, input_size, hidden_size, num_memories=1, device=None, dtype=None, generator=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype, generator=generator)
        self.input_size, self.hidden_size, self.num_memories = input_size, hidden_size, num_memories
        self.read = nn.LSTMCell(input_size, hidden_size, **kw)
        self.attend = nn.ModuleList([AdditiveAttention(hidden_size, hidden_size, hidden_size, **kw)
                                     for _ in range(num_memories)])
        self.compose = nn.Linear((1 + num_memories) * hidden_size, hidden_size, **kw)
        self.write = nn.LSTMCell(hidden_size, hidden_size, **kw)

    def _check(self, x, state, masks):
        B, D = x.shape[0], self.hidden_size
        if x.ndim != 2 or x.shape[1] != self.input_size or len(state.memories) != self.num_memories \
                or len(masks) != self.num_memories:
            raise ValueError(f"NSECell: expected x (B, {self.input_size}) and {self.num_memories} memories and masks, "
                             f"got x {x.shape}, {len(state.memories)} memories, {len(masks)} masks")
        for M, mask in zip(state.memories, masks):
            if M.ndim != 3 or M.shape[0] != B or M.shape[2] != D or tuple(mask.shape) != tuple(M.shape[:2]):
                raise ValueError(f"NSECell: expected memories (B={B}, N, {D}) and masks (B, N), got memory "
                                 f"{M.shape} and mask {mask.shape}")

    def forward(self, x, state, masks, keep=None):
        self._check(x, state, masks)
        r, r_cell = self.read(x, state.read)                                      # (B, D) each
        attention = [attend(r, M, mask) for attend, M, mask in zip(self.attend, state.memories, masks)]  # (B, N_k)
        retrieved = [(z.unsqueeze(1) @ M).squeeze(1) for z, M in zip(attention, state.memories)]  # (B, D) each
        composed = self.compose(cat([r, *retrieved], dim=-1)).relu()              # (B, D)
        h, h_cell = self.write(composed, state.write)                             # (B, D) each
        memories = [M * (1 - z.unsqueeze(-1)) + z.unsqueeze(-1) * h.unsqueeze(1)  # (B, N_k, D)
                    for z, M in zip(attention, state.memories)]
        new = NSEState((r, r_cell), (h, h_cell), memories)
        if keep is not None:
            new = NSEState(*(tuple(keep_where(keep, n, o) for n, o in zip(new_part, old_part))
                             for new_part, old_part in ((new.read, state.read), (new.write, state.write))),
                           [keep_where(keep, n, o) for n, o in zip(memories, state.memories)])
        return NSEStepOutput(r, retrieved, h, attention), new


def zero_state(batch, hidden_size, memories, like):
    """LSTM states at zero, (B, D) each, and the given initial memories."""
    zeros = lambda: minigrad.zeros((batch, hidden_size), dtype=like.dtype)  # noqa: E731
    return NSEState((zeros(), zeros()), (zeros(), zeros()), list(memories))


class PointerGenerator(nn.Module):
    """forward(h (B, D), retrieved [(B, D_k)], read (B, D_r), pointer (B, S), src_one_hot (B, S, V)) -> log P (B, V):

        P = p_gen softmax(W_o [h; m...] + b_o) + (1 - p_gen) pointer @ one_hot(src),
        p_gen = sigmoid(w_p^T [m...; h; read] + b_p).

    Shared by every summarizer of the chapter: an NSE passes its retrieved memories as m, seq2seq its context."""

    def __init__(self, state_size, retrieved_size, read_size, vocab_size, device=None, dtype=None, generator=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype, generator=generator)
        self.vocab = nn.Linear(state_size + retrieved_size, vocab_size, **kw)
        self.gate = nn.Linear(retrieved_size + state_size + read_size, 1, **kw)

    def forward(self, h, retrieved, read, pointer, src_one_hot):
        p_vocab = F.softmax(self.vocab(cat([h, *retrieved], dim=-1)), dim=-1)     # (B, V)
        p_gen = self.gate(cat([*retrieved, h, read], dim=-1)).sigmoid()           # (B, 1)
        p_copy = (pointer.unsqueeze(1) @ src_one_hot).squeeze(1)                  # (B, V)
        return (p_gen * p_vocab + (1 - p_gen) * p_copy).log()                     # (B, V)


def sentence_one_hot(sentence_ids, num_sentences, dtype):
    """sentence_ids (B, S) int (-1 for padding) -> (B, S, N) float: 1 where word j is in sentence n."""
    xp = minigrad.backend.array_module(sentence_ids)
    return xp.asarray(sentence_ids[..., None] == xp.arange(num_sentences), dtype=dtype)


class Summarizer(nn.Module):
    """An encoder-decoder summarizer with a pointer-generator output. Subclasses define
    encode(src, sentence_ids) -> (decoder state, context) and decode_step(y (B,), state, context) -> (log P (B, V), state).

    forward(src (B, S), sentence_ids (B, S), tgt_in (B, T)) -> log P (B, T, V), teacher forced.
    sentence_ids numbers the sentences of each document from 0 (-1 on padding); src == pad_id is padding."""

    def __init__(self, vocab_size, pad_id=0, bos_id=1, eos_id=2):
        super().__init__()
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = vocab_size, pad_id, bos_id, eos_id

    def _check(self, src, sentence_ids):
        name = type(self).__name__
        if src.ndim != 2 or tuple(sentence_ids.shape) != tuple(src.shape):
            raise ValueError(f"{name}: expected src (B, S) and sentence_ids of the same shape, got {src.shape} and "
                             f"{sentence_ids.shape}")
        if not (src != self.pad_id).any(axis=1).all():
            raise ValueError(f"{name}: every document needs at least one word that is not padding")

    def source_masks(self, src):
        """src (B, S) ids -> (the padding mask (B, S) bool, True on words; the one-hot of src (B, S, V), float)."""
        src_mask = src != self.pad_id                                              # (B, S)
        one_hot = F.one_hot(minigrad.tensor(src), self.vocab_size).to(self.embedding.weight.dtype)  # (B, S, V)
        return src_mask, one_hot

    def forward(self, src, sentence_ids, tgt_in):
        src, sentence_ids, tgt_in = (t.data if isinstance(t, Tensor) else t for t in (src, sentence_ids, tgt_in))
        self._check(src, sentence_ids)
        state, context = self.encode(src, sentence_ids)
        log_probs = []
        for t in range(tgt_in.shape[1]):
            step, state = self.decode_step(tgt_in[:, t], state, context)
            log_probs.append(step)
        return minigrad.stack(log_probs, dim=1)                                    # (B, T, V)

    def greedy_decode(self, src, sentence_ids, max_len):
        """-> generated ids (B, <= max_len), without bos, eos included; pad_id after eos. No gradient."""
        xp = minigrad.backend.array_module(src)
        with minigrad.no_grad():
            self._check(src, sentence_ids)
            state, context = self.encode(src, sentence_ids)
            y = xp.full(src.shape[0], self.bos_id, dtype=src.dtype)
            done = xp.zeros(src.shape[0], dtype=bool)
            out = []
            for _ in range(max_len):
                log_probs, state = self.decode_step(y, state, context)
                y = xp.where(done, self.pad_id, log_probs.data.argmax(axis=-1)).astype(src.dtype)
                out.append(y)
                done |= y == self.eos_id
                if done.all():
                    break
        return xp.stack(out, axis=1)

    def sample_decode(self, src, sentence_ids, uniforms):
        """Sample a summary, keeping the graph: for self-critical training. uniforms (B, L) in [0, 1) are the draws
        (inverse CDF: y_t = the first w with cumsum_w P > u_t). -> (ids (B, L), pad_id after eos; the sum of
        log P(y_t) over each row's tokens up to its eos, (B,), differentiable)."""
        xp = minigrad.backend.array_module(src)
        self._check(src, sentence_ids)
        state, context = self.encode(src, sentence_ids)
        y = xp.full(src.shape[0], self.bos_id, dtype=src.dtype)
        alive = xp.ones(src.shape[0], dtype=bool)
        out, total = [], 0
        for t in range(uniforms.shape[1]):
            log_probs, state = self.decode_step(y, state, context)                 # (B, V)
            cdf = xp.cumsum(xp.exp(log_probs.data.astype(xp.float64)), axis=-1)   # (B, V)
            drawn = xp.minimum((cdf <= uniforms[:, t:t + 1] * cdf[:, -1:]).sum(-1), self.vocab_size - 1)
            picked = log_probs.gather(1, minigrad.tensor(drawn[:, None])).squeeze(1)  # (B,)
            total = total + picked * minigrad.tensor(alive.astype(log_probs.dtype))
            y = xp.where(alive, drawn, self.pad_id).astype(src.dtype)
            out.append(y)
            alive = alive & (y != self.eos_id)
        return xp.stack(out, axis=1), total


def summarization_nll(log_probs, targets, pad_id=0):
    """Mean negative log-likelihood of the targets (B, T) under log P (B, T, V), padding ignored."""
    B, T, V = log_probs.shape
    return F.nll_loss(log_probs.reshape(B * T, V), minigrad.tensor(targets.reshape(B * T)), ignore_index=pad_id)


class NSESummarizer(Summarizer):
    """A flat NSE (one word memory) or, with hierarchical=True, the hierarchical NSE (a word memory attended within
    the current sentence while encoding, and a document memory of sentences), each with an NSE decoder and the
    pointer-generator output. Embeddings, memories and LSTMs all have width hidden_size."""

    def __init__(self, vocab_size, hidden_size, hierarchical=False, pad_id=0, bos_id=1, eos_id=2, device=None,
                 dtype=None, generator=None):
        super().__init__(vocab_size, pad_id, bos_id, eos_id)
        kw = dict(device=device, dtype=dtype, generator=generator)
        self.hidden_size, self.hierarchical = hidden_size, hierarchical
        k = 2 if hierarchical else 1
        self.embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=pad_id, **kw)
        self.encoder = NSECell(hidden_size, hidden_size, k, **kw)
        self.decoder = NSECell(hidden_size, hidden_size, k, **kw)
        self.output = PointerGenerator(hidden_size, k * hidden_size, hidden_size, vocab_size, **kw)

    def encode(self, src, sentence_ids):
        xp = minigrad.backend.array_module(src)
        embedded = self.embedding(minigrad.tensor(src))                            # (B, S, D)
        src_mask, one_hot = self.source_masks(src)
        memories, decoder_masks = [embedded], [src_mask]
        if self.hierarchical:
            num_sentences = int(sentence_ids.max()) + 1
            in_sentence = sentence_one_hot(sentence_ids, num_sentences, embedded.dtype)  # (B, S, N)
            counts = in_sentence.sum(axis=1)                                       # (B, N)
            sentence_mask = counts > 0
            mean = minigrad.tensor((in_sentence / xp.maximum(counts, 1)[:, None, :]).transpose(0, 2, 1))
            memories.append(mean @ embedded)                                       # (B, N, D): mean of the words
            decoder_masks.append(sentence_mask)
        state = zero_state(src.shape[0], self.hidden_size, memories, embedded)
        for t in range(src.shape[1]):
            masks = [src_mask]
            if self.hierarchical:
                same = (sentence_ids == sentence_ids[:, t:t + 1]) & src_mask      # (B, S): the current sentence
                masks = [xp.where(src_mask[:, t:t + 1], same, src_mask), sentence_mask]
            _, state = self.encoder(embedded[:, t], state, masks, keep=src_mask[:, t])
        return state, (decoder_masks, one_hot)

    def decode_step(self, y, state, context):
        masks, one_hot = context
        step, state = self.decoder(self.embedding(minigrad.tensor(y)), state, masks)
        log_probs = self.output(step.written, step.retrieved, step.read, step.attention[0], one_hot)  # (B, V)
        return log_probs, state
