"""Pointer Networks (Vinyals, Fortunato & Jaitly, 2015, arXiv:1506.03134): attention used as the output, a pointer
to an input.

An encoder LSTM reads the inputs P = (P_1, ..., P_n); a decoder LSTM emits one output per step, and each output
is a position of the input, chosen by additive attention over the encoder states:

    e_j   = encoder LSTM state after reading P_1..P_j                      j = 1..n      (B, n, H)
    d_i   = decoder LSTM state at output step i                                          (B, H)
    u^i_j = v^T tanh(W1 e_j + W2 d_i)                                      (pointer scores, (B, n))
    p(C_i | C_1, ..., C_{i-1}, P) = softmax_j(u^i_j)                       (a distribution over input positions)

Seq2seq attention blends the encoder states into a context vector sum_j softmax(u^i)_j e_j; a Pointer Network
stops at the softmax and uses it as the output, so the output vocabulary is the input and grows with n.

- The decoder's input at step i is the embedding of the input pointed to at step i-1, P_{C_{i-1}}; at the first
  step it is a learned go vector (`decoder_start`). Its initial state is the encoder's final (h, c).
- W1 e_j does not depend on i: it is computed once per input sequence (`W1(encoder outputs)`), and in the
  teacher-forced forward all decoder states are computed first, so every score u^i_j comes from one tanh.
- mask_chosen: u^i_j = -inf for inputs already chosen at an earlier step, so an output never repeats an input.
- close_cycle (convex hull): the output is a closed cycle C_1, ..., C_k, C_1. The first chosen input stays
  available and pointing back to it ends the sequence; this plays the role of the paper's end symbol with no
  extra parameter. Without it the output has exactly n steps (sorting: a permutation).
- Targets and decoded sequences are padded with PAD = -1 after their end; a batch holds inputs of one length n
  (batches of different n are fine).

Parameter names (embedding, encoder, decoder, W1, W2, v, decoder_start) are torch.nn's inside each layer, so
the state_dict of the same model written with torch.nn.Linear / LSTM(batch_first=True) / LSTMCell loads.
"""
import math

import minigrad
from minigrad import backend, nn
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.layers import empty_parameter
from minigrad.nn.rnn import lstm_step
from minigrad.ops import cat, stack
from minigrad.tensor import Tensor

PAD = -1  # targets and decoded sequences hold PAD after their end


class PointerNetwork(nn.Module):
    """forward(points (B, n, input_size), targets (B, T)) -> log p(C_i = j | C_<i, P), shape (B, T, n)."""

    def __init__(self, input_size=2, hidden_size=128, mask_chosen=True, close_cycle=False, device=None, dtype=None,
                 generator=None):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.mask_chosen, self.close_cycle = mask_chosen, close_cycle
        kw = dict(device=device, dtype=dtype, generator=generator)
        self.embedding = nn.Linear(input_size, hidden_size, **kw)
        self.encoder = nn.LSTM(hidden_size, hidden_size, batch_first=True, **kw)
        self.decoder = nn.LSTMCell(hidden_size, hidden_size, **kw)
        self.W1 = nn.Linear(hidden_size, hidden_size, bias=False, **kw)
        self.W2 = nn.Linear(hidden_size, hidden_size, bias=False, **kw)
        self.v = nn.Linear(hidden_size, 1, bias=False, **kw)
        self.decoder_start = empty_parameter((hidden_size,), dtype, device)  # the learned go vector
        bound = 1 / math.sqrt(hidden_size)
        init.uniform_(self.decoder_start, -bound, bound, generator=generator)

    def extra_repr(self):
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, mask_chosen={self.mask_chosen}, "
                f"close_cycle={self.close_cycle}")

    # ---- the pieces ------------------------------------------------------------------------------

    def _check_points(self, op, points):
        if not isinstance(points, Tensor) or points.ndim != 3 or points.shape[2] != self.input_size \
                or points.shape[1] < 1:
            got = f"shape {points.shape}" if isinstance(points, Tensor) else f"a {type(points).__name__}"
            raise ValueError(f"PointerNetwork.{op}: expected points as a Tensor of shape (B, n >= 1, "
                             f"{self.input_size}), got {got}")

    def encode(self, points):
        """-> embedded inputs (B, n, H), W1 e_j for every j (B, n, H), the encoder's final (h, c), each (B, H)."""
        embedded = self.embedding(points)                  # (B, n, H)
        encoded, (h, c) = self.encoder(embedded)           # (B, n, H); (1, B, H) each
        return embedded, self.W1(encoded), (h[0], c[0])    # W1 e_j: computed once, used at every step

    def pointer_scores(self, W1_encoded, decoded):
        """u^i_j = v^T tanh(W1 e_j + W2 d_i), for decoder states (B, H) -> (B, n) or (B, T, H) -> (B, T, n)."""
        if decoded.ndim == 2:
            hidden = (W1_encoded + self.W2(decoded).unsqueeze(1)).tanh()               # (B, n, H)
        else:
            hidden = (W1_encoded.unsqueeze(1) + self.W2(decoded).unsqueeze(2)).tanh()  # (B, T, n, H)
        return self.v(hidden).squeeze(-1)                                              # (B, n) or (B, T, n)

    def _start_input(self, batch_size):
        return self.decoder_start.reshape(1, self.hidden_size).expand(batch_size, self.hidden_size)  # (B, H)

    def _check_targets(self, targets, B, n):
        """Targets (B, T): input positions in [0, n), PAD (-1) after the end; -> their array."""
        if not isinstance(targets, Tensor) or targets.ndim != 2 or targets.shape[0] != B \
                or backend.is_floating(targets.dtype):
            shape = targets.shape if hasattr(targets, "shape") else type(targets).__name__
            raise ValueError(f"PointerNetwork.forward: expected integer targets of shape ({B}, T), got {shape}")
        t = targets.data
        xp = backend.array_module(t)
        T = t.shape[1]
        if t.size and (int(t.max()) >= n or int(t.min()) < PAD):
            raise ValueError(f"PointerNetwork.forward: targets must be input positions in [0, {n}) or PAD ({PAD}), "
                             f"got values in [{int(t.min())}, {int(t.max())}]")
        if bool(xp.any((t[:, 1:] >= 0) & (t[:, :-1] < 0))):
            raise ValueError("PointerNetwork.forward: a target has a position after PAD; PAD must only end a row")
        if self.close_cycle and T > 1:
            closes = (t[:, 1:] == t[:, :1]) & (t[:, :1] >= 0)                   # (B, T-1): back at the start
            if bool(xp.any((xp.cumsum(closes, axis=1) - closes > 0) & (t[:, 1:] >= 0))):
                raise ValueError("PointerNetwork.forward: a target continues after returning to its start; with "
                                 "close_cycle=True that ends the sequence, so only PAD may follow")
        return t

    def chosen_mask(self, targets, n):
        """(B, T, n) bool from targets (B, T): True where input j was chosen before step i (it may not be chosen
        again). With close_cycle the first chosen input stays available: pointing back to it ends the sequence."""
        xp = backend.array_module(targets)
        one_hot = (targets[:, :, None] == xp.arange(n)) & (targets[:, :, None] >= 0)  # (B, T, n)
        if self.close_cycle:
            one_hot &= targets[:, :, None] != targets[:, :1, None]                   # the start stays available
        chosen_before = (xp.cumsum(one_hot, axis=1) - one_hot) > 0                   # (B, T, n)
        repeated = (chosen_before & one_hot).any(axis=2)                             # (B, T)
        if bool(repeated.any()):
            b, i = (int(k[0]) for k in xp.nonzero(repeated))
            raise ValueError(f"PointerNetwork.forward: target row {b} points at step {i} to input "
                             f"{int(targets[b, i])}, chosen before; with mask_chosen=True its probability is 0")
        return chosen_before

    # ---- training: the teacher-forced forward ------------------------------------------------------

    def forward(self, points, targets):
        """Teacher forcing: the decoder reads the true previous outputs. -> log-probs (B, T, n).

        points (B, n, input_size); targets (B, T) int, input positions, PAD (-1) after a row's end (the
        log-probs at PAD steps are computed from a placeholder input and are to be ignored, see `sequence_nll`)."""
        self._check_points("forward", points)
        B, n, H = points.shape[0], points.shape[1], self.hidden_size
        t = self._check_targets(targets, B, n)
        xp = backend.array_module(t)
        T = t.shape[1]
        embedded, W1_encoded, state = self.encode(points)                           # (B, n, H) x2
        previous = xp.maximum(t[:, :-1], 0)                                         # (B, T-1), PAD -> input 0
        previous = embedded.gather(1, Tensor(xp.broadcast_to(previous[:, :, None], (B, T - 1, H))))  # (B, T-1, H)
        inputs = cat([self._start_input(B).unsqueeze(1), previous], dim=1)          # (B, T, H)
        decoder = self.decoder
        inputs_proj = F.linear(inputs, decoder.weight_ih, decoder.bias_ih).unbind(1)  # T x (B, 4H): one matmul
        h, c = state
        decoded = []
        for i in range(T):
            h, c = lstm_step(inputs_proj[i], h, c, decoder.weight_hh, decoder.bias_hh)  # (B, H)
            decoded.append(h)
        scores = self.pointer_scores(W1_encoded, stack(decoded, 1))                 # (B, T, n)
        if self.mask_chosen:
            scores = scores.masked_fill(self.chosen_mask(t, n), float("-inf"))
        return F.log_softmax(scores, dim=-1)                                        # (B, T, n)

    # ---- inference: greedy decoding and beam search -------------------------------------------------

    def _max_steps(self, n, max_steps):
        return (n + 1 if self.close_cycle else n) if max_steps is None else max_steps

    def _step(self, x, state, W1_encoded, chosen):
        """One decoder step: input (B, H), state -> log-probs over the inputs (B, n) (an array), new state."""
        h, c = self.decoder(x, state)                                               # (B, H) each
        scores = self.pointer_scores(W1_encoded, h)                                 # (B, n)
        if self.mask_chosen:
            scores = scores.masked_fill(chosen, float("-inf"))
        return F.log_softmax(scores, dim=-1).data, (h, c)

    def _update_chosen(self, chosen, start, step, choice, active):
        """Mask the inputs just chosen by the rows `active`. With close_cycle the first choice becomes the start,
        which is never masked: pointing back to it ends the sequence."""
        if self.close_cycle:
            if step == 0:
                start[active] = choice[active]
                return
            active = active & (choice != start)
        rows = backend.array_module(chosen).nonzero(active)[0]
        chosen[rows, choice[rows]] = True

    def greedy_decode(self, points, max_steps=None):
        """Pick the most probable input at every step. -> (indices (B, T) int64, PAD-padded; log-prob (B,)).

        Stops after n steps, or with close_cycle when the sequence returns to its start (at most n + 1 steps)."""
        self._check_points("greedy_decode", points)
        B, n = points.shape[0], points.shape[1]
        with minigrad.no_grad():
            embedded, W1_encoded, state = self.encode(points)
            xp = backend.array_module(embedded.data)
            rows = xp.arange(B)
            chosen = xp.zeros((B, n), dtype=bool)
            start = xp.full(B, PAD)
            finished = xp.zeros(B, dtype=bool)
            log_prob = xp.zeros(B, dtype=embedded.data.dtype)
            outputs = []
            x = self._start_input(B)
            for step in range(self._max_steps(n, max_steps)):
                log_probs, state = self._step(x, state, W1_encoded, chosen)         # (B, n)
                choice = log_probs.argmax(axis=1)                                    # (B,)
                log_prob += xp.where(finished, 0, log_probs[rows, choice])
                outputs.append(xp.where(finished, PAD, choice))
                self._update_chosen(chosen, start, step, choice, ~finished)
                if self.close_cycle:
                    finished |= (step > 0) & (choice == start)
                    if finished.all():
                        break
                x = embedded[rows, choice]                                           # (B, H)
        return minigrad.tensor(xp.stack(outputs, 1).astype(xp.int64)), minigrad.tensor(log_prob)

    def beam_search(self, points, beam_width=4, max_steps=None):
        """Keep the beam_width most probable partial sequences per example; return the most probable complete one.

        -> (indices (B, T) int64, PAD-padded; its log-prob (B,)). A finished hypothesis (close_cycle) stays in the
        beam with its log-prob; the search ends when every hypothesis has finished or after max_steps.
        Width 1 is greedy decoding."""
        self._check_points("beam_search", points)
        if not isinstance(beam_width, int) or beam_width < 1:
            raise ValueError(f"PointerNetwork.beam_search: beam_width must be an int >= 1, got {beam_width!r}")
        B, n, K = points.shape[0], points.shape[1], beam_width
        with minigrad.no_grad():
            embedded, W1_encoded, (h, c) = self.encode(points)
            xp = backend.array_module(embedded.data)
            tile = xp.repeat(xp.arange(B), K)                      # row b * K + k is beam k of example b
            embedded, W1_encoded, h, c = (t[tile] for t in (embedded, W1_encoded, h, c))  # (B K, ...)
            rows = xp.arange(B * K)
            scores = xp.full((B, K), -xp.inf, dtype=embedded.data.dtype)
            scores[:, 0] = 0.0                                     # one live hypothesis to start with
            chosen = xp.zeros((B * K, n), dtype=bool)
            start = xp.full(B * K, PAD)
            finished = xp.zeros(B * K, dtype=bool)
            history = xp.zeros((B * K, 0), dtype=xp.int64)
            x = self._start_input(B * K)
            for step in range(self._max_steps(n, max_steps)):
                log_probs, (h, c) = self._step(x, (h, c), W1_encoded, chosen)       # (B K, n)
                # Candidates: n pointers for a live hypothesis; one, "stay finished" (column n, log-prob 0), else.
                candidates = xp.concatenate([log_probs, xp.full((B * K, 1), -xp.inf, log_probs.dtype)], axis=1)
                candidates[finished] = -xp.inf
                candidates[finished, n] = 0.0
                total = (scores.reshape(B * K, 1) + candidates).reshape(B, K * (n + 1))
                best = xp.argsort(-total, axis=1, kind="stable")[:, :K]               # (B, K)
                scores = xp.take_along_axis(total, best, axis=1)                     # (B, K)
                parent = (xp.arange(B)[:, None] * K + best // (n + 1)).reshape(-1)   # (B K,)
                choice = (best % (n + 1)).reshape(-1)                                # (B K,)
                dead = xp.isneginf(scores).reshape(-1)                               # fewer than K hypotheses exist
                h, c = h[parent], c[parent]
                chosen, start, finished, history = chosen[parent], start[parent], finished[parent], history[parent]
                finished |= dead                     # a -inf hypothesis only ever continues as "finished"
                choice = xp.where(finished, 0, choice)
                history = xp.concatenate([history, xp.where(finished, PAD, choice)[:, None]], axis=1)
                self._update_chosen(chosen, start, step, choice, ~finished)
                if self.close_cycle and step > 0:
                    finished |= choice == start                     # pointing back to the start ends it
                if self.close_cycle and finished.all():
                    break
                x = embedded[rows, choice]                                           # (B K, H)
            best = history[xp.arange(B) * K]                       # beams are sorted: beam 0 is the best
            length = int((best != PAD).sum(axis=1).max())          # drop the columns that are PAD in every row
            return minigrad.tensor(best[:, :length].copy()), minigrad.tensor(scores[:, 0].copy())


def sequence_nll(log_probs, targets):
    """The training loss: -mean over the non-PAD steps of log p(C_i | C_<i, P).

    log_probs (B, T, n) from PointerNetwork.forward; targets (B, T) int, PAD (-1) after a row's end."""
    if log_probs.ndim != 3 or targets.shape != log_probs.shape[:2]:
        raise ValueError(f"sequence_nll: expected log_probs (B, T, n) and targets (B, T), got {log_probs.shape} "
                         f"and {targets.shape}")
    t = targets.data if isinstance(targets, Tensor) else targets
    xp = backend.array_module(t)
    valid = t >= 0                                                                   # (B, T)
    picked = log_probs.gather(2, Tensor(xp.maximum(t, 0)[:, :, None])).squeeze(-1)   # (B, T)
    return -picked.masked_fill(~valid, 0.0).sum() / max(int(valid.sum()), 1)
