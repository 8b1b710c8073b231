"""The Numba CPU chunked linear attention against the NumPy reference (outputs, denominators, all gradients), and
the minigrad ops (`linear_attention` with its feature maps, `linear_attention_step`) against PyTorch through
book.testing.check_against_torch."""
import numpy as np
import pytest
import torch

from kernels.linear_attention import cpu, reference
import minigrad
from minigrad.nn.linear_attention import linear_attention, linear_attention_step, taylor_feature_map
from book.testing import assert_close, check_against_torch

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [  # heads, T, D, feature map, causal, normalize
    ("MHA", 13, 8, "elu", True, True),
    ("GQA", 40, 4, "taylor", True, True),
    ("MQA", 63, 8, "elu", True, False),
    ("DiffQKV", 63, 4, "taylor", False, True),
    ("DiffQKV-v", 40, 8, "elu", True, True),
    ("GQA", 200, 8, "elu", True, True),        # several default-sized chunks, the last one ragged
]
FEATURES = {"elu": reference.elu_features, "taylor": reference.taylor_features}


def case_id(case):
    heads, T, D, feature_map, causal, normalize = case
    return f"{heads}-T{T}-D{D}-{feature_map}-{'causal' if causal else 'full'}-{'norm' if normalize else 'raw'}"


def relative(name, got, want, tol):
    """assert_close with atol relative to the largest |want| (un-normalized sums and gradients grow with T)."""
    assert_close(name, got, want, tol["rtol"], tol["atol"] * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("chunk", [16, 64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cpu_kernels_match_the_reference(case, chunk, dtype, attention_inputs):
    heads, T, D, feature_map, causal, normalize = case
    inputs = attention_inputs(heads=heads, T=T, D=D, Dv=5)
    phi = FEATURES[feature_map]
    fq, fk, v, do = phi(inputs["q"]).astype(dtype), phi(inputs["k"]).astype(dtype), inputs["v"].astype(dtype), \
        inputs["do"].astype(dtype)
    want_o, want_den = reference.forward(*(a.astype(np.float64) for a in (fq, fk, v)), causal, normalize)
    want_grads = reference.backward(*(a.astype(np.float64) for a in (fq, fk, v, do)), causal, normalize)
    o, den = cpu.forward(fq, fk, v, causal, normalize, chunk=chunk)
    grads = cpu.backward(fq, fk, v, o, den, do, causal, normalize, chunk=chunk)
    tol = TOLERANCES[dtype]
    assert o.dtype == dtype and all(g.dtype == dtype for g in grads)
    relative("O", o, want_o, tol)
    if normalize:
        assert den.dtype == dtype
        relative("den", den, want_den, tol)
    for name, g, want, x in zip(["dfq", "dfk", "dv"], grads, want_grads, (fq, fk, v)):
        assert g.shape == x.shape
        relative(name, g, want, tol)


def test_a_query_that_sees_no_key_gets_zeros(attention_inputs):
    inputs = attention_inputs(heads="DiffQKV", T=40, padding="leading")
    fq, fk = (reference.elu_features(inputs[n]).astype(np.float32) for n in "qk")
    fk = fk * inputs["key_padding_mask"][:, None, :, None]
    v, do = inputs["v"].astype(np.float32), inputs["do"].astype(np.float32)
    o, den = cpu.forward(fq, fk, v, chunk=16)
    dfq, dfk, dv = cpu.backward(fq, fk, v, o, den, do, chunk=16)
    assert (o[0, :, :5] == 0).all() and (dfq[0, :, :5] == 0).all() and (dv[0, :, :5] == 0).all()
    assert all(np.isfinite(a).all() for a in (o, dfq, dfk, dv))


def test_bad_arguments_name_the_op():
    x = np.ones((1, 1, 13, 4))
    with pytest.raises(ValueError, match="causal_product cpu: chunk must be a positive int"):
        cpu.forward(x, x, x, chunk=0)
    o, _ = cpu.forward(x, x, x)
    with pytest.raises(ValueError, match="linear_attention cpu backward: normalize=True needs the forward's den"):
        cpu.backward(x, x, x, o, None, o)


# ---- the minigrad ops against PyTorch -----------------------------------------------------------------------

def torch_taylor(x):
    d = x.shape[-1]
    outer = (x[..., :, None] * x[..., None, :]).flatten(-2)
    return torch.cat([torch.ones(x.shape[:-1] + (1,), dtype=x.dtype), x / d ** 0.25, outer / (2 * d) ** 0.5], dim=-1)


TORCH_MAPS = {"elu": lambda x: torch.nn.functional.elu(x) + 1, "taylor": torch_taylor}


def torch_linear_attention(q, k, v, phi, causal=True, normalize=True, mask=None):
    Hq, T = q.shape[1], q.shape[2]
    fq, fk = phi(q), phi(k.repeat_interleave(Hq // k.shape[1], dim=1))
    v = v.repeat_interleave(Hq // v.shape[1], dim=1)
    a = fq @ fk.transpose(-1, -2)
    if causal:
        a = a * torch.ones(T, T, dtype=a.dtype).tril()
    if mask is not None:
        a = a * mask[:, None, None, :]
    return (a @ v) / (a.sum(dim=-1, keepdim=True) + 1e-12) if normalize else a @ v


@pytest.mark.parametrize("heads, T, feature_map, causal, normalize, padding", [
    ("MHA", 13, "elu", True, True, None), ("GQA", 40, "taylor", True, True, "random"),
    ("DiffQKV", 63, "elu", False, True, None), ("MQA", 40, "taylor", True, False, None),
    ("GQA", 13, "elu", True, True, "all")])                                       # batch 0: every query sees nothing
def test_minigrad_op_matches_torch(heads, T, feature_map, causal, normalize, padding, attention_inputs):
    inputs = attention_inputs(heads=heads, T=T, D=4, Dv=8, padding=padding)
    args = [inputs["q"], inputs["k"], inputs["v"]] + ([inputs["key_padding_mask"]] if padding else [])

    def mg_fn(q, k, v, mask=None):
        return linear_attention(q, k, v, feature_map, causal, normalize, key_padding_mask=mask)

    def torch_fn(q, k, v, mask=None):
        return torch_linear_attention(q, k, v, TORCH_MAPS[feature_map], causal, normalize, mask)
    tolerances = None if normalize else {"float32": dict(rtol=2e-4, atol=2e-4)}
    check_against_torch(mg_fn, torch_fn, args, tolerances=tolerances)


def test_a_learned_feature_map_gets_its_gradient(attention_inputs):
    """phi(x) = softplus(x W): the map's parameter W is trained through the op, as in Hedgehog-style maps."""
    inputs = attention_inputs(heads="GQA", T=40, D=4, Dv=4)
    w = np.random.default_rng(1).standard_normal((4, 6))

    def mg_fn(q, k, v, w):
        return linear_attention(q, k, v, lambda x: minigrad.nn.functional.softplus(x @ w))

    def torch_fn(q, k, v, w):
        return torch_linear_attention(q, k, v, lambda x: torch.nn.functional.softplus(x @ w))
    check_against_torch(mg_fn, torch_fn, [inputs["q"], inputs["k"], inputs["v"], w])


def test_taylor_feature_map_op_matches_torch():
    x = np.random.default_rng(0).standard_normal((2, 3, 5))
    check_against_torch(taylor_feature_map, torch_taylor, [x])


@pytest.mark.parametrize("normalize", [True, False])
def test_decoding_step_by_step_equals_the_whole_sequence(normalize, attention_inputs):
    """linear_attention_step over the tokens one at a time gives linear_attention's causal output (and both
    backpropagate: here through the steps' ops, compared with torch on the whole sequence)."""
    inputs = attention_inputs(heads="DiffQKV", T=13, D=4, Dv=3)

    def mg_fn(q, k, v):
        state, outs = None, []
        for t in range(q.shape[2]):
            o, state = linear_attention_step(q[:, :, t], k[:, :, t], v[:, :, t], state, "taylor", normalize)
            outs.append(o)
        return minigrad.stack(outs, dim=2)

    def torch_fn(q, k, v):
        return torch_linear_attention(q, k, v, torch_taylor, True, normalize)
    out = check_against_torch(mg_fn, torch_fn, [inputs["q"], inputs["k"], inputs["v"]],
                              tolerances={"float32": dict(rtol=2e-4, atol=2e-4)})
    whole = linear_attention(*(minigrad.tensor(inputs[n]) for n in "qkv"), "taylor", normalize=normalize)
    np.testing.assert_allclose(out[0].data, whole.data, rtol=1e-10, atol=1e-10)


def test_op_errors_name_the_op(attention_inputs):
    inputs = attention_inputs(heads="MHA", T=13)
    q, k, v = (minigrad.tensor(inputs[n]) for n in "qkv")
    with pytest.raises(ValueError, match="linear_attention: feature_map must be one of"):
        linear_attention(q, k, v, "relu")
    with pytest.raises(ValueError, match="linear_attention: key_padding_mask must be bool"):
        linear_attention(q, k, v, key_padding_mask=np.ones((2, 12), bool))
    with pytest.raises(TypeError, match="linear_attention: query, key and value must be Tensors"):
        linear_attention(inputs["q"], k, v)
