"""Positional encodings against PyTorch formulations written here: sinusoidal (the PyTorch tutorial's formula),
learned (F.embedding), RoPE in both pairings (split halves as Hugging Face's LLaMA; interleaved as Meta's LLaMA,
with complex numbers) and ALiBi (the slopes as in the paper's fairseq code; the bias as BLOOM adds it).

Outputs and gradients (of the rotated inputs, of the learned table, of q, k, v through attention) are compared in
float64 and float32. Two properties are checked as well: the RoPE score depends only on the relative position,
and the two RoPE pairings are one fixed permutation of the features apart.
"""
import math

import pytest
import torch

import minigrad as mg
from minigrad import nn
from minigrad.backend import np
from minigrad.nn import functional as F
from minigrad.nn.positional import (LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEmbedding,
                                    alibi_bias, alibi_slopes, apply_rotary, rotary_cos_sin, sinusoidal_encoding)
from book.testing import TOLERANCES, assert_close, check_against_torch, random_array


# ---- sinusoidal and learned ------------------------------------------------------------------

def torch_sinusoidal(length, d_model, dtype):
    """The PyTorch tutorial's PositionalEncoding table (extended to odd d_model)."""
    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term[:d_model // 2])
    return pe.to(dtype)


@pytest.mark.parametrize("length, d_model", [(50, 16), (7, 5), (1, 2), (513, 64)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sinusoidal_matches_the_torch_formula(length, d_model, dtype):
    ours = sinusoidal_encoding(length, d_model, dtype=getattr(mg, dtype))
    assert ours.dtype == np.dtype(dtype) and ours.shape == (length, d_model) and not ours.requires_grad
    assert_close(f"[{dtype}] PE", ours.data, torch_sinusoidal(length, d_model, getattr(torch, dtype)).numpy(),
                 **TOLERANCES[dtype])
    positions = np.array([[length - 1, 0], [length // 2, length - 1]])  # any integer shape, as an embedding lookup
    table = SinusoidalPositionalEmbedding(d_model)(mg.tensor(positions), dtype=getattr(mg, dtype))
    np.testing.assert_array_equal(table.data, ours.data[positions])


def test_sinusoidal_shift_is_a_rotation_of_each_pair():
    """Vaswani et al.'s reason for sinusoids: PE(p + k) is a fixed linear map of PE(p) (per pair, a rotation by k w_i)."""
    pe = torch_sinusoidal(80, 8, torch.float64).numpy()
    k, w = 7, 10000.0 ** (-np.arange(0, 8, 2) / 8)
    for i, wi in enumerate(w):
        rot = np.array([[np.cos(k * wi), np.sin(k * wi)], [-np.sin(k * wi), np.cos(k * wi)]])
        np.testing.assert_allclose(pe[k:, 2 * i:2 * i + 2], pe[:-k, 2 * i:2 * i + 2] @ rot.T, atol=1e-12)
    np.testing.assert_allclose(sinusoidal_encoding(80, 8, dtype=mg.float64).data, pe, atol=1e-12)


def test_learned_positions_match_embedding_and_stop_at_the_table():
    module = LearnedPositionalEmbedding(12, 5)
    positions = np.array([[0, 3, 11], [2, 2, 7]])

    def ours(weight):
        return nn.utils.functional_call(module, {"weight": weight}, (mg.tensor(positions),))
    check_against_torch(ours, lambda w: torch.nn.functional.embedding(torch.from_numpy(positions), w),
                        [random_array((12, 5))])
    with pytest.raises(ValueError, match=r"positions 0..12 are outside the table of 12 learned positions"):
        module(mg.arange(13))


# ---- RoPE -----------------------------------------------------------------------------------

def torch_rope_half(x, positions, base=10000.0):
    """Hugging Face LLaMA's formulation: cos/sin of cat(freqs, freqs), rotate_half(x) = cat(-x2, x1)."""
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.as_tensor(positions, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    x1, x2 = x[..., :d // 2], x[..., d // 2:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def torch_rope_interleaved(x, positions, base=10000.0):
    """Meta LLaMA's formulation: pairs (x_2i, x_2i+1) as complex numbers, multiplied by e^(i m theta_i)."""
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.as_tensor(positions, dtype=torch.float64)[:, None] * inv_freq[None, :]
    complex_dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    freqs_cis = torch.polar(torch.ones_like(freqs), freqs).to(complex_dtype)            # (T, d/2)
    x_complex = torch.view_as_complex(x.reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(x_complex * freqs_cis).flatten(-2)


ROPE_CASES = [((2, 3, 7, 6), np.arange(7)), ((5, 8), np.arange(5) + 30), ((1, 1, 4, 2), np.array([0, 9, 100, 511])),
              ((2, 2, 9, 64), np.arange(9) + 1000)]


@pytest.mark.parametrize("interleaved", [False, True], ids=["split_halves", "interleaved"])
@pytest.mark.parametrize("shape, positions", ROPE_CASES, ids=[str(s) for s, _ in ROPE_CASES])
def test_rope_matches_torch(interleaved, shape, positions):
    reference = torch_rope_interleaved if interleaved else torch_rope_half

    def ours(x):
        cos, sin = rotary_cos_sin(mg.tensor(positions), shape[-1], interleaved=interleaved, dtype=x.dtype)
        return apply_rotary(x, cos, sin, interleaved=interleaved)
    check_against_torch(ours, lambda x: reference(x, positions), [random_array(shape)])
    module = RotaryEmbedding(shape[-1], interleaved=interleaved)
    check_against_torch(lambda x: module(x, positions=positions), lambda x: reference(x, positions),
                        [random_array(shape, 1)])


def test_rope_module_default_positions_and_base():
    x = random_array((2, 5, 8))
    np.testing.assert_allclose(RotaryEmbedding(8, base=500.0)(mg.tensor(x)).data,
                               torch_rope_half(torch.from_numpy(x), np.arange(5), base=500.0).numpy(), rtol=1e-12)


def test_rope_conventions_are_a_fixed_permutation_apart():
    """interleaved(x) = P^T halves(P x), P taking the even features first, then the odd ones."""
    d, positions = 10, np.arange(6) + 3
    perm = np.r_[0:d:2, 1:d:2]                   # [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]
    inverse = np.argsort(perm)
    x = random_array((2, 6, d))
    for halves, interleaved in [(torch_rope_half, torch_rope_interleaved),
                                (lambda t, p: RotaryEmbedding(d)(mg.tensor(t.numpy()), p).data,
                                 lambda t, p: RotaryEmbedding(d, interleaved=True)(mg.tensor(t.numpy()), p).data)]:
        want = np.asarray(interleaved(torch.from_numpy(x), positions))
        got = np.asarray(halves(torch.from_numpy(x[..., perm].copy()), positions))[..., inverse]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    q, k = random_array((6, d), 1), random_array((6, d), 2)  # the attention scores are the same with permuted q, k
    rope_h, rope_i = RotaryEmbedding(d), RotaryEmbedding(d, interleaved=True)
    scores_i = rope_i(mg.tensor(q), positions).data @ rope_i(mg.tensor(k), positions).data.T
    scores_h = rope_h(mg.tensor(q[:, perm]), positions).data @ rope_h(mg.tensor(k[:, perm]), positions).data.T
    np.testing.assert_allclose(scores_h, scores_i, rtol=1e-12, atol=1e-12)
    assert not np.allclose(rope_h(mg.tensor(q), positions).data, rope_i(mg.tensor(q), positions).data)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_score_depends_only_on_the_relative_position(interleaved):
    rope = RotaryEmbedding(16, interleaved=interleaved)
    q, k = random_array((1, 16), 3), random_array((1, 16), 4)

    def score(m, n):
        return float((rope(mg.tensor(q), [m]).data * rope(mg.tensor(k), [n]).data).sum())
    for m, n, shift in [(5, 2, 100), (0, 7, 37), (300, 300, 1000)]:
        assert math.isclose(score(m, n), score(m + shift, n + shift), rel_tol=1e-9, abs_tol=1e-12)
    assert not math.isclose(score(5, 2), score(2, 5), rel_tol=1e-3)
    np.testing.assert_allclose(score(4, 4), float((q * k).sum()), rtol=1e-12)   # same position: no rotation left


def test_rope_bad_input_is_explained():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match=r"expected x of shape \(..., T, 8\)"):
        RotaryEmbedding(8)(mg.randn(2, 3, 6))
    with pytest.raises(ValueError, match="does not broadcast"):
        apply_rotary(mg.randn(3, 4), *rotary_cos_sin(5, 4))
    with pytest.raises(TypeError, match="integers"):
        rotary_cos_sin(np.array([0.5]), 4)


# ---- ALiBi ----------------------------------------------------------------------------------

def fairseq_slopes(n):
    """The paper's code (ofirpress/attention_with_linear_biases), as a recursion."""
    def power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + fairseq_slopes(2 * closest)[0::2][:n - closest]


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8) == [2.0 ** -k for k in range(1, 9)]
    np.testing.assert_allclose(alibi_slopes(4), [1 / 4, 1 / 16, 1 / 64, 1 / 256])
    np.testing.assert_allclose(alibi_slopes(12), [2.0 ** -k for k in range(1, 9)] + [2 ** -0.5, 2 ** -1.5,
                                                                                        2 ** -2.5, 2 ** -3.5])
    for n in range(1, 33):
        np.testing.assert_allclose(alibi_slopes(n), fairseq_slopes(n), rtol=1e-12, err_msg=str(n))


def torch_alibi_bias(num_heads, L, S, causal):
    m = torch.tensor(fairseq_slopes(num_heads), dtype=torch.float64)
    i = torch.arange(L)[:, None] + (S - L)
    j = torch.arange(S)[None, :]
    if not causal:
        return -m[:, None, None] * (i - j).abs()
    return (-m[:, None, None] * (i - j)).masked_fill(j > i, float("-inf"))


@pytest.mark.parametrize("H, L, S, causal", [(8, 6, 6, True), (6, 3, 7, True), (5, 4, 4, False), (1, 1, 9, True)])
def test_alibi_bias_matches_torch(H, L, S, causal):
    ours = alibi_bias(H, L, S, causal=causal, dtype=mg.float64)
    assert ours.shape == (H, L, S) and ours.dtype == np.float64
    np.testing.assert_array_equal(ours.data, torch_alibi_bias(H, L, S, causal).numpy())


@pytest.mark.parametrize("H, T", [(4, 9), (6, 5)])
def test_alibi_attention_matches_bloom_style_bias(H, T):
    """BLOOM adds m_h * j (the key's position only) and a causal mask: the same softmax, since -m_h * i is constant
    along each row. Outputs and the gradients of q, k and v must agree."""
    def ours(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=alibi_bias(H, T, dtype=q.dtype))

    def bloom(q, k, v):
        slopes = torch.tensor(fairseq_slopes(H), dtype=q.dtype)
        bias = slopes[:, None, None] * torch.arange(T, dtype=q.dtype)[None, None, :]        # (H, 1, T)
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(causal, -torch.inf))
    check_against_torch(ours, bloom, [random_array((2, H, T, 8), s) for s in (1, 2, 3)])


def test_alibi_bad_input_is_explained():
    with pytest.raises(ValueError, match="key_len 3 must be at least query_len 4"):
        alibi_bias(2, 4, 3)
    with pytest.raises(ValueError, match="num_heads must be positive"):
        alibi_slopes(0)
    with pytest.raises(ValueError, match="expected 3 slopes"):
        alibi_bias(3, 4, slopes=[0.5, 0.25])
