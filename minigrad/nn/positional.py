"""Positional information for attention, which by itself ignores order: four ways to put it back.

Sinusoidal (Vaswani et al., 2017), added to the token embeddings; fixed, defined for every position:
    PE(p, 2i) = sin(p / base^(2i/d)),    PE(p, 2i+1) = cos(p / base^(2i/d))

Learned (GPT-2, BERT): one trained vector per position, an embedding table; it has no row past the
last position seen in training, so it cannot be evaluated on longer sequences.

RoPE, rotary position embedding (Su et al., 2021): rotate each pair of query/key features by an angle
proportional to the position, theta_i = base^(-2i/d), i = 0 .. d/2 - 1:
    RoPE(x, m) = x * cos(m theta) + rotate(x) * sin(m theta)
Rotations compose, R(m)^T R(n) = R(n - m), so the score <RoPE(q, m), RoPE(k, n)> depends on the
positions only through m - n. Two conventions pair the features differently:
  - split halves ("rotate_half", Hugging Face LLaMA/GPT-NeoX, the default here): feature i pairs with
    feature i + d/2, rotate(x) = cat(-x[d/2:], x[:d/2]);
  - interleaved (the RoFormer paper, Meta's LLaMA code, `interleaved=True`): feature 2i pairs with
    2i+1, rotate(x)[2i] = -x[2i+1], rotate(x)[2i+1] = x[2i].
They are the same map up to a fixed permutation of the features (evens first, then odds), which is
why checkpoints convert between them by permuting the rows of W_q and W_k.

ALiBi, attention with linear biases (Press et al., 2022): no embedding at all; head h adds
-m_h (i - j) to the score of query i on key j, with the geometric slopes m_h = 2^(-8h/H), h = 1..H,
for H a power of two (see `alibi_slopes` for other H).
"""
import math

from minigrad import backend
from minigrad.nn.layers import Embedding
from minigrad.nn.module import Module
from minigrad.ops.elementwise import data_broadcasting_to
from minigrad.tensor import Tensor, record


def _positions_array(positions, op):
    """Integer positions (a Tensor, an array, a range or an int count) as an array."""
    if isinstance(positions, int):
        return backend.np.arange(positions)
    p = positions.data if isinstance(positions, Tensor) else backend.np.asarray(positions)
    if p.dtype.kind not in "iu":
        raise TypeError(f"{op}: positions must be integers, got {p.dtype}")
    return p


def _inverse_frequencies(xp, dim, base):
    """base^(-2i/d), i = 0 .. ceil(d/2) - 1, in float64."""
    return base ** (-xp.arange(0, dim, 2, dtype=backend.float64) / dim)


# ---------------------------------------------------------------------------------------------
# Sinusoidal and learned absolute positions
# ---------------------------------------------------------------------------------------------

def sinusoidal_encoding(positions, dim, base=10000.0, dtype=None):
    """positions (...,) integers (or an int T for 0..T-1) -> (..., dim) with PE(p, 2i) = sin(p / base^(2i/d)),
    PE(p, 2i+1) = cos(p / base^(2i/d)) (Vaswani et al., section 3.5). Computed in float64, then cast."""
    if dim <= 0:
        raise ValueError(f"sinusoidal_encoding: dim must be positive, got {dim}")
    p = _positions_array(positions, "sinusoidal_encoding")
    xp = backend.array_module(p)
    angles = p[..., None].astype(backend.float64) * _inverse_frequencies(xp, dim, base)  # (..., ceil(d/2))
    pe = xp.empty(p.shape + (dim,), dtype=backend.float64)                               # (..., d)
    pe[..., 0::2] = xp.sin(angles)
    pe[..., 1::2] = xp.cos(angles[..., :dim // 2])
    return Tensor(pe.astype(dtype or backend.float32))


class SinusoidalPositionalEmbedding(Module):
    """Fixed sinusoidal vectors, no parameters: forward(positions (...,), dtype=float32) -> (..., embedding_dim).

    Defined for any position, so a model can at least be *run* on sequences longer than in training."""

    def __init__(self, embedding_dim, base=10000.0):
        super().__init__()
        self.embedding_dim, self.base = embedding_dim, base

    def forward(self, positions, dtype=None):
        return sinusoidal_encoding(positions, self.embedding_dim, self.base, dtype)  # (..., C)

    def extra_repr(self):
        return f"{self.embedding_dim}, base={self.base:g}"


class LearnedPositionalEmbedding(Embedding):
    """One trained vector per position 0 .. num_positions - 1 (an Embedding, N(0, 1) init as torch's).

    forward(positions) raises a ValueError past the table instead of an index error: learned positions
    do not exist beyond the longest training length."""

    def __init__(self, num_positions, embedding_dim, device=None, dtype=None, generator=None):
        super().__init__(num_positions, embedding_dim, device=device, dtype=dtype, generator=generator)

    def forward(self, positions):
        p = _positions_array(positions, "LearnedPositionalEmbedding")
        if p.size and (int(p.max()) >= self.num_embeddings or int(p.min()) < 0):
            raise ValueError(f"LearnedPositionalEmbedding: positions {int(p.min())}..{int(p.max())} are outside "
                             f"the table of {self.num_embeddings} learned positions (0..{self.num_embeddings - 1}); "
                             f"a learned position exists only if it was in the table when training")
        return super().forward(positions if isinstance(positions, Tensor) else Tensor(p))  # (..., C)


# ---------------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------------

def rotary_cos_sin(positions, dim, base=10000.0, interleaved=False, dtype=None):
    """cos(m theta) and sin(m theta) laid out per feature, (..., dim) each, theta_i = base^(-2i/dim).

    Split halves: [theta_0 .. theta_{d/2-1}, theta_0 .. theta_{d/2-1}]; interleaved: [theta_0, theta_0, theta_1, ...].
    """
    if dim <= 0 or dim % 2:
        raise ValueError(f"rotary_cos_sin: dim must be a positive even number (features rotate in pairs), got {dim}")
    p = _positions_array(positions, "rotary_cos_sin")
    xp = backend.array_module(p)
    angles = p[..., None].astype(backend.float64) * _inverse_frequencies(xp, dim, base)  # (..., d/2)
    angles = xp.repeat(angles, 2, axis=-1) if interleaved else xp.concatenate([angles, angles], axis=-1)  # (..., d)
    dtype = dtype or backend.float32
    return xp.cos(angles).astype(dtype), xp.sin(angles).astype(dtype)


def _rotate(xp, x, interleaved):
    """The 90-degree rotation of each feature pair: (a, b) -> (-b, a). Its transpose is its negative."""
    out = xp.empty_like(x)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = -x[..., 1::2], x[..., 0::2]
    else:
        half = x.shape[-1] // 2
        out[..., :half], out[..., half:] = -x[..., half:], x[..., :half]
    return out


def apply_rotary(x, cos, sin, interleaved=False):
    """RoPE(x) = x * cos + rotate(x) * sin for x (..., T, D) and cos, sin broadcastable to it (e.g. (T, D)).

    One op with the backward of a rotation, its transpose: dx = g * cos - rotate(g * sin)."""
    if x.ndim == 0 or x.shape[-1] % 2:
        raise ValueError(f"apply_rotary: the last dim of x must be even (features rotate in pairs), got shape "
                         f"{x.shape}")
    cos, sin = (data_broadcasting_to("apply_rotary", name, c, x) for name, c in (("cos", cos), ("sin", sin)))
    xp = backend.array_module(x.data)
    cos, sin = (backend.to_device(c, x.device).astype(x.dtype, copy=False) for c in (cos, sin))
    out = x.data * cos + _rotate(xp, x.data, interleaved) * sin

    def backward(g):
        return (g * cos - _rotate(xp, g * sin, interleaved),)
    return record(out, (x,), backward, "apply_rotary")


class RotaryEmbedding(Module):
    """RoPE for heads of size `dim`: forward(x (..., T, dim), positions=None) rotates x by its positions.

    positions: (T,) integers, default 0..T-1 (pass offset + arange(T) when a cache holds earlier keys).
    No parameters; cos and sin are recomputed per call from the positions (cheap next to attention)."""

    def __init__(self, dim, base=10000.0, interleaved=False):
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"RotaryEmbedding: dim must be a positive even number, got {dim}")
        self.dim, self.base, self.interleaved = dim, base, interleaved

    def forward(self, x, positions=None):
        if x.ndim < 2 or x.shape[-1] != self.dim:
            raise ValueError(f"RotaryEmbedding: expected x of shape (..., T, {self.dim}), got {x.shape}")
        positions = x.shape[-2] if positions is None else positions
        cos, sin = rotary_cos_sin(positions, self.dim, self.base, self.interleaved, x.dtype)  # (T, D) each
        return apply_rotary(x, cos, sin, self.interleaved)                                   # (..., T, D)

    def extra_repr(self):
        return f"dim={self.dim}, base={self.base:g}, interleaved={self.interleaved}"


# ---------------------------------------------------------------------------------------------
# ALiBi
# ---------------------------------------------------------------------------------------------

def alibi_slopes(num_heads):
    """Press et al.'s head slopes, a list of floats.

    H a power of two: m_h = 2^(-8h/H), h = 1..H (H = 8: 1/2, 1/4, ..., 1/256). Otherwise, with n the largest
    power of two below H: the n slopes for n heads, then every other slope of the 2n-head sequence
    (the odd powers 2^(-8(2h-1)/(2n))), until there are H."""
    if num_heads <= 0:
        raise ValueError(f"alibi_slopes: num_heads must be positive, got {num_heads}")
    n = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]
    slopes += [2.0 ** (-8.0 * h / (2 * n)) for h in range(1, 2 * n, 2)][:num_heads - n]
    return slopes


def alibi_bias(num_heads, query_len, key_len=None, causal=True, slopes=None, dtype=None, device=None):
    """The additive score bias (num_heads, query_len, key_len) as a Tensor, to pass as a float attn_mask.

    Query i sits at position i + key_len - query_len (the last queries, as with a cache of earlier keys).
    causal: -m_h (i - j) for j <= i and -inf for j > i (the bias and the causal mask in one);
    not causal: -m_h |i - j| (a symmetric variant for encoders). Built on `device` ('cpu' by default)."""
    key_len = query_len if key_len is None else key_len
    if key_len < query_len:
        raise ValueError(f"alibi_bias: key_len {key_len} must be at least query_len {query_len}")
    xp = backend.module_for_device(device or "cpu")
    m = xp.asarray(alibi_slopes(num_heads) if slopes is None else slopes, dtype=backend.float64)  # (H,)
    if m.shape != (num_heads,):
        raise ValueError(f"alibi_bias: expected {num_heads} slopes, got shape {m.shape}")
    distance = (xp.arange(query_len)[:, None] + key_len - query_len) - xp.arange(key_len)[None, :]  # (L, S) i - j
    bias = -m[:, None, None] * (distance if causal else xp.abs(distance))                           # (H, L, S)
    if causal:
        bias = xp.where(distance < 0, -xp.inf, bias)
    return Tensor(bias.astype(dtype or backend.float32))
