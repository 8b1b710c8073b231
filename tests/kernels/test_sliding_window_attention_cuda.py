"""The Numba CUDA sliding-window attention against the NumPy reference: outputs, logsumexp and all gradients, on
the CUDA simulator at simulator-sized shapes (small tiles: T = 13, 40, 63 span several, the band's edges fall inside
tiles)."""
import sys

import numpy as np
import pytest
from numba import config, cuda

from kernels.sliding_window_attention import cuda as window_cuda
from kernels.sliding_window_attention import reference
import minigrad
from minigrad import backend
from minigrad.nn.sliding_window_attention import sliding_window_attention
from book.testing import assert_close

pytestmark = [pytest.mark.simulator,
              pytest.mark.skipif(not config.ENABLE_CUDASIM and not cuda.is_available(),
                                 reason="NUMBA_ENABLE_CUDASIM=0 and no CUDA GPU: nothing to run the kernels on")]

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [  # heads, T, S, window, padding, (block_m, block_n), dtype
    ("MHA", 13, 13, 4, None, (8, 8), "float64"),
    ("GQA", 40, 40, 9, "random", (16, 8), "float32"),
    ("DiffQKV", 63, 40, 20, None, (16, 16), "float64"),       # queries past the last key see nothing
    ("MQA", 40, 40, 5, "leading", (16, 8), "float32"),        # the first queries of batch 0 see no key
]


@pytest.fixture(autouse=True)
def faster_simulator():
    before = sys.getswitchinterval()
    sys.setswitchinterval(5e-4)
    yield
    sys.setswitchinterval(before)


def case_id(case):
    heads, T, S, window, padding, blocks, dtype = case
    return f"{heads}-T{T}-S{S}-w{window}-{padding}-blocks{blocks[0]}x{blocks[1]}-{dtype}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cuda_kernels_match_the_reference(case, attention_inputs):
    heads, T, S, window, padding, (block_m, block_n), dtype = case
    inputs = attention_inputs(B=2 if padding else 1, heads=heads, T=T, S=S, D=4, Dv=4, padding=padding)
    mask = inputs["key_padding_mask"]
    q, k, v, do = (inputs[n].astype(dtype) for n in ("q", "k", "v", "do"))
    want_o, want_lse = reference.forward(*(a.astype(np.float64) for a in (q, k, v)), window, mask)
    want_grads = reference.backward(*(a.astype(np.float64) for a in (q, k, v, do)), window, mask)
    o, lse = window_cuda.forward(q, k, v, window, mask, block_m=block_m, block_n=block_n)
    grads = window_cuda.backward(q, k, v, o, lse, do, window, mask, block_m=block_m, block_n=block_n)
    tol = TOLERANCES[dtype]
    assert o.dtype == lse.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, want_o, **tol)
    assert_close("L", lse, want_lse, **tol)
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
        out = sliding_window_attention(q, k, v, 9, key_padding_mask=mask)
        out.backward(minigrad.tensor(inputs["do"].astype(np.float32), device=device))
        results[device] = [backend.to_numpy(a) for a in (out.data, q.grad.data, k.grad.data, v.grad.data)]
    for name, c, g in zip(["O", "dq", "dk", "dv"], results["cpu"], results["cuda"]):
        assert_close(name, g, c, rtol=1e-4, atol=1e-4)
