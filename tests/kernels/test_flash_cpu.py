"""The Numba CPU FlashAttention against the NumPy reference (outputs, logsumexp and all gradients), and the
minigrad op `flash_attention` against PyTorch through book.testing.check_against_torch."""
import numpy as np
import pytest
import torch

from kernels.flash_attention import cpu, reference
import minigrad
from minigrad.nn.flash_attention import flash_attention
from book.testing import assert_close, check_against_torch

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [  # heads, T, S, D, Dv, causal, padding
    ("MHA", 13, 13, 8, 8, True, None),
    ("MHA", 40, 40, 16, 8, False, None),
    ("GQA", 40, 40, 8, 8, True, "random"),
    ("MQA", 63, 63, 8, 16, True, "random"),
    ("DiffQKV", 40, 63, 16, 16, False, "random"),
    ("DiffQKV-v", 63, 40, 8, 8, True, None),
    ("GQA", 63, 63, 8, 8, True, "leading"),   # the first queries of batch 0 see no key
    ("MHA", 40, 13, 8, 8, False, "all"),      # no query of batch 0 sees a key
    ("MQA", 130, 200, 8, 8, True, "random"),  # several default-sized tiles, the last ones ragged
]
BLOCKS = [dict(block_m=16, block_n=32), {}]  # small tiles (ragged last ones at T = 13, 40, 63), and the defaults


def case_id(case):
    heads, T, S, D, Dv, causal, padding = case
    return f"{heads}-T{T}-S{S}-D{D}-Dv{Dv}-{'causal' if causal else 'full'}-{padding}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("blocks", BLOCKS, ids=lambda b: "blocks{block_m}x{block_n}".format(**b) if b else "default")
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cpu_kernels_match_the_reference(case, blocks, dtype, attention_inputs):
    heads, T, S, D, Dv, causal, padding = case
    inputs = attention_inputs(heads=heads, T=T, S=S, D=D, Dv=Dv, padding=padding)
    mask, scale = inputs["key_padding_mask"], None if D == 8 else 0.3
    # the reference in float64 on the very inputs the kernel gets
    q, k, v, do = (inputs[name].astype(dtype) for name in ("q", "k", "v", "do"))
    want_o, want_lse = reference.forward(*(a.astype(np.float64) for a in (q, k, v)), causal, mask, scale)
    want_grads = reference.backward(*(a.astype(np.float64) for a in (q, k, v, do)), causal, mask, scale)
    o, lse = cpu.forward(q, k, v, causal, mask, scale, **blocks)
    grads = cpu.backward(q, k, v, o, lse, do, causal, mask, scale, **blocks)
    tol = TOLERANCES[dtype]
    assert o.dtype == lse.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, want_o, **tol)
    assert_close("L", lse, want_lse, **tol)
    for name, g, want in zip("qkv", grads, want_grads):
        assert g.shape == inputs[name].shape
        assert_close(f"d{name}", g, want, **tol)


def test_queries_that_see_no_key_give_zeros_not_nan(attention_inputs):
    inputs = attention_inputs(heads="DiffQKV", T=40, padding="leading")
    q, k, v, do = (inputs[name].astype(np.float32) for name in ("q", "k", "v", "do"))
    o, lse = cpu.forward(q, k, v, True, inputs["key_padding_mask"], block_m=16, block_n=16)
    dq, dk, dv = cpu.backward(q, k, v, o, lse, do, True, inputs["key_padding_mask"], block_m=16, block_n=16)
    assert (o[0, :, :5] == 0).all() and (lse[0, :, :5] == -np.inf).all() and (dq[0, :, :5] == 0).all()
    assert (dk[0, :, :5] == 0).all() and (dv[0, :, :5] == 0).all()
    assert all(np.isfinite(a).all() for a in (o, dq, dk, dv))


def test_nan_in_the_input_propagates(attention_inputs):
    inputs = attention_inputs(heads="MHA", T=13)
    q, k, v = (inputs[name].astype(np.float32) for name in ("q", "k", "v"))
    k[0, 0, 3, 0] = np.nan
    o, _ = cpu.forward(q, k, v)
    assert np.isnan(o[0, 0]).all() and np.isfinite(o[1]).all()


@pytest.mark.parametrize("bad, error, match", [
    (dict(v=np.zeros((2, 3, 13, 8))), ValueError, "multiple of the key heads .* and of the value heads"),
    (dict(q=np.zeros((2, 2, 13, 4))), ValueError, "must agree"),
    (dict(q=np.zeros((2, 2, 13, 8), np.float16)), TypeError, "float32 or float64"),
    (dict(key_padding_mask=np.ones((2, 13))), ValueError, "key_padding_mask must be bool"),
])
def test_bad_inputs_name_the_op(bad, error, match, attention_inputs):
    inputs = {**attention_inputs(heads="MHA", T=13), **bad}
    with pytest.raises(error, match=match) as info:
        cpu.forward(inputs["q"], inputs["k"], inputs["v"], key_padding_mask=inputs["key_padding_mask"])
    assert "flash_attention cpu forward" in str(info.value)
    with pytest.raises(error, match="flash_attention"):
        flash_attention(*(minigrad.tensor(inputs[n]) for n in "qkv"), key_padding_mask=inputs["key_padding_mask"])


# ---- the minigrad op against PyTorch's scaled_dot_product_attention -----------------------------------------

def torch_sdpa(q, k, v, causal=False, key_padding_mask=None, scale=None):
    """PyTorch's own attention, keys and values repeated to the query heads, the masks as one boolean mask."""
    Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
    k, v = k.repeat_interleave(Hq // k.shape[1], dim=1), v.repeat_interleave(Hq // v.shape[1], dim=1)
    seen = torch.ones(T, S, dtype=torch.bool).tril() if causal else torch.ones(T, S, dtype=torch.bool)
    if key_padding_mask is not None:
        seen = seen & key_padding_mask[:, None, None, :]
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=seen, scale=scale)


@pytest.mark.parametrize("heads, T, S, causal, padding", [
    ("MHA", 13, 13, True, None), ("GQA", 40, 40, False, "random"), ("DiffQKV", 63, 63, True, "random"),
    ("DiffQKV-v", 40, 63, False, None)])
def test_minigrad_op_matches_torch(heads, T, S, causal, padding, attention_inputs):
    inputs = attention_inputs(heads=heads, T=T, S=S, D=16, Dv=8, padding=padding)
    args = [inputs["q"], inputs["k"], inputs["v"]] + ([inputs["key_padding_mask"]] if padding else [])

    def mg_fn(q, k, v, mask=None):
        return flash_attention(q, k, v, causal=causal, key_padding_mask=mask)

    def torch_fn(q, k, v, mask=None):
        return torch_sdpa(q, k, v, causal, mask)
    check_against_torch(mg_fn, torch_fn, args)


def test_minigrad_op_composes_with_other_ops(attention_inputs):
    """Gradients flow through the op into the tensors that made q, k, v (one shared projection here)."""
    inputs = attention_inputs(heads="GQA", T=13, D=8)
    x, w = inputs["q"], np.random.default_rng(1).standard_normal((8, 8))

    def mg_fn(x, w):
        h = x @ w
        return flash_attention(h, h[:, :2], h[:, 2:], causal=True).tanh()

    def torch_fn(x, w):
        h = x @ w
        return torch_sdpa(h, h[:, :2], h[:, 2:], causal=True).tanh()
    check_against_torch(mg_fn, torch_fn, [x, w])
