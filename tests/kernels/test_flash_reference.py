"""The NumPy reference of FlashAttention (the plain quadratic definition) against a PyTorch autograd formulation:
O, L and the gradients of q, k and v; float64 to rounding, float32 at a realistic tolerance."""
import numpy as np
import pytest
import torch

from kernels.flash_attention import reference
from book.testing import assert_close

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}
CASES = [  # heads, T, S, D, Dv, causal, padding
    ("MHA", 13, 13, 8, 8, False, None),
    ("MHA", 13, 13, 8, 8, True, None),
    ("GQA", 40, 40, 16, 8, True, "random"),
    ("MQA", 63, 63, 8, 16, False, "random"),
    ("DiffQKV", 40, 63, 8, 8, True, None),
    ("DiffQKV-v", 63, 40, 16, 16, False, "random"),
    ("GQA", 63, 63, 8, 8, True, "leading"),   # the first queries of batch 0 see no key
    ("MQA", 13, 13, 8, 8, False, "all"),      # no query of batch 0 sees a key
]


def torch_grads(torch_attention, inputs, causal, scale, dtype):
    t = {name: torch.tensor(inputs[name].astype(dtype), requires_grad=True) for name in ("q", "k", "v")}
    o, lse = torch_attention(t["q"], t["k"], t["v"], causal, inputs["key_padding_mask"], scale)
    o.backward(torch.tensor(inputs["do"].astype(dtype)))
    return o.detach().numpy(), lse.detach().numpy(), [t[name].grad.numpy() for name in ("q", "k", "v")]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-T{c[1]}-S{c[2]}-{'causal' if c[5] else 'full'}-{c[6]}")
def test_reference_matches_torch_autograd(case, dtype, attention_inputs, torch_attention):
    heads, T, S, D, Dv, causal, padding = case
    inputs = attention_inputs(heads=heads, T=T, S=S, D=D, Dv=Dv, padding=padding)
    scale = None if D == 8 else 0.3
    q, k, v, do = (inputs[name].astype(dtype) for name in ("q", "k", "v", "do"))
    mask = inputs["key_padding_mask"]
    o, lse = reference.forward(q, k, v, causal, mask, scale)
    grads = reference.backward(q, k, v, do, causal, mask, scale)
    t_o, t_lse, t_grads = torch_grads(torch_attention, inputs, causal, scale, dtype)
    tol = TOLERANCES[dtype]
    assert o.dtype == lse.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, t_o, **tol)
    assert_close("L", lse, t_lse, **tol)  # -inf where a query sees no key, in both
    for name, g, t_g in zip("qkv", grads, t_grads):
        assert_close(f"d{name}", g, t_g, **tol)


def test_queries_that_see_no_key_give_zeros_not_nan(attention_inputs):
    inputs = attention_inputs(heads="GQA", T=13, padding="leading")
    q, k, v, do, mask = (inputs[name] for name in ("q", "k", "v", "do", "key_padding_mask"))
    o, lse = reference.forward(q, k, v, True, mask)
    dq, dk, dv = reference.backward(q, k, v, do, True, mask)
    assert (o[0, :, :5] == 0).all() and (lse[0, :, :5] == -np.inf).all() and (dq[0, :, :5] == 0).all()
    assert np.isfinite(o).all() and np.isfinite(dq).all() and np.isfinite(dk).all() and np.isfinite(dv).all()
    assert (dk[0, :, :5] == 0).all() and (dv[0, :, :5] == 0).all()  # padded keys get no gradient


@pytest.mark.parametrize("bad, match", [
    (dict(k=np.zeros((2, 3, 13, 8))), "multiple of the key heads"),
    (dict(v=np.zeros((2, 2, 12, 8))), "must agree"),
    (dict(q=np.zeros((2, 13, 8))), "expected q"),
    (dict(k=np.zeros((2, 2, 13, 8), np.float32)), "one dtype"),
    (dict(key_padding_mask=np.ones((2, 12), bool)), "key_padding_mask"),
])
def test_bad_inputs_name_the_op(bad, match, attention_inputs):
    inputs = {**attention_inputs(heads="MHA", T=13), **bad}
    error = TypeError if "dtype" in match else ValueError
    with pytest.raises(error, match=match) as info:
        reference.forward(inputs["q"], inputs["k"], inputs["v"], key_padding_mask=inputs["key_padding_mask"])
    assert "flash_attention" in str(info.value)
