"""The NumPy reference of Lightning Attention (the quadratic form with the decay mask) against a PyTorch autograd
formulation: outputs and the gradients of q, k, v and the learned slopes; and naive == blocked == recurrent."""
import numpy as np
import pytest
import torch

from kernels.lightning_attention import cpu, reference, transnormer_slopes
from book.testing import assert_close

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [("MHA", 13, 8), ("GQA", 40, 4), ("MQA", 63, 8), ("DiffQKV", 40, 8), ("DiffQKV-v", 63, 4)]  # heads, T, D


def slopes(heads, strength=4.0):
    """TransNormerLLM's slopes, made stronger so the decay matters at T = 13..63, and one head without decay."""
    return np.array(transnormer_slopes(heads - 1) + [0.0]) * strength


def torch_lightning(q, k, v, slope):
    """O = (Q K^T * M) V, M_ts = e^(-slope (t - s)) for s <= t, in PyTorch ops (slope differentiable)."""
    Hq, T = q.shape[1], q.shape[2]
    k, v = k.repeat_interleave(Hq // k.shape[1], dim=1), v.repeat_interleave(Hq // v.shape[1], dim=1)
    gap = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).to(q.dtype)
    mask = torch.where(gap >= 0, torch.exp(-slope[:, None, None] * gap.clamp(min=0)), 0)
    return ((q @ k.transpose(-1, -2)) * mask) @ v


def relative(name, got, want, tol):
    assert_close(name, got, want, tol["rtol"], tol["atol"] * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-T{c[1]}-D{c[2]}")
def test_reference_matches_torch_autograd(case, dtype, attention_inputs):
    heads, T, D = case
    inputs = attention_inputs(heads=heads, T=T, D=D, Dv=5)
    q, k, v, do = (inputs[n].astype(dtype) for n in ("q", "k", "v", "do"))
    slope = slopes(q.shape[1]).astype(dtype)
    o = reference.forward(q, k, v, slope)
    grads = reference.backward(q, k, v, do, slope)
    t = [torch.tensor(a, requires_grad=True) for a in (q, k, v, slope)]
    t_o = torch_lightning(*t)
    t_o.backward(torch.tensor(do))
    tol = TOLERANCES[dtype]
    assert o.dtype == dtype and all(g.dtype == dtype for g in grads)
    relative("O", o, t_o.detach().numpy(), tol)
    for name, g, t_g in zip(["dq", "dk", "dv", "dslope"], grads, t):
        assert g.shape == t_g.shape
        relative(name, g, t_g.grad.numpy(), tol)


@pytest.mark.parametrize("T", [13, 40, 63])
def test_naive_blocked_and_recurrent_forms_agree(T, attention_inputs):
    """float64, inputs scaled by 0.1 as in Lightning Attention's own tests: the (T, T) decay matrix, blocks of 16
    with the decayed KV state (the CPU kernel), and kv <- lambda kv + k^T v one token at a time."""
    inputs = attention_inputs(heads="GQA", T=T, D=8)
    q, k, v = (0.1 * inputs[n] for n in "qkv")
    slope = slopes(4)
    naive = reference.forward(q, k, v, slope)
    blocked = cpu.forward(q, k, v, slope, chunk=16)
    recurrent = reference.recurrent_forward(q, k, v, slope)
    assert_close("blocked", blocked, naive, rtol=1e-10, atol=1e-14)
    assert_close("recurrent", recurrent, naive, rtol=1e-10, atol=1e-14)


def test_transnormer_slopes():
    """ALiBi's slopes 2^(-8 (h+1) / H), scaled by 1 - l / (L - 1) + 1e-5 per layer; non-powers of two interleave."""
    np.testing.assert_allclose(transnormer_slopes(8), [2 ** (-(h + 1)) for h in range(8)])
    np.testing.assert_allclose(transnormer_slopes(4, layer=2, num_layers=5), [(0.5 + 1e-5) * 2 ** (-2 * (h + 1))
                                                                              for h in range(4)])
    assert transnormer_slopes(6) == transnormer_slopes(4) + transnormer_slopes(8)[0::2][:2]
    with pytest.raises(ValueError, match="transnormer_slopes"):
        transnormer_slopes(4, layer=3, num_layers=3)


@pytest.mark.parametrize("slope, error, match", [
    (np.zeros(3), ValueError, r"slope must have shape \(Hq,\)"),
    (-np.ones(4), ValueError, "slopes must be >= 0"),
])
def test_bad_slopes_name_the_op(slope, error, match, attention_inputs):
    inputs = attention_inputs(heads="GQA", T=13)
    with pytest.raises(error, match=match) as info:
        reference.forward(inputs["q"], inputs["k"], inputs["v"], slope)
    assert "lightning_attention reference forward" in str(info.value)
