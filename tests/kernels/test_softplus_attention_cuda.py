"""The Numba CUDA softplus attention (LSSA and LSSAR, two passes) against the NumPy reference: outputs and all
gradients, on the CUDA simulator at simulator-sized shapes (small tiles, ragged at T = 13, 40, 63)."""
import sys

import numpy as np
import pytest
from numba import config, cuda

from kernels.softplus_attention import cuda as softplus_cuda
from kernels.softplus_attention import reference
import minigrad
from minigrad import backend
from minigrad.nn.softplus_attention import softplus_attention
from book.testing import assert_close

pytestmark = [pytest.mark.simulator,
              pytest.mark.skipif(not config.ENABLE_CUDASIM and not cuda.is_available(),
                                 reason="NUMBA_ENABLE_CUDASIM=0 and no CUDA GPU: nothing to run the kernels on")]

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [  # heads, T, S, causal, padding, power, (block_m, block_n), dtype
    ("MHA", 13, 13, True, None, None, (8, 8), "float64"),
    ("GQA", 40, 40, False, "random", 3, (16, 8), "float32"),
    ("DiffQKV", 63, 40, True, None, 15, (16, 16), "float64"),
    ("MQA", 40, 40, True, "leading", 7, (16, 8), "float32"),     # the first queries of batch 0 see no key
]


@pytest.fixture(autouse=True)
def faster_simulator():
    before = sys.getswitchinterval()
    sys.setswitchinterval(5e-4)
    yield
    sys.setswitchinterval(before)


def case_id(case):
    heads, T, S, causal, padding, power, blocks, dtype = case
    return (f"{heads}-T{T}-S{S}-{'causal' if causal else 'full'}-{padding}-"
            f"{'LSSA' if power is None else f'LSSAR{power}'}-blocks{blocks[0]}x{blocks[1]}-{dtype}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cuda_kernels_match_the_reference(case, attention_inputs):
    heads, T, S, causal, padding, power, (block_m, block_n), dtype = case
    inputs = attention_inputs(B=2 if padding else 1, heads=heads, T=T, S=S, D=4, Dv=4, padding=padding)
    options = (causal, inputs["key_padding_mask"], None, True, power)
    q, k, v, do = (inputs[n].astype(dtype) for n in ("q", "k", "v", "do"))
    want_o = reference.forward(*(a.astype(np.float64) for a in (q, k, v)), *options)
    want_grads = reference.backward(*(a.astype(np.float64) for a in (q, k, v, do)), *options)
    o, stats = softplus_cuda.forward(q, k, v, *options, block_m=block_m, block_n=block_n)
    grads = softplus_cuda.backward(q, k, v, o, stats, do, *options, block_m=block_m, block_n=block_n)
    tol = TOLERANCES[dtype]
    assert o.dtype == stats.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, want_o, **tol)
    for name, g, want in zip("qkv", grads, want_grads):
        assert_close(f"d{name}", g, want, **tol)
    assert all(np.isfinite(a).all() for a in (o,) + grads)


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason=f"no usable GPU: {backend.gpu_status()}")
def test_minigrad_op_on_gpu_matches_cpu(attention_inputs):
    """The op on CuPy data (the CUDA kernels) gives the CPU kernels' output and gradients."""
    inputs = attention_inputs(heads="DiffQKV", T=63, D=16, padding="random")
    results = {}
    for device in ("cpu", "cuda"):
        q, k, v = (minigrad.tensor(inputs[n].astype(np.float32), device=device, requires_grad=True) for n in "qkv")
        mask = minigrad.tensor(inputs["key_padding_mask"], device=device)
        out = softplus_attention(q, k, v, True, key_padding_mask=mask, power=3)
        out.backward(minigrad.tensor(inputs["do"].astype(np.float32), device=device))
        results[device] = [backend.to_numpy(a) for a in (out.data, q.grad.data, k.grad.data, v.grad.data)]
    for name, c, g in zip(["O", "dq", "dk", "dv"], results["cpu"], results["cuda"]):
        assert_close(name, g, c, rtol=1e-4, atol=1e-4)
