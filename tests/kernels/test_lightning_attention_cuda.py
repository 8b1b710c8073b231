"""The Numba CUDA Lightning Attention (the chunked causal-product kernels with decay) against the NumPy reference:
outputs and the gradients of q, k, v and the slopes, on the CUDA simulator at simulator-sized shapes (chunks of 8
and 16, so T = 13, 40, 63 end in a ragged one)."""
import sys

import numpy as np
import pytest
from numba import config, cuda

from kernels.lightning_attention import cuda as lightning_cuda
from kernels.lightning_attention import reference, transnormer_slopes
import minigrad
from minigrad import backend
from minigrad.nn.lightning_attention import lightning_attention
from book.testing import assert_close

pytestmark = [pytest.mark.simulator,
              pytest.mark.skipif(not config.ENABLE_CUDASIM and not cuda.is_available(),
                                 reason="NUMBA_ENABLE_CUDASIM=0 and no CUDA GPU: nothing to run the kernels on")]

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [("MHA", 13, 8, "float64"), ("GQA", 40, 16, "float32"), ("DiffQKV", 63, 16, "float64")]  # heads, T, chunk


@pytest.fixture(autouse=True)
def faster_simulator():
    before = sys.getswitchinterval()
    sys.setswitchinterval(5e-4)
    yield
    sys.setswitchinterval(before)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-T{c[1]}-chunk{c[2]}-{c[3]}")
def test_cuda_kernels_match_the_reference(case, attention_inputs):
    heads, T, chunk, dtype = case
    inputs = attention_inputs(B=1, heads=heads, T=T, D=4, Dv=3)
    q, k, v, do = (inputs[n].astype(dtype) for n in ("q", "k", "v", "do"))
    slope = (np.array(transnormer_slopes(q.shape[1] - 1) + [0.0]) * 4).astype(dtype)
    want_o = reference.forward(*(a.astype(np.float64) for a in (q, k, v, slope)))
    want_grads = reference.backward(*(a.astype(np.float64) for a in (q, k, v, do, slope)))
    o = lightning_cuda.forward(q, k, v, slope, chunk=chunk)
    grads = lightning_cuda.backward(q, k, v, do, slope, chunk=chunk)
    tol = TOLERANCES[dtype]
    assert o.dtype == dtype and all(g.dtype == dtype for g in grads)
    for name, got, want in [("O", o, want_o)] + list(zip(["dq", "dk", "dv", "dslope"], grads, want_grads)):
        assert_close(name, got, want, tol["rtol"], tol["atol"] * max(1.0, np.abs(want).max()))


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason=f"no usable GPU: {backend.gpu_status()}")
def test_minigrad_op_on_gpu_matches_cpu(attention_inputs):
    """The op on CuPy data (the CUDA kernels) gives the CPU kernels' output and gradients."""
    inputs = attention_inputs(heads="DiffQKV", T=63, D=16, padding="random")
    results = {}
    for device in ("cpu", "cuda"):
        q, k, v = (minigrad.tensor(inputs[n].astype(np.float32), device=device, requires_grad=True) for n in "qkv")
        mask = minigrad.tensor(inputs["key_padding_mask"], device=device)
        out = lightning_attention(q, k, v, [0.5, 0.1, 0.02, 0.0], key_padding_mask=mask)
        out.backward(minigrad.tensor(inputs["do"].astype(np.float32), device=device))
        results[device] = [backend.to_numpy(a) for a in (out.data, q.grad.data, k.grad.data, v.grad.data)]
    for name, c, g in zip(["O", "dq", "dk", "dv"], results["cpu"], results["cuda"]):
        assert_close(name, g, c, rtol=1e-4, atol=1e-4)
