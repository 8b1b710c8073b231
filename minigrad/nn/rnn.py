"""Recurrent layers: LSTM and GRU (cells and multi-layer, optionally bidirectional), as in PyTorch.

LSTM (Hochreiter & Schmidhuber, 1997), gates in PyTorch's order i, f, g, o:
    i = sigma(W_ii x + b_ii + W_hi h + b_hi)      f = sigma(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)       o = sigma(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g                            h' = o * tanh(c')
    with proj_size P > 0 (Sak et al., 2014):      h' = W_hr (o * tanh(c')), of size P instead of H
GRU (Cho et al., 2014), gates in the order r, z, n:
    r = sigma(W_ir x + b_ir + W_hr h + b_hr)      z = sigma(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))  h' = (1 - z) * n + z * h

The gate weights are stacked: weight_ih_l{k} is (gates * hidden, input), weight_hh_l{k} is
(gates * hidden, hidden) (hidden = proj_size with projections, and weight_hr_l{k} is (proj_size, hidden)),
with the suffix _reverse for the backward direction, so PyTorch state dicts load by name. Every weight and bias starts as U(-1/sqrt(hidden), 1/sqrt(hidden)).
The input projection W_ih x + b_ih is computed for all time steps in one matmul; only the
recurrent part runs step by step, on per-step slices taken with `unbind`.
"""
import math

from minigrad import backend
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.layers import empty_parameter
from minigrad.nn.module import Module
from minigrad.ops import cat, stack
from minigrad.tensor import Tensor


def lstm_step(x_proj, h, c, weight_hh, bias_hh, weight_hr=None):
    """One LSTM step from the precomputed input projection x_proj = W_ih x + b_ih, (B, 4H); weight_hr (P, H)
    projects the new h to size P."""
    gates = x_proj + F.linear(h, weight_hh, bias_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()      # (B, H)
    h = o.sigmoid() * c.tanh()                        # (B, H)
    return (h if weight_hr is None else F.linear(h, weight_hr)), c


def gru_step(x_proj, h, weight_hh, bias_hh):
    """One GRU step from the precomputed input projection x_proj = W_ih x + b_ih, (B, 3H)."""
    r_x, z_x, n_x = x_proj.chunk(3, dim=-1)
    r_h, z_h, n_h = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)  # (B, H) each
    r, z = (r_x + r_h).sigmoid(), (z_x + z_h).sigmoid()
    n = (n_x + r * n_h).tanh()
    return (1 - z) * n + z * h


def _zeros(shape, like):
    return Tensor(backend.array_module(like.data).zeros(shape, dtype=like.dtype))


class _CellBase(Module):
    num_gates = 0

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, generator=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gh = self.num_gates * hidden_size
        self.weight_ih = empty_parameter((gh, input_size), dtype, device)
        self.weight_hh = empty_parameter((gh, hidden_size), dtype, device)
        if bias:
            self.bias_ih = empty_parameter((gh,), dtype, device)
            self.bias_hh = empty_parameter((gh,), dtype, device)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        bound = 1 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -bound, bound, generator=generator)

    def _batched(self, x):
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: expected input (batch, {self.input_size}) or "
                             f"({self.input_size},), got shape {x.shape}")
        return x if x.ndim == 2 else x.unsqueeze(0)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTMCell(_CellBase):
    """forward(input (B, in), (h, c) or None) -> (h', c'), each (B, hidden)."""

    num_gates = 4

    def forward(self, x, hx=None):
        batched = x.ndim == 2
        x = self._batched(x)
        if hx is None:
            h = c = _zeros((x.shape[0], self.hidden_size), x)
        else:
            h, c = (t if batched else t.unsqueeze(0) for t in hx)
        h, c = lstm_step(F.linear(x, self.weight_ih, self.bias_ih), h, c, self.weight_hh, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_CellBase):
    """forward(input (B, in), h or None) -> h', (B, hidden)."""

    num_gates = 3

    def forward(self, x, hx=None):
        batched = x.ndim == 2
        x = self._batched(x)
        h = _zeros((x.shape[0], self.hidden_size), x) if hx is None else hx if batched else hx.unsqueeze(0)
        h = gru_step(F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)


class _RNNBase(Module):
    num_gates = 0

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None, generator=None):
        super().__init__()
        name = type(self).__name__
        if num_layers < 1:
            raise ValueError(f"{name}: num_layers must be >= 1, got {num_layers}")
        if not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        if proj_size and (not isinstance(self, LSTM) or not 0 < proj_size < hidden_size):
            raise ValueError(f"{name}: proj_size={proj_size} needs an LSTM and 0 <= proj_size < hidden_size="
                             f"{hidden_size}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, dropout, bidirectional
        self.proj_size, self.num_directions = proj_size, 2 if bidirectional else 1
        gh, out_size = self.num_gates * hidden_size, proj_size or hidden_size  # out_size: the size of h
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else out_size * self.num_directions
            for suffix in self._suffixes(layer):
                setattr(self, "weight_ih" + suffix, empty_parameter((gh, layer_input), dtype, device))
                setattr(self, "weight_hh" + suffix, empty_parameter((gh, out_size), dtype, device))
                if bias:
                    setattr(self, "bias_ih" + suffix, empty_parameter((gh,), dtype, device))
                    setattr(self, "bias_hh" + suffix, empty_parameter((gh,), dtype, device))
                if proj_size:
                    setattr(self, "weight_hr" + suffix, empty_parameter((proj_size, hidden_size), dtype, device))
        self.reset_parameters(generator)

    def _suffixes(self, layer):
        return [f"_l{layer}", f"_l{layer}_reverse"][:self.num_directions]

    def _weights(self, suffix):
        """weight_ih, bias_ih and the weights of each step: (weight_hh, bias_hh) and weight_hr with projections."""
        p = self._parameters
        recurrent = (p["weight_hh" + suffix], p.get("bias_hh" + suffix))
        if self.proj_size:
            recurrent += (p["weight_hr" + suffix],)
        return p["weight_ih" + suffix], p.get("bias_ih" + suffix), recurrent

    reset_parameters = _CellBase.reset_parameters

    def _state_sizes(self):
        """The size of each state (h, or h and c)."""
        raise NotImplementedError

    def _step(self, x_proj, state, *recurrent):
        raise NotImplementedError

    def _run(self, x, state, suffix, reverse):
        """One layer in one direction over x (T, B, in); returns outputs (T, B, H) and the final state."""
        weight_ih, bias_ih, recurrent = self._weights(suffix)
        x_proj = F.linear(x, weight_ih, bias_ih).unbind(0)  # T x (B, gates * H), one matmul for all steps
        outputs = [None] * x.shape[0]
        for t in (reversed(range(x.shape[0])) if reverse else range(x.shape[0])):
            state = self._step(x_proj[t], state, *recurrent)
            outputs[t] = state[0] if isinstance(state, tuple) else state
        return stack(outputs, 0), state

    def _forward(self, x, initial_states):
        """x: (T, B, in), or (T, in) unbatched, or (B, T, in) with batch_first.
        initial_states: one tensor per state (h, or h and c), each (layers * directions, B, its size)."""
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: expected input (T, B, {self.input_size}) "
                             f"{'(batch_first: B, T, ...)' if self.batch_first else ''} or (T, {self.input_size}), "
                             f"got shape {x.shape}")
        batched = x.ndim == 3
        x = (x.transpose(0, 1) if self.batch_first else x) if batched else x.unsqueeze(1)  # (T, B, in)
        states = []
        for s, size in zip(initial_states, self._state_sizes()):
            shape = (self.num_layers * self.num_directions, x.shape[1], size)
            s = _zeros(shape, x) if s is None else s if batched else s.unsqueeze(1)
            if s.shape != shape:
                raise ValueError(f"{type(self).__name__}: initial state has shape {s.shape}, expected {shape}")
            states.append(s)
        finals = []
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                k = layer * self.num_directions + direction
                start = tuple(s[k] for s in states)
                out, final = self._run(x, start if len(start) > 1 else start[0], suffix, reverse=direction == 1)
                outputs.append(out)
                finals.append(final if isinstance(final, tuple) else (final,))
            x = cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]  # (T, B, directions * H)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        output = (x.transpose(0, 1) if self.batch_first else x) if batched else x.squeeze(1)
        final_states = [stack([f[i] for f in finals], 0) for i in range(len(states))]  # each (L * D, B, H)
        if not batched:
            final_states = [s.squeeze(1) for s in final_states]
        return output, final_states

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class LSTM(_RNNBase):
    """forward(input, (h_0, c_0) or None) -> (output, (h_n, c_n)).

    output: (T, B, directions * H) (batch first if batch_first); h_n, c_n: (layers * directions, B, H).
    With proj_size P > 0, h (so output and h_n) has size P in place of H.
    """

    num_gates = 4

    def _state_sizes(self):
        return self.proj_size or self.hidden_size, self.hidden_size

    def _step(self, x_proj, state, weight_hh, bias_hh, weight_hr=None):
        return lstm_step(x_proj, *state, weight_hh, bias_hh, weight_hr)

    def forward(self, x, hx=None):
        output, (h_n, c_n) = self._forward(x, (None, None) if hx is None else hx)
        return output, (h_n, c_n)


class GRU(_RNNBase):
    """forward(input, h_0 or None) -> (output, h_n), shapes as in LSTM."""

    num_gates = 3

    def _state_sizes(self):
        return (self.hidden_size,)

    def _step(self, x_proj, state, weight_hh, bias_hh):
        return gru_step(x_proj, state, weight_hh, bias_hh)

    def forward(self, x, hx=None):
        output, (h_n,) = self._forward(x, (hx,))
        return output, h_n
