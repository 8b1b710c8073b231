"""The Numba CUDA chunked linear attention (state kernel + chunk kernel) against the NumPy reference: outputs,
denominators and all gradients. On a CPU the kernels run on Numba's CUDA simulator at simulator-sized shapes, with
chunks small enough that T = 13, 40, 63 span several, the last one ragged; NUMBA_ENABLE_CUDASIM=0 runs them on a GPU.
Code only the simulator accepts is caught by test_cuda_compile.py."""
import sys

import numpy as np
import pytest
from numba import config, cuda

from kernels.linear_attention import cuda as linear_cuda
from kernels.linear_attention import reference
import minigrad
from minigrad import backend
from minigrad.nn.linear_attention import linear_attention
from book.testing import assert_close

pytestmark = [pytest.mark.simulator,
              pytest.mark.skipif(not config.ENABLE_CUDASIM and not cuda.is_available(),
                                 reason="NUMBA_ENABLE_CUDASIM=0 and no CUDA GPU: nothing to run the kernels on")]

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
FEATURES = {"elu": reference.elu_features, "taylor": reference.taylor_features}
CASES = [  # heads, T, D, feature map, causal, normalize, padding, chunk, dtype
    ("MHA", 13, 4, "elu", True, True, None, 8, "float64"),
    ("GQA", 40, 4, "taylor", True, True, None, 16, "float32"),
    ("DiffQKV", 63, 4, "elu", True, False, None, 16, "float64"),
    ("MQA", 40, 4, "elu", False, True, None, 16, "float32"),
    ("GQA", 13, 4, "elu", True, True, "leading", 8, "float32"),   # batch 0's first queries see no key
]


@pytest.fixture(autouse=True)
def faster_simulator():
    before = sys.getswitchinterval()
    sys.setswitchinterval(5e-4)
    yield
    sys.setswitchinterval(before)


def case_id(case):
    heads, T, D, feature_map, causal, normalize, padding, chunk, dtype = case
    return (f"{heads}-T{T}-{feature_map}-{'causal' if causal else 'full'}-{'norm' if normalize else 'raw'}-"
            f"{padding}-chunk{chunk}-{dtype}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cuda_kernels_match_the_reference(case, attention_inputs):
    heads, T, D, feature_map, causal, normalize, padding, chunk, dtype = case
    inputs = attention_inputs(B=2 if padding else 1, heads=heads, T=T, D=D, Dv=3, padding=padding)
    phi = FEATURES[feature_map]
    fq, fk = phi(inputs["q"]), phi(inputs["k"])
    if padding:
        fk = fk * inputs["key_padding_mask"][:, None, :, None]
    fq, fk, v, do = (a.astype(dtype) for a in (fq, fk, inputs["v"], inputs["do"]))
    want_o, want_den = reference.forward(*(a.astype(np.float64) for a in (fq, fk, v)), causal, normalize)
    want_grads = reference.backward(*(a.astype(np.float64) for a in (fq, fk, v, do)), causal, normalize)
    o, den = linear_cuda.forward(fq, fk, v, causal, normalize, chunk=chunk)
    grads = linear_cuda.backward(fq, fk, v, o, den, do, causal, normalize, chunk=chunk)
    tol = TOLERANCES[dtype]
    assert o.dtype == dtype and all(g.dtype == dtype for g in grads)
    for name, got, want in [("O", o, want_o), ("den", den, want_den)] + list(zip(["dfq", "dfk", "dv"], grads,
                                                                                   want_grads)):
        if want is not None:
            assert_close(name, got, want, tol["rtol"], tol["atol"] * max(1.0, np.abs(want).max()))
    if padding:
        assert (o[0, :, :5] == 0).all() and all(np.isfinite(a).all() for a in (o,) + grads)


def test_causal_product_with_decay_matches_the_definition(attention_inputs):
    """The kernels' decay path (Lightning Attention's; kernels/lightning_attention tests the rest) against the
    quadratic definition, one slope per query head, 0 included (no decay)."""
    from kernels.lightning_attention import reference as lightning_reference
    inputs = attention_inputs(B=1, heads="GQA", T=40, D=4, Dv=3)
    slope = np.array([0.5, 0.1, 0.02, 0.0])
    got = linear_cuda.causal_product(inputs["q"], inputs["k"], inputs["v"], slope, chunk=16)
    want = lightning_reference.forward(inputs["q"], inputs["k"], inputs["v"], slope)
    assert_close("O", got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason=f"no usable GPU: {backend.gpu_status()}")
def test_minigrad_op_on_gpu_matches_cpu(attention_inputs):
    """The op on CuPy data (the CUDA kernels) gives the CPU kernels' output and gradients."""
    inputs = attention_inputs(heads="DiffQKV", T=63, D=16, padding="random")
    results = {}
    for device in ("cpu", "cuda"):
        q, k, v = (minigrad.tensor(inputs[n].astype(np.float32), device=device, requires_grad=True) for n in "qkv")
        mask = minigrad.tensor(inputs["key_padding_mask"], device=device)
        out = linear_attention(q, k, v, "elu", key_padding_mask=mask)
        out.backward(minigrad.tensor(inputs["do"].astype(np.float32), device=device))
        results[device] = [backend.to_numpy(a) for a in (out.data, q.grad.data, k.grad.data, v.grad.data)]
    for name, c, g in zip(["O", "dq", "dk", "dv"], results["cpu"], results["cuda"]):
        assert_close(name, g, c, rtol=1e-4, atol=1e-4)
