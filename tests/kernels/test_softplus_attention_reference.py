"""The NumPy reference of softplus attention (LSSA) and its re-weighting (LSSAR) against a PyTorch autograd
formulation of the same definition (kernels/softplus_attention states the choices the paper leaves open), and the
properties those choices promise: weights are the formula's, rows sum to 1, LSSAR keeps only the weights above
uniform, a uniform row keeps its LSSA weights, a query that sees nothing gets zeros."""
import numpy as np
import pytest
import torch

from kernels.softplus_attention import reference
from book.testing import assert_close

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}
CASES = [  # heads, T, S, causal, padding, length_scaled, power
    ("MHA", 13, 13, True, None, True, None),
    ("MHA", 13, 13, True, None, False, None),
    ("GQA", 40, 40, False, "random", True, None),
    ("MQA", 63, 63, True, "random", True, 3),
    ("DiffQKV", 40, 63, False, None, True, 7),
    ("DiffQKV-v", 63, 40, True, "leading", False, 15),
    ("GQA", 40, 40, True, "all", True, 3),                   # no query of batch 0 sees a key
]


def torch_softplus_attention(q, k, v, causal=True, key_padding_mask=None, scale=None, length_scaled=True,
                             power=None):
    """The definition in PyTorch ops: s_i = scale log(n_i), A = l1-normalized softplus, LSSAR re-weighting with
    u^p (not the kernels' (u / u_max)^p), uniform rows keeping A."""
    B, Hq, T, D = q.shape
    S = k.shape[2]
    k, v = k.repeat_interleave(Hq // k.shape[1], dim=1), v.repeat_interleave(Hq // v.shape[1], dim=1)
    seen = (torch.ones(T, S, dtype=torch.bool).tril() if causal else torch.ones(T, S, dtype=torch.bool))
    seen = seen.expand(B, 1, T, S)
    if key_padding_mask is not None:
        seen = seen & torch.as_tensor(key_padding_mask)[:, None, None, :]
    n = seen.sum(dim=-1, keepdim=True).to(q.dtype)                                # (B, 1, T, 1)
    scale = D ** -0.5 if scale is None else scale
    s = scale * torch.log(n.clamp(min=1)) if length_scaled else torch.full_like(n, scale)
    p = torch.where(seen, torch.nn.functional.softplus(s * (q @ k.transpose(-1, -2))), 0)
    z = p.sum(dim=-1, keepdim=True)
    a = p / torch.where(z == 0, 1, z)
    if power is None:
        return a @ v
    u = torch.relu(n * a - 1)
    raw = u ** power
    total = raw.sum(dim=-1, keepdim=True)
    w = torch.where(u.amax(dim=-1, keepdim=True) <= 0, a, raw / torch.where(total == 0, 1, total))
    return w @ v


def case_id(case):
    heads, T, S, causal, padding, length_scaled, power = case
    return (f"{heads}-T{T}-S{S}-{'causal' if causal else 'full'}-{padding}-{'logn' if length_scaled else 'fixed'}-"
            f"{'LSSA' if power is None else f'LSSAR{power}'}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reference_matches_torch_autograd(case, dtype, attention_inputs):
    heads, T, S, causal, padding, length_scaled, power = case
    inputs = attention_inputs(heads=heads, T=T, S=S, D=8, padding=padding)
    mask = inputs["key_padding_mask"]
    q, k, v, do = (inputs[n].astype(dtype) for n in ("q", "k", "v", "do"))
    options = (causal, mask, None, length_scaled, power)
    o = reference.forward(q, k, v, *options)
    grads = reference.backward(q, k, v, do, *options)
    t = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    t_o = torch_softplus_attention(*t, *options)
    t_o.backward(torch.tensor(do))
    tol = TOLERANCES[dtype]
    if power is not None and dtype == "float32":
        tol = dict(rtol=1e-3, atol=5e-4)       # u^p amplifies float32 rounding near the uniform threshold
    assert o.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, t_o.detach().numpy(), **tol)
    for name, g, t_g in zip("qkv", grads, t):
        assert_close(f"d{name}", g, t_g.grad.numpy(), **tol)


def weights(q, k, **options):
    """The attention weights (T, S) of one head, read off the output for V = the identity."""
    S = k.shape[2]
    return reference.forward(q, k, np.eye(S)[None, None], **options)[0, 0]


@pytest.mark.parametrize("length_scaled", [True, False])
def test_lssa_weights_are_the_normalized_softplus_with_the_log_length_scale(length_scaled):
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((1, 1, 13, 8)), rng.standard_normal((1, 1, 13, 8))
    keep = rng.random((1, 13)) > 0.3
    keep[0, 0] = True
    w = weights(q, k, causal=True, key_padding_mask=keep, scale=0.5, length_scaled=length_scaled)
    for i in range(13):
        seen = np.arange(13) <= i
        seen &= keep[0]
        s = 0.5 * np.log(seen.sum()) if length_scaled else 0.5              # n_i = the keys query i sees
        p = np.where(seen, np.log1p(np.exp(s * (k[0, 0] @ q[0, 0, i]))), 0)
        np.testing.assert_allclose(w[i], p / p.sum(), rtol=1e-12, atol=1e-15)


def test_lssar_keeps_only_the_weights_above_uniform_and_sharpens_them():
    rng = np.random.default_rng(1)
    q, k = 2 * rng.standard_normal((1, 1, 40, 8)), rng.standard_normal((1, 1, 40, 8))
    lssa = weights(q, k, causal=False)
    for power in (1, 3, 15):
        lssar = weights(q, k, causal=False, power=power)
        np.testing.assert_allclose(lssar.sum(axis=-1), 1, rtol=1e-12)
        assert ((lssar > 0) == (lssa > 1 / 40)).all()                          # above uniform, and only those
        assert (lssar.max(axis=-1) > lssa.max(axis=-1)).all()                  # sharper
        if power == 1:                                                         # p = 1: proportional to A - 1/n
            excess = np.maximum(lssa - 1 / 40, 0)
            np.testing.assert_allclose(lssar, excess / excess.sum(axis=-1, keepdims=True), rtol=1e-10)


def test_a_uniform_row_keeps_its_lssa_weights():
    """The first causal query sees one key (weight 1, nothing above uniform); a zero query sees all keys alike."""
    rng = np.random.default_rng(2)
    q, k = rng.standard_normal((1, 1, 13, 8)), rng.standard_normal((1, 1, 13, 8))
    q[0, 0, 7] = 0
    w = weights(q, k, causal=True, power=3)
    np.testing.assert_array_equal(w[0], np.eye(13)[0])
    np.testing.assert_allclose(w[7], np.where(np.arange(13) <= 7, 1 / 8, 0), rtol=1e-12)


def test_a_query_that_sees_no_key_gets_zeros(attention_inputs):
    inputs = attention_inputs(heads="GQA", T=13, padding="leading")
    q, k, v, do, mask = (inputs[n] for n in ("q", "k", "v", "do", "key_padding_mask"))
    for power in (None, 3):
        o = reference.forward(q, k, v, True, mask, power=power)
        dq, dk, dv = reference.backward(q, k, v, do, True, mask, power=power)
        assert (o[0, :, :5] == 0).all() and (dq[0, :, :5] == 0).all() and (dk[0, :, :5] == 0).all()
        assert all(np.isfinite(a).all() for a in (o, dq, dk, dv))


@pytest.mark.parametrize("power", [0, 0.5, True, "3"])
def test_bad_power_names_the_op(power, attention_inputs):
    inputs = attention_inputs(heads="MHA", T=13)
    with pytest.raises(ValueError, match="softplus_attention reference forward: power"):
        reference.forward(inputs["q"], inputs["k"], inputs["v"], power=power)
