"""The Numba CUDA FlashAttention kernels against the NumPy reference: outputs, logsumexp and all gradients.

On a CPU they run on Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set by the root conftest.py) at
simulator-sized shapes: small tiles so that T = 13, 40, 63 span several ragged ones. On a GPU, run them with
NUMBA_ENABLE_CUDASIM=0. Code that only the simulator accepts is caught by test_cuda_compile.py."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import config, cuda

from kernels.flash_attention import cuda as flash_cuda
from kernels.flash_attention import reference
import minigrad
from minigrad import backend
from book.testing import assert_close

SIMULATOR = bool(config.ENABLE_CUDASIM)
pytestmark = [pytest.mark.simulator,
              pytest.mark.skipif(not SIMULATOR and not cuda.is_available(),
                                 reason="NUMBA_ENABLE_CUDASIM=0 and no CUDA GPU: nothing to run the kernels on")]

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [  # heads, T, S, D, Dv, causal, padding, (block_m, block_n), dtype
    ("MHA", 13, 13, 8, 8, True, None, (8, 8), "float64"),
    ("GQA", 40, 40, 8, 4, False, "random", (16, 8), "float64"),
    ("DiffQKV", 40, 63, 4, 8, True, "random", (16, 16), "float32"),
    ("DiffQKV-v", 63, 40, 8, 8, False, None, (16, 16), "float32"),
    ("MQA", 40, 40, 4, 4, True, "leading", (16, 8), "float64"),  # the first queries of batch 0 see no key
    ("MHA", 13, 40, 4, 4, False, "all", (8, 16), "float32"),     # no query of batch 0 sees a key
]


@pytest.fixture(autouse=True)
def faster_simulator():
    """Each simulated GPU thread is a Python thread and barriers poll: a shorter switch interval halves the time."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(5e-4)
    yield
    sys.setswitchinterval(before)


def case_id(case):
    heads, T, S, D, Dv, causal, padding, blocks, dtype = case
    return f"{heads}-T{T}-S{S}-{'causal' if causal else 'full'}-{padding}-blocks{blocks[0]}x{blocks[1]}-{dtype}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cuda_kernels_match_the_reference(case, attention_inputs):
    heads, T, S, D, Dv, causal, padding, (block_m, block_n), dtype = case
    inputs = attention_inputs(B=2 if padding else 1, heads=heads, T=T, S=S, D=D, Dv=Dv, padding=padding)
    mask = inputs["key_padding_mask"]
    q, k, v, do = (inputs[name].astype(dtype) for name in ("q", "k", "v", "do"))
    want_o, want_lse = reference.forward(*(a.astype(np.float64) for a in (q, k, v)), causal, mask)
    want_grads = reference.backward(*(a.astype(np.float64) for a in (q, k, v, do)), causal, mask)
    o, lse = flash_cuda.forward(q, k, v, causal, mask, block_m=block_m, block_n=block_n)
    grads = flash_cuda.backward(q, k, v, o, lse, do, causal, mask, block_m=block_m, block_n=block_n)
    tol = TOLERANCES[dtype]
    assert o.dtype == lse.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, want_o, **tol)
    assert_close("L", lse, want_lse, **tol)
    for name, g, want in zip("qkv", grads, want_grads):
        assert_close(f"d{name}", g, want, **tol)
    if padding in ("leading", "all"):
        assert all(np.isfinite(a).all() for a in (o,) + grads)


def test_device_arrays_stay_on_the_device(attention_inputs):
    """Numba device arrays in, device arrays out (no copy back to the host)."""
    inputs = attention_inputs(heads="GQA", T=13, D=4)
    q, k, v, do = (cuda.to_device(inputs[name].astype(np.float32)) for name in ("q", "k", "v", "do"))
    o, lse = flash_cuda.forward(q, k, v, True, block_m=8, block_n=8)
    dq, dk, dv = flash_cuda.backward(q, k, v, o, lse, do, True, block_m=8, block_n=8)
    assert all(hasattr(a, "copy_to_host") for a in (o, lse, dq, dk, dv))
    want = reference.forward(inputs["q"], inputs["k"], inputs["v"], True)[0]
    assert_close("O", o.copy_to_host(), want, **TOLERANCES["float32"])
    assert dk.shape == inputs["k"].shape and dv.shape == inputs["v"].shape


def test_default_tiles_fit_in_shared_memory():
    for d, dv, itemsize in [(64, 64, 4), (128, 128, 4), (128, 64, 8), (16, 16, 4)]:
        block_m, block_n = flash_cuda.default_blocks(d, dv, itemsize)
        assert block_m * (d + dv) * itemsize <= flash_cuda.SHARED_BYTES and block_m >= 16


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason=f"no usable GPU: {backend.gpu_status()}")
def test_minigrad_op_on_gpu_matches_cpu(attention_inputs):
    from minigrad.nn.flash_attention import flash_attention
    inputs = attention_inputs(heads="DiffQKV", T=63, D=16, padding="random")
    results = {}
    for device in ("cpu", "cuda"):
        q, k, v = (minigrad.tensor(inputs[n].astype(np.float32), device=device, requires_grad=True) for n in "qkv")
        mask = minigrad.tensor(inputs["key_padding_mask"], device=device)
        out = flash_attention(q, k, v, causal=True, key_padding_mask=mask)
        out.backward(minigrad.tensor(inputs["do"].astype(np.float32), device=device))
        results[device] = [backend.to_numpy(a) for a in (out.data, q.grad.data, k.grad.data, v.grad.data)]
    for name, c, g in zip(["O", "dq", "dk", "dv"], results["cpu"], results["cuda"]):
        assert_close(name, g, c, rtol=1e-4, atol=2e-5)


def test_the_gpu_benchmark_script_runs_on_the_simulator():
    """benchmarks/gpu_attention.py is meant for a GPU; --tiny runs it on the simulator, so it cannot rot unseen."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "benchmarks/gpu_attention.py", "--tiny", "--no-tests", "--reps", "1"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all checks passed" in done.stdout
