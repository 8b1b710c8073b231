"""The NumPy reference of causal linear attention (the quadratic masked form) against a PyTorch autograd
formulation: outputs, denominators and the gradients of the features and values; and the three forms of the same
function (quadratic == chunked == recurrent). float64 to rounding, float32 at a realistic tolerance."""
import numpy as np
import pytest
import torch

from kernels.linear_attention import cpu, reference
from book.testing import assert_close

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}
CASES = [  # heads, T, D, feature map, causal, normalize
    ("MHA", 13, 8, "elu", True, True),
    ("GQA", 40, 4, "taylor", True, True),
    ("MQA", 63, 8, "elu", False, True),
    ("DiffQKV", 40, 4, "taylor", True, False),
    ("DiffQKV-v", 63, 8, "elu", False, False),
]
FEATURES = {"elu": reference.elu_features, "taylor": reference.taylor_features}


def features(inputs, feature_map, dtype):
    """Positive features of the random q and k, and v, do: the arrays the kernels take."""
    phi = FEATURES[feature_map]
    return phi(inputs["q"]).astype(dtype), phi(inputs["k"]).astype(dtype), inputs["v"].astype(dtype), \
        inputs["do"].astype(dtype)


def torch_linear_attention(fq, fk, v, causal=True, normalize=True, eps=1e-12):
    """(O, den) in PyTorch ops on the features (grouped heads repeated), so that autograd gives the gradients."""
    Hq, T = fq.shape[1], fq.shape[2]
    fk, v = fk.repeat_interleave(Hq // fk.shape[1], dim=1), v.repeat_interleave(Hq // v.shape[1], dim=1)
    a = fq @ fk.transpose(-1, -2)                                                 # (B, Hq, T, T)
    if causal:
        a = a * torch.ones(T, T, dtype=a.dtype).tril()
    if not normalize:
        return a @ v, None
    den = a.sum(dim=-1)
    return (a @ v) / (den + eps)[..., None], den


def case_id(case):
    heads, T, D, feature_map, causal, normalize = case
    return f"{heads}-T{T}-D{D}-{feature_map}-{'causal' if causal else 'full'}-{'norm' if normalize else 'raw'}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reference_matches_torch_autograd(case, dtype, attention_inputs):
    heads, T, D, feature_map, causal, normalize = case
    fq, fk, v, do = features(attention_inputs(heads=heads, T=T, D=D, Dv=5), feature_map, dtype)
    o, den = reference.forward(fq, fk, v, causal, normalize)
    grads = reference.backward(fq, fk, v, do, causal, normalize)
    t = [torch.tensor(a, requires_grad=True) for a in (fq, fk, v)]
    t_o, t_den = torch_linear_attention(*t, causal, normalize)
    t_o.backward(torch.tensor(do))
    tol = TOLERANCES[dtype]
    scale = 1 if normalize else np.abs(t_o.detach().numpy()).max()              # un-normalized sums grow with T
    assert o.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, t_o.detach().numpy(), tol["rtol"], tol["atol"] * scale)
    if normalize:
        assert_close("den", den, t_den.detach().numpy(), **tol)
    else:
        assert den is None
    for name, g, t_g in zip(["dfq", "dfk", "dv"], grads, t):
        assert_close(name, g, t_g.grad.numpy(), tol["rtol"], tol["atol"] * np.abs(t_g.grad.numpy()).max())


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("feature_map", ["elu", "taylor"])
def test_quadratic_chunked_and_recurrent_forms_agree(feature_map, normalize, attention_inputs):
    """The same function three ways, float64: the masked (T, T) matrix, chunks of 16 with a carried state (the
    CPU kernel, ragged last chunk at T = 63), and one token at a time (the decoder's recurrence)."""
    fq, fk, v, _ = features(attention_inputs(heads="GQA", T=63, D=4), feature_map, "float64")
    quadratic, _ = reference.forward(fq, fk, v, True, normalize)
    chunked, _ = cpu.forward(fq, fk, v, True, normalize, chunk=16)
    recurrent = reference.recurrent_forward(fq, fk, v, normalize)
    scale = np.abs(quadratic).max()
    assert_close("chunked", chunked, quadratic, rtol=1e-10, atol=1e-12 * scale)
    assert_close("recurrent", recurrent, quadratic, rtol=1e-10, atol=1e-12 * scale)


def test_taylor_features_give_the_second_order_expansion_of_exp():
    """phi(q) . phi(k) = 1 + q.k / sqrt(d) + (q.k)^2 / (2 d), with 1 + d + d^2 features."""
    rng = np.random.default_rng(0)
    for d in (1, 4, 16):
        q, k = rng.standard_normal((5, d)), rng.standard_normal((5, d))
        phi_q, phi_k = reference.taylor_features(q), reference.taylor_features(k)
        x = (q * k).sum(axis=-1) / np.sqrt(d)
        assert phi_q.shape == (5, 1 + d + d * d)
        np.testing.assert_allclose((phi_q * phi_k).sum(axis=-1), 1 + x + x * x / 2, rtol=1e-12)


def test_a_query_that_sees_no_key_gets_zeros(attention_inputs):
    """Padded keys have zero features; with causal attention the first queries of batch 0 then see nothing."""
    inputs = attention_inputs(heads="GQA", T=13, padding="leading")
    fq, fk, v, do = features(inputs, "elu", "float64")
    fk = fk * inputs["key_padding_mask"][:, None, :, None]
    o, den = reference.forward(fq, fk, v)
    dfq, dfk, dv = reference.backward(fq, fk, v, do)
    assert (den[0, :, :5] == 0).all() and (o[0, :, :5] == 0).all() and (dfq[0, :, :5] == 0).all()
    assert (dv[0, :, :5] == 0).all() and all(np.isfinite(a).all() for a in (o, dfq, dfk, dv))


@pytest.mark.parametrize("bad, error, match", [
    (dict(fk=np.ones((2, 3, 13, 8))), ValueError, "multiple of the key heads"),
    (dict(fk=np.ones((2, 2, 12, 8))), ValueError, "must agree"),
    (dict(fq=np.ones((2, 2, 12, 8)), fk=np.ones((2, 2, 13, 8)), v=np.ones((2, 2, 13, 8))), ValueError, "one length"),
    (dict(v=np.ones((2, 2, 13, 8), np.float32)), TypeError, "one dtype"),
])
def test_bad_inputs_name_the_op(bad, error, match):
    arrays = {"fq": np.ones((2, 2, 13, 8)), "fk": np.ones((2, 2, 13, 8)), "v": np.ones((2, 2, 13, 8)), **bad}
    with pytest.raises(error, match=match) as info:
        reference.forward(arrays["fq"], arrays["fk"], arrays["v"])
    assert "linear_attention reference forward" in str(info.value)
