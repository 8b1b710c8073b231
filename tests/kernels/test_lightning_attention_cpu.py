"""The Numba CPU blocked Lightning Attention against the NumPy reference (outputs and the gradients of q, k, v and
the slopes), and the minigrad op `lightning_attention` against PyTorch through check_against_torch, with fixed and
with learned slopes."""
import numpy as np
import pytest
import torch

from kernels.lightning_attention import cpu, reference, transnormer_slopes
import minigrad
from minigrad.nn.lightning_attention import lightning_attention
from book.testing import assert_close, check_against_torch

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [("MHA", 13, 8), ("GQA", 40, 4), ("MQA", 63, 8), ("DiffQKV", 63, 8), ("DiffQKV-v", 40, 4),
         ("GQA", 200, 8)]  # heads, T, D; T = 200: several default-sized blocks, the last one ragged


def slopes(heads):
    return np.array(transnormer_slopes(heads - 1) + [0.0]) * 4.0      # strong decays, and one head without


def torch_lightning(q, k, v, slope, mask=None):
    Hq, T = q.shape[1], q.shape[2]
    k, v = k.repeat_interleave(Hq // k.shape[1], dim=1), v.repeat_interleave(Hq // v.shape[1], dim=1)
    if mask is not None:
        k = k * mask[:, None, :, None]
    gap = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).to(q.dtype)
    decay = torch.where(gap >= 0, torch.exp(-slope[:, None, None] * gap.clamp(min=0)), 0)
    return ((q @ k.transpose(-1, -2)) * decay) @ v


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("chunk", [16, 64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-T{c[1]}-D{c[2]}")
def test_cpu_kernels_match_the_reference(case, chunk, dtype, attention_inputs):
    heads, T, D = case
    inputs = attention_inputs(heads=heads, T=T, D=D, Dv=5)
    q, k, v, do = (inputs[n].astype(dtype) for n in ("q", "k", "v", "do"))
    slope = slopes(q.shape[1]).astype(dtype)
    want_o = reference.forward(*(a.astype(np.float64) for a in (q, k, v, slope)))
    want_grads = reference.backward(*(a.astype(np.float64) for a in (q, k, v, do, slope)))
    o = cpu.forward(q, k, v, slope, chunk=chunk)
    grads = cpu.backward(q, k, v, do, slope, chunk=chunk)
    tol = TOLERANCES[dtype]
    assert o.dtype == dtype and all(g.dtype == dtype for g in grads)
    for name, got, want in [("O", o, want_o)] + list(zip(["dq", "dk", "dv", "dslope"], grads, want_grads)):
        assert got.shape == want.shape
        assert_close(name, got, want, tol["rtol"], tol["atol"] * max(1.0, np.abs(want).max()))


def test_without_decay_it_is_unnormalized_causal_linear_attention(attention_inputs):
    from kernels.linear_attention import reference as linear_reference
    inputs = attention_inputs(heads="DiffQKV", T=40, D=4)
    got = cpu.forward(inputs["q"], inputs["k"], inputs["v"], np.zeros(4), chunk=16)
    want, _ = linear_reference.forward(inputs["q"], inputs["k"], inputs["v"], normalize=False)
    assert_close("O", got, want, rtol=1e-10, atol=1e-12)


# ---- the minigrad op against PyTorch -----------------------------------------------------------------------

@pytest.mark.parametrize("heads, T, padding", [("MHA", 13, None), ("GQA", 40, "random"), ("DiffQKV", 63, None),
                                               ("MQA", 40, "all")])
def test_minigrad_op_with_learned_slopes_matches_torch(heads, T, padding, attention_inputs):
    inputs = attention_inputs(heads=heads, T=T, D=8, Dv=4, padding=padding)
    args = [inputs["q"], inputs["k"], inputs["v"], slopes(inputs["q"].shape[1])] + \
        ([inputs["key_padding_mask"]] if padding else [])

    def mg_fn(q, k, v, slope, mask=None):
        return lightning_attention(q, k, v, slope, key_padding_mask=mask)
    check_against_torch(mg_fn, torch_lightning, args, tolerances={"float32": dict(rtol=2e-4, atol=1e-4)})


def test_minigrad_op_with_fixed_slopes_and_silu_features(attention_inputs):
    """TransNormerLLM's use: SiLU on q and k, fixed slopes (a list), gradients into what made q, k, v."""
    inputs = attention_inputs(heads="GQA", T=40, D=8)
    fixed = transnormer_slopes(4)

    def mg_fn(q, k, v):
        return lightning_attention(minigrad.nn.functional.silu(q), minigrad.nn.functional.silu(k), v, fixed)

    def torch_fn(q, k, v):
        silu = torch.nn.functional.silu
        return torch_lightning(silu(q), silu(k), v, torch.tensor(fixed, dtype=q.dtype))
    check_against_torch(mg_fn, torch_fn, [inputs[n] for n in "qkv"], tolerances={"float32": dict(rtol=2e-4,
                                                                                                    atol=1e-4)})


def test_op_errors_name_the_op(attention_inputs):
    inputs = attention_inputs(heads="GQA", T=13)
    q, k, v = (minigrad.tensor(inputs[n]) for n in "qkv")
    with pytest.raises(TypeError, match="lightning_attention: slope has dtype float32"):
        lightning_attention(q, k, v, minigrad.tensor(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match=r"lightning_attention cpu forward: slope must have shape \(Hq,\)"):
        lightning_attention(q, k, v, np.ones(2))
