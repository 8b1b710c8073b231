"""The NumPy reference of sliding-window attention against a PyTorch autograd formulation (softmax with a band
mask): O, L and the gradients of q, k, v; float64 to rounding, float32 at a realistic tolerance."""
import numpy as np
import pytest
import torch

from kernels.sliding_window_attention import reference
from book.testing import assert_close

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}
CASES = [  # heads, T, S, D, window, padding
    ("MHA", 13, 13, 8, 1, None),           # each query sees only its own key
    ("MHA", 13, 13, 8, 4, None),
    ("GQA", 40, 40, 8, 7, "random"),
    ("MQA", 63, 63, 16, 16, "random"),
    ("DiffQKV", 40, 63, 8, 100, None),     # window >= T: causal attention
    ("DiffQKV-v", 63, 40, 8, 5, None),     # queries past the last key see nothing
    ("GQA", 63, 63, 8, 3, "leading"),      # batch 0: the first 5 keys padded, queries 0..4 see nothing
]


def torch_sliding_window(q, k, v, window, key_padding_mask=None, scale=None):
    """(O, L) in PyTorch ops. A query that sees no key: O = 0, L = -inf."""
    B, Hq, T, D = q.shape
    S = k.shape[2]
    k, v = k.repeat_interleave(Hq // k.shape[1], dim=1), v.repeat_interleave(Hq // v.shape[1], dim=1)
    gap = torch.arange(T)[:, None] - torch.arange(S)[None, :]
    seen = ((gap >= 0) & (gap < window)).expand(B, 1, T, S)
    if key_padding_mask is not None:
        seen = seen & torch.as_tensor(key_padding_mask)[:, None, None, :]
    scores = ((D ** -0.5 if scale is None else scale) * q @ k.transpose(-1, -2)).masked_fill(~seen, -torch.inf)
    any_seen = seen.any(dim=-1, keepdim=True)
    p = torch.softmax(scores.masked_fill(~any_seen, 0.0), dim=-1) * any_seen
    return p @ v, torch.logsumexp(scores, dim=-1)


def case_id(case):
    heads, T, S, D, window, padding = case
    return f"{heads}-T{T}-S{S}-w{window}-{padding}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reference_matches_torch_autograd(case, dtype, attention_inputs):
    heads, T, S, D, window, padding = case
    inputs = attention_inputs(heads=heads, T=T, S=S, D=D, padding=padding)
    mask, scale = inputs["key_padding_mask"], None if D == 8 else 0.3
    q, k, v, do = (inputs[n].astype(dtype) for n in ("q", "k", "v", "do"))
    o, lse = reference.forward(q, k, v, window, mask, scale)
    grads = reference.backward(q, k, v, do, window, mask, scale)
    t = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    t_o, t_lse = torch_sliding_window(*t, window, mask, scale)
    t_o.backward(torch.tensor(do))
    tol = TOLERANCES[dtype]
    assert o.dtype == lse.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, t_o.detach().numpy(), **tol)
    assert_close("L", lse, t_lse.detach().numpy(), **tol)
    for name, g, t_g in zip("qkv", grads, t):
        assert_close(f"d{name}", g, t_g.grad.numpy(), **tol)


def test_a_query_that_sees_no_key_gets_zeros(attention_inputs):
    inputs = attention_inputs(heads="GQA", T=13, padding="leading")
    q, k, v, do, mask = (inputs[n] for n in ("q", "k", "v", "do", "key_padding_mask"))
    o, lse = reference.forward(q, k, v, 3, mask)
    dq, dk, dv = reference.backward(q, k, v, do, 3, mask)
    assert (o[0, :, :5] == 0).all() and (lse[0, :, :5] == -np.inf).all() and (dq[0, :, :5] == 0).all()
    assert (dk[0, :, :5] == 0).all() and all(np.isfinite(a).all() for a in (o, dq, dk, dv))


@pytest.mark.parametrize("window", [0, -1, 2.5, True])
def test_bad_window_names_the_op(window, attention_inputs):
    inputs = attention_inputs(heads="MHA", T=13)
    with pytest.raises(ValueError, match="sliding_window_attention reference forward: window must be an int >= 1"):
        reference.forward(inputs["q"], inputs["k"], inputs["v"], window)
