"""The tiled NumPy FlashAttention (kernels/flash_attention/tiled.py, the notebook's algorithm) against the definition
(reference.py) and against PyTorch's scaled_dot_product_attention and its autograd: O, L and the gradients of q, k
and v; float64 to rounding, float32 at a realistic tolerance; causal and not, key padding, grouped heads, tile
sizes that do not divide the lengths."""
import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F

from kernels.flash_attention import reference, tiled
from book.testing import assert_close

TIGHT = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [  # heads, T, S, D, Dv, causal, padding
    ("MHA", 13, 13, 8, 8, False, None),
    ("MHA", 13, 13, 8, 8, True, None),
    ("MHA", 40, 40, 16, 8, False, None),
    ("GQA", 40, 40, 8, 8, True, "random"),
    ("MQA", 40, 13, 8, 16, False, "random"),
    ("DiffQKV", 13, 40, 16, 16, True, "random"),
    ("DiffQKV-v", 40, 40, 8, 8, True, None),
]
BLOCKS = [dict(block_q=5, block_k=7), dict(block_q=16, block_k=3), dict(block_q=64, block_k=64), {}]


def case_id(case):
    heads, T, S, D, Dv, causal, padding = case
    return f"{heads}-T{T}-S{S}-D{D}-Dv{Dv}-{'causal' if causal else 'full'}-{padding}"


def blocks_id(blocks):
    return "blocks{block_q}x{block_k}".format(**blocks) if blocks else "default"


NAMES = ("O", "L", "dq", "dk", "dv")


def run_tiled(q, k, v, do, causal, mask, scale, blocks):
    """(O, L, dq, dk, dv) from the tiled forward and backward."""
    o, lse = tiled.forward(q, k, v, causal, mask, scale, **blocks)
    return (o, lse) + tiled.backward(q, k, v, o, lse, do, causal, mask, scale, **blocks)


def assert_all_close(got, want, **tol):
    for name, a, b in zip(NAMES, got, want):
        assert_close(name, a, b, **tol)  # L: -inf where a query sees no key, in both


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("blocks", BLOCKS, ids=blocks_id)
@pytest.mark.parametrize("case", CASES + [
    ("GQA", 40, 40, 8, 8, True, "leading"),   # the first queries of batch 0 see no key
    ("MHA", 40, 13, 8, 8, False, "all"),      # no query of batch 0 sees a key
], ids=case_id)
def test_tiled_matches_the_reference(case, blocks, dtype, attention_inputs):
    heads, T, S, D, Dv, causal, padding = case
    inputs = attention_inputs(heads=heads, T=T, S=S, D=D, Dv=Dv, padding=padding)
    mask, scale = inputs["key_padding_mask"], None if D == 8 else 0.3
    q, k, v, do = (inputs[name].astype(dtype) for name in ("q", "k", "v", "do"))
    got = run_tiled(q, k, v, do, causal, mask, scale, blocks)
    assert all(a.dtype == dtype for a in got)
    assert [a.shape for a in got[2:]] == [q.shape, k.shape, v.shape]
    q, k, v, do = (a.astype(np.float64) for a in (q, k, v, do))  # the definition, on the very same inputs
    want = reference.forward(q, k, v, causal, mask, scale) + reference.backward(q, k, v, do, causal, mask, scale)
    assert_all_close(got, want, **TIGHT[dtype])


def sdpa(inputs, causal, mask, scale, dtype):
    """O and the gradients of q, k, v from torch.nn.functional.scaled_dot_product_attention (grouped heads repeated,
    causal and padding as one boolean attn_mask), and L from torch.logsumexp of the masked scores."""
    t = {name: torch.tensor(inputs[name].astype(dtype), requires_grad=True) for name in ("q", "k", "v")}
    (B, Hq, T, D), S = t["q"].shape, t["k"].shape[2]
    k = t["k"].repeat_interleave(Hq // t["k"].shape[1], dim=1)
    v = t["v"].repeat_interleave(Hq // t["v"].shape[1], dim=1)
    seen = torch.ones(B, 1, T, S, dtype=torch.bool)
    if causal:
        seen = seen & torch.ones(T, S, dtype=torch.bool).tril()
    if mask is not None:
        seen = seen & torch.as_tensor(mask)[:, None, None, :]
    o = torch_F.scaled_dot_product_attention(t["q"], k, v, attn_mask=seen, scale=scale)
    o.backward(torch.tensor(inputs["do"].astype(dtype)))
    with torch.no_grad():
        scores = (t["q"] @ k.transpose(-1, -2)) * (D ** -0.5 if scale is None else scale)
        lse = torch.logsumexp(scores.masked_fill(~seen, -torch.inf), dim=-1)
    return (o.detach().numpy(), lse.numpy()) + tuple(t[name].grad.numpy() for name in ("q", "k", "v"))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("blocks", BLOCKS[:2], ids=blocks_id)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_tiled_matches_torch_sdpa(case, blocks, dtype, attention_inputs):
    heads, T, S, D, Dv, causal, padding = case
    inputs = attention_inputs(heads=heads, T=T, S=S, D=D, Dv=Dv, padding=padding)
    mask, scale = inputs["key_padding_mask"], None if D == 8 else 0.3
    if mask is not None:
        mask = mask.copy()
        mask[:, 0] = True  # every query sees a key: SDPA's rows with no key are not defined the same way
    q, k, v, do = (inputs[name].astype(dtype) for name in ("q", "k", "v", "do"))
    assert_all_close(run_tiled(q, k, v, do, causal, mask, scale, blocks), sdpa(inputs, causal, mask, scale, dtype),
                     **TIGHT[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_queries_that_see_no_key_give_zeros_without_nan_or_warnings(dtype, attention_inputs):
    inputs = attention_inputs(heads="DiffQKV", T=40, padding="leading")
    q, k, v, do = (inputs[name].astype(dtype) for name in ("q", "k", "v", "do"))
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        o, lse, dq, dk, dv = run_tiled(q, k, v, do, True, inputs["key_padding_mask"], None,
                                         dict(block_q=3, block_k=4))
    assert (o[0, :, :5] == 0).all() and (lse[0, :, :5] == -np.inf).all() and (dq[0, :, :5] == 0).all()
    assert (dk[0, :, :5] == 0).all() and (dv[0, :, :5] == 0).all()  # padded keys get no gradient
    assert all(np.isfinite(a).all() for a in (o, dq, dk, dv))


def test_tile_sizes_change_only_the_rounding(attention_inputs):
    inputs = attention_inputs(heads="GQA", T=40, padding="random")
    q, k, v, do, mask = (inputs[name] for name in ("q", "k", "v", "do", "key_padding_mask"))
    first = run_tiled(q, k, v, do, True, mask, None, dict(block_q=1, block_k=1))
    for blocks in (dict(block_q=7, block_k=13), dict(block_q=40, block_k=40)):
        assert_all_close(run_tiled(q, k, v, do, True, mask, None, blocks), first, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("bad, error, match", [
    (dict(v=np.zeros((2, 3, 13, 8))), ValueError, "multiple of the key heads"),
    (dict(q=np.zeros((2, 2, 13, 8), np.float16)), TypeError, "float32 or float64"),
    (dict(key_padding_mask=np.ones((2, 13))), ValueError, "key_padding_mask must be bool"),
    (dict(block_q=0), ValueError, "block_q must be a positive int"),
    (dict(block_k=2.0), ValueError, "block_k must be a positive int"),
])
def test_bad_inputs_name_the_op(bad, error, match, attention_inputs):
    inputs = {**attention_inputs(heads="MHA", T=13), **bad}
    inputs.pop("do")
    with pytest.raises(error, match=match) as info:
        tiled.forward(**inputs)
    assert "flash_attention tiled forward" in str(info.value)
