"""F.scaled_dot_product_attention against torch's, outputs and gradients of query, key and value."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad.backend import np
from minigrad.nn import functional as F
from book.testing import check_against_torch, random_array

SHAPES = [((2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6)),   # batch, heads, L=5 queries, S=7 keys, Ev=6
          ((5, 4), (5, 4), (5, 3)),                      # no batch dims
          ((2, 1, 6, 8), (1, 3, 6, 8), (1, 3, 6, 8))]    # broadcast batch dims


def _inputs(shapes, seed=0):
    return [random_array(s, seed + i) for i, s in enumerate(shapes)]


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_sdpa_matches_torch(shapes, is_causal, scale):
    check_against_torch(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale),
                        lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal,
                                                                                          scale=scale),
                        _inputs(shapes))


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_with_attn_mask(kind):
    shapes = SHAPES[0]
    rng = np.random.default_rng(3)
    keep = rng.random((5, 7)) > 0.3
    keep[2] = False  # a query that sees no key: output 0 and zero gradients, as torch's SDPA
    mask = keep if kind == "bool" else np.where(keep, rng.standard_normal((5, 7)), -np.inf)
    check_against_torch(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                        lambda q, k, v, m: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m),
                        _inputs(shapes) + [mask], no_grad=(3,))


@pytest.mark.parametrize("shapes", SHAPES[:1] + SHAPES[2:])
@pytest.mark.parametrize("bias_shape", [(5, 7), (3, 5, 7), (2, 1, 5, 7)], ids=["LS", "HLS", "B1LS"])
def test_sdpa_learned_float_mask_gets_its_gradient(shapes, bias_shape):
    """A float attn_mask that requires grad is a learned bias: its gradient is summed over the broadcast dims."""
    L, S = shapes[0][-2], shapes[1][-2]
    bias = random_array(bias_shape[:-2] + (L, S), seed=9)
    check_against_torch(lambda q, k, v, b: F.scaled_dot_product_attention(q, k, v, attn_mask=b),
                        lambda q, k, v, b: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=b),
                        _inputs(shapes) + [bias])


def test_sdpa_dropout_with_a_given_mask():
    shapes = SHAPES[0]
    keep = np.random.default_rng(4).random((2, 3, 5, 7)) > 0.25

    def reference(q, k, v):  # torch's attention with the same dropout draw, written out
        w = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)
        return (w * torch.from_numpy(keep).to(w.dtype) / 0.75) @ v
    check_against_torch(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.25, dropout_mask=keep),
                        reference, _inputs(shapes))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fully_masked_query_gets_zero_output_and_gradient(dtype):
    q, k, v = (mg.tensor(a.astype(dtype), requires_grad=True) for a in _inputs(SHAPES[0]))
    keep = np.ones((5, 7), dtype=bool)
    keep[2] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    out.backward(random_array(out.shape, 9).astype(dtype))
    np.testing.assert_array_equal(out.data[..., 2, :], 0)
    np.testing.assert_array_equal(q.grad.data[..., 2, :], 0)


def test_sdpa_errors_name_the_shapes():
    q, k = mg.zeros(2, 5, 4), mg.zeros(2, 7, 3)
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention: .*\(2, 5, 4\), \(2, 7, 3\)"):
        F.scaled_dot_product_attention(q, k, k)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((5, 5), dtype=bool), is_causal=True)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 2), max_size=1).map(tuple), st.sampled_from([(4, 2), (6, 3), (4, 1), (3, 3)]),
       st.integers(1, 4), st.integers(1, 4), st.booleans())
def test_sdpa_grouped_query_attention_matches_torch(batch, heads, L, S, is_causal):
    hq, hk = heads
    inputs = [random_array(batch + (hq, L, 3)), random_array(batch + (hk, S, 3), 1),
              random_array(batch + (hk, S, 2), 2)]                 # Hk heads shared by groups of Hq / Hk queries
    check_against_torch(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True),
        lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal,
                                                                          enable_gqa=True),
        inputs)


def test_sdpa_gqa_rejects_heads_that_do_not_divide():
    q, k = mg.zeros(1, 4, 2, 3), mg.zeros(1, 3, 2, 3)
    with pytest.raises(ValueError, match=r"enable_gqa needs .* multiple of Hk; got \(1, 4, 2, 3\), \(1, 3, 2, 3\)"):
        F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
