"""LAMA, from Low Rank Factorization for Compact Multi-Head Self-Attention (Mehta et al., 2019, arXiv:1912.00835):
low-rank factorized multi-head attention over a global context.

Given encoder states H = (h_1 .. h_n), h_i in R^d (a BiGRU's, in the paper), and a mask of real tokens:

    c = (1 / n) sum_i h_i                                  the global context (mean over real tokens)
    s_{k,i} = tanh(c^T W_k h_i),   W_k = p_k q_k^T         head k's bilinear score, W_k of rank 1
            = tanh((p_k^T c) (q_k^T h_i))                  ... computed without ever forming W_k
    A_{k,:} = softmax_i(s_{k,i}),  s_{k,i} = -inf at pads  (m, n): one distribution per head
    M = A H                                                (m, d), flattened to m * d features

P = [p_1 .. p_m] and Q = [q_1 .. q_m] in R^{d x m} are the only parameters: 2 d m of them, against
m d^2 for m full bilinear heads and 4 d^2 for one Transformer self-attention layer. The cost is
O(n d m): each head compares every token with one query (the context), not with every other token.

The parameters are stored as `weight_p` (m, d) and `weight_q` (m, d), row k holding p_k (q_k), the layout
of a bias-free torch.nn.Linear(d, m): `F.linear(c, weight_p)` is P^T c.

Normalization across heads. The reference reimplementation (JohnGiorgi/compact-multi-head-self-attention-
pytorch) computes exactly tanh((p_k^T c)(q_k^T h_i)) with a "missing L2 norm" note that points at the
paper, and learns c as a parameter rather than averaging H. We follow the equation above by default
(c = masked mean, no normalization, 2 d m parameters); `normalize_heads=True` adds the L2 normalization
of each position's m scores across heads, s_{:,i} / ||s_{:,i}||_2, before the softmax.
"""
from minigrad import backend
from minigrad import nn
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.layers import empty_parameter
from minigrad.ops import einsum
from minigrad.tensor import Tensor


def padding_mask(op, hidden, mask):
    """Check hidden (B, n, d) and mask (B, n) (bool, True on real tokens, or None: all real).

    Returns the mask as a bool array (B, n); every sequence needs at least one real token."""
    if hidden.ndim != 3:
        raise ValueError(f"{op}: expected hidden states of shape (batch, length, dim), got {hidden.shape}")
    xp = backend.array_module(hidden.data)
    if mask is None:
        return xp.ones(hidden.shape[:2], dtype=backend.bool_)
    m = mask.data if isinstance(mask, Tensor) else xp.asarray(mask)
    if m.dtype != backend.bool_:
        raise ValueError(f"{op}: mask must be bool (True on real tokens), got dtype {m.dtype}")
    if m.shape != hidden.shape[:2]:
        raise ValueError(f"{op}: mask of shape {m.shape} does not match hidden states of shape {hidden.shape}: "
                         f"expected {hidden.shape[:2]}")
    if not m.any(axis=1).all():
        raise ValueError(f"{op}: every sequence needs at least one real token; rows "
                         f"{xp.flatnonzero(~m.any(axis=1)).tolist()} of the mask are all False")
    return m


def zero_pads(hidden, mask):
    """hidden (B, n, d) with the pad rows set to 0, so that pad contents (even inf or NaN) reach nothing."""
    return hidden.masked_fill(~mask[:, :, None], 0.0)


def masked_mean(hidden, mask):
    """c = sum_i mask_i h_i / sum_i mask_i: (B, n, d) with zero pads (zero_pads), bool (B, n) -> (B, d)."""
    counts = mask.sum(axis=1, keepdims=True).astype(hidden.dtype)                # (B, 1): real tokens
    return hidden.sum(dim=1) / Tensor(counts)                                    # (B, d)


def masked_attention(scores, mask):
    """softmax over positions with pads at -inf: scores (B, m, n), bool mask (B, n) -> A (B, m, n)."""
    return F.softmax(scores.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)  # pads get exactly 0


class LAMA(nn.Module):
    """Low-rank multi-head attention pooling: forward(hidden (B, n, d), mask (B, n)) -> (M (B, m d), A (B, m, n)).

    Parameters: weight_p, weight_q, each (num_heads, input_dim) = P^T, Q^T; 2 d m in all.
    """

    def __init__(self, input_dim, num_heads, normalize_heads=False, device=None, dtype=None, generator=None):
        super().__init__()
        if input_dim < 1 or num_heads < 1:
            raise ValueError(f"LAMA: input_dim and num_heads must be >= 1, got {input_dim} and {num_heads}")
        self.input_dim, self.num_heads, self.normalize_heads = input_dim, num_heads, normalize_heads
        self.out_features = num_heads * input_dim
        self.weight_p = empty_parameter((num_heads, input_dim), dtype, device)   # rows p_k
        self.weight_q = empty_parameter((num_heads, input_dim), dtype, device)   # rows q_k
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.xavier_uniform_(self.weight_p, generator=generator)
        init.xavier_uniform_(self.weight_q, generator=generator)

    def _check(self, hidden, mask):
        mask = padding_mask("LAMA", hidden, mask)
        if hidden.shape[-1] != self.input_dim:
            raise ValueError(f"LAMA: hidden states of shape {hidden.shape} do not match input_dim={self.input_dim}")
        return mask

    def scores(self, hidden, mask=None):
        """s_{k,i} = tanh((p_k^T c)(q_k^T h_i)) -> (B, m, n), the factorized form, before the softmax (0 at pads)."""
        mask = self._check(hidden, mask)
        return self._scores(zero_pads(hidden, mask), mask)

    def _scores(self, hidden, mask):
        c = masked_mean(hidden, mask)                                      # (B, d)
        pc = F.linear(c, self.weight_p)                                    # (B, m): p_k^T c
        qh = F.linear(hidden, self.weight_q).transpose(1, 2)               # (B, m, n): q_k^T h_i
        return self._normalized((pc.unsqueeze(2) * qh).tanh())             # (B, m, n)

    def bilinear_scores(self, hidden, mask=None):
        """The same scores from the explicit bilinear form tanh(c^T W_k h_i), with every W_k = p_k q_k^T
        materialized as an (m, d, d) tensor: O(m d^2) memory, for checking the factorization only."""
        mask = self._check(hidden, mask)
        hidden = zero_pads(hidden, mask)
        c = masked_mean(hidden, mask)                                                       # (B, d)
        weight = self.weight_p.unsqueeze(2) * self.weight_q.unsqueeze(1)                    # (m, d, d): W_k
        bilinear = einsum("bd,kde,bne->bkn", c, weight, hidden)                             # c^T W_k h_i
        return self._normalized(bilinear.tanh())                                            # (B, m, n)

    def _normalized(self, scores):
        return F.normalize(scores, p=2.0, dim=1) if self.normalize_heads else scores       # across heads

    def forward(self, hidden, mask=None):
        mask = self._check(hidden, mask)
        hidden = zero_pads(hidden, mask)                                   # (B, n, d)
        attention = masked_attention(self._scores(hidden, mask), mask)    # (B, m, n)
        pooled = attention @ hidden                                        # (B, m, d): M = A H
        return pooled.reshape(hidden.shape[0], self.out_features), attention

    def extra_repr(self):
        return f"input_dim={self.input_dim}, num_heads={self.num_heads}" + (
            ", normalize_heads=True" if self.normalize_heads else "")
