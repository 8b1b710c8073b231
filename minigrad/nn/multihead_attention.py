"""Multi-head attention (Vaswani et al., 2017) with torch.nn.MultiheadAttention's names and semantics.

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,   head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

The h projections of size E/h are one (E, E) matrix each, and the heads are a reshape:
(N, L, E) -> (N, L, h, E/h) -> (N, h, L, E/h). A torch state_dict loads unchanged (`in_proj_weight`,
`in_proj_bias`, `out_proj.weight`, ...). Mask conventions are torch's for this module, the opposite of
F.scaled_dot_product_attention's: a boolean `key_padding_mask` / `attn_mask` is True where a key is
IGNORED; a float mask is added to the scores. A query that ignores every key gets output 0 (torch: NaN).
"""
import math

import minigrad
from minigrad import backend
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.attention import masked_softmax
from minigrad.nn.layers import Linear, empty_parameter
from minigrad.nn.module import Module
from minigrad.tensor import Tensor


def _additive(mask, dtype, name):
    """A bool (True = ignore) or float mask as a Tensor to add to the scores; a float mask Tensor is kept as it
    is, so a learned one (requires_grad) gets its gradient."""
    m = mask.data if isinstance(mask, Tensor) else mask
    xp = backend.array_module(m)
    if m.dtype == backend.bool_:
        return Tensor(xp.where(m, -xp.inf, 0).astype(dtype))
    if not backend.is_floating(m.dtype):
        raise TypeError(f"MultiheadAttention: {name} must be bool or floating, got {m.dtype}")
    if isinstance(mask, Tensor) and mask.dtype == dtype:
        return mask
    return Tensor(m.astype(dtype, copy=False))


class MultiheadAttention(Module):
    """torch.nn.MultiheadAttention: same arguments, parameters, init, masks and return values."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None, generator=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be a positive multiple of num_heads "
                             f"{num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout, self.batch_first, self.add_zero_attn = dropout, batch_first, add_zero_attn
        if self._qkv_same_embed_dim:
            self.in_proj_weight = empty_parameter((3 * embed_dim, embed_dim), dtype, device)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = empty_parameter((embed_dim, embed_dim), dtype, device)
            self.k_proj_weight = empty_parameter((embed_dim, self.kdim), dtype, device)
            self.v_proj_weight = empty_parameter((embed_dim, self.vdim), dtype, device)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = empty_parameter((3 * embed_dim,), dtype, device)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype, generator=generator)
        if add_bias_kv:
            self.bias_k = empty_parameter((1, 1, embed_dim), dtype, device)
            self.bias_v = empty_parameter((1, 1, embed_dim), dtype, device)
        else:
            self.bias_k = self.bias_v = None
        self._reset_parameters(generator)

    def _reset_parameters(self, generator=None):
        """torch's init: xavier_uniform_ projections, zero biases, xavier_normal_ bias_k / bias_v."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight, generator=generator)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w, generator=generator)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k, generator=generator)
            init.xavier_normal_(self.bias_v, generator=generator)

    def _projections(self):
        """The q, k, v weights (E, E|kdim|vdim) and biases (E,) or None."""
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            weights = self.in_proj_weight.split(E, dim=0)
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        biases = self.in_proj_bias.split(E, dim=0) if self.in_proj_bias is not None else (None,) * 3
        return weights, biases

    def _check_inputs(self, query, key, value):
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"MultiheadAttention: query, key and value must all be 2-D (unbatched) or 3-D, got "
                             f"shapes {query.shape}, {key.shape}, {value.shape}")
        dims = (query.shape[-1], key.shape[-1], value.shape[-1])
        if dims != (self.embed_dim, self.kdim, self.vdim):
            raise ValueError(f"MultiheadAttention: expected feature sizes (embed_dim, kdim, vdim) = "
                             f"{(self.embed_dim, self.kdim, self.vdim)}, got {dims} from shapes "
                             f"{query.shape}, {key.shape}, {value.shape}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"MultiheadAttention: key {key.shape} and value {value.shape} must have the same "
                             f"batch and sequence sizes")
        batch_dim = 0 if self.batch_first else 1
        if batched and query.shape[batch_dim] != key.shape[batch_dim]:
            raise ValueError(f"MultiheadAttention: query {query.shape} and key {key.shape} have different batch "
                             f"sizes (batch_first={self.batch_first})")
        return batched

    def _score_bias(self, attn_mask, key_padding_mask, N, L, S, dtype):
        """attn_mask (L, S) or (N*H, L, S) and key_padding_mask (N, S) as one additive Tensor, or None."""
        H, bias = self.num_heads, None
        if attn_mask is not None:
            m = _additive(attn_mask, dtype, "attn_mask")
            if m.shape == (L, S):
                bias = m                                              # (L, S)
            elif m.shape == (N * H, L, S):
                bias = m.reshape(N, H, L, S)                          # (N, H, L, S)
            else:
                raise ValueError(f"MultiheadAttention: attn_mask must be ({L}, {S}) or ({N * H}, {L}, {S}) "
                                 f"(batch * num_heads, L, S), got {tuple(m.shape)}")
        if key_padding_mask is not None:
            m = _additive(key_padding_mask, dtype, "key_padding_mask")
            if m.shape != (N, S):
                raise ValueError(f"MultiheadAttention: key_padding_mask must be (batch, S) = ({N}, {S}), got "
                                 f"{tuple(m.shape)}")
            m = m.reshape(N, 1, 1, S)                                 # (N, 1, 1, S)
            bias = m if bias is None else bias + m
        return bias

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """query (L, N, E), key (S, N, kdim), value (S, N, vdim); (N, L, E) etc. with batch_first; or unbatched
        (L, E). Returns (output like query, weights (N, L, S) averaged over heads, or (N, H, L, S), or None).

        As in torch, `is_causal` is only a hint: the causal mask itself must be passed as attn_mask.
        """
        if is_causal and attn_mask is None:
            raise ValueError("MultiheadAttention: is_causal is a hint; pass the causal mask as attn_mask too "
                             "(as torch requires)")
        batched = self._check_inputs(query, key, value)
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.reshape(1, -1)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        N, L, E = query.shape
        H, D = self.num_heads, self.head_dim
        (w_q, w_k, w_v), (b_q, b_k, b_v) = self._projections()
        q = F.linear(query, w_q, b_q)                                 # (N, L, E)
        k = F.linear(key, w_k, b_k)                                   # (N, S, E)
        v = F.linear(value, w_v, b_v)                                 # (N, S, E)
        added = 0
        if self.bias_k is not None:                                   # one more learned key and value
            k = minigrad.cat([k, self.bias_k.expand(N, 1, E)], dim=1)  # (N, S+1, E)
            v = minigrad.cat([v, self.bias_v.expand(N, 1, E)], dim=1)  # (N, S+1, E)
            added += 1
        q = q.reshape(N, L, H, D).transpose(1, 2)                     # (N, H, L, D)
        k = k.reshape(N, -1, H, D).transpose(1, 2)                    # (N, H, S', D)
        v = v.reshape(N, -1, H, D).transpose(1, 2)                    # (N, H, S', D)
        if self.add_zero_attn:                                        # one more all-zero key and value
            zeros = minigrad.zeros(N, H, 1, D, dtype=q.dtype, device=q.device)
            k, v = minigrad.cat([k, zeros], dim=2), minigrad.cat([v, zeros], dim=2)  # (N, H, S'+1, D)
            added += 1
        S = k.shape[2] - added
        bias = self._score_bias(attn_mask, key_padding_mask, N, L, S, q.data.dtype)
        if bias is not None and added:                                # the added keys are never masked
            zeros = minigrad.zeros(*bias.shape[:-1], added, dtype=bias.dtype, device=bias.device)
            bias = minigrad.cat([bias, zeros], dim=-1)
        weights = masked_softmax(q @ k.transpose(-2, -1), 1.0 / math.sqrt(D), attn_mask=bias)  # (N, H, L, S')
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout, training=True)
        out = (weights @ v).transpose(1, 2).reshape(N, L, E)          # (N, L, E)
        out = self.out_proj(out)                                      # (N, L, E)
        if not batched:
            out = out.squeeze(0)                                      # (L, E)
        elif not self.batch_first:
            out = out.transpose(0, 1)                                 # (L, N, E)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(dim=1)                             # (N, L, S')
        return out, (weights if batched else weights.squeeze(0))

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"
