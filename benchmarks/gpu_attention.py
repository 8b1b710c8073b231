"""Check and time the CUDA FlashAttention kernels (kernels/flash_attention/cuda.py) on a GPU.

    python benchmarks/gpu_attention.py            # on a GPU machine: CuPy, numba-cuda, and torch built with CUDA
    python benchmarks/gpu_attention.py --tiny     # anywhere: the CUDA simulator at tiny sizes (exercises the script)

1. The kernels' tests (tests/kernels/test_flash_cuda.py) on the GPU (NUMBA_ENABLE_CUDASIM=0), unless --no-tests.
2. Real sizes: our outputs and the gradients of q, k, v against PyTorch autograd on the same inputs (float32),
   for causal and full attention, ragged lengths, GQA/DiffQKV heads and key padding.
3. Timing, float32: forward and forward + backward, ours against torch's scaled_dot_product_attention and against
   a naive attention that materializes the (T, T) scores; medians, and the ratios ours / torch.
Without CUDA in torch, the references run on the CPU and the timing compares against a naive CuPy attention.
Exits non-zero if a check fails. Timings are printed, never asserted.
"""
import os
import sys

TINY = "--tiny" in sys.argv
if TINY:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported
    sys.setswitchinterval(5e-4)               # simulated threads poll at barriers: switch between them more often
else:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "0")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kernels.flash_attention import cuda as flash  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TORCH_DEVICE = "cuda" if torch.cuda.is_available() and not TINY else "cpu"
# (B, Hq, Hk, Hv, T, D, causal, padding)
CHECKS = [(4, 8, 8, 8, 1024, 64, False, False), (4, 8, 8, 8, 1024, 64, True, False),
          (2, 8, 2, 1, 1000, 64, True, True), (2, 4, 1, 4, 777, 128, False, True)]
TIMINGS = [(4, 8, 1024, 64), (4, 8, 2048, 64), (4, 8, 4096, 64)]
TINY_CHECKS = [(1, 2, 1, 2, 13, 8, True, False), (2, 4, 2, 1, 40, 8, False, True)]
TINY_TIMINGS = [(1, 2, 40, 8)]
TINY_BLOCKS = dict(block_m=16, block_n=16)


# ---- arrays on the device --------------------------------------------------------------------------------

def cupy_or_none():
    if TINY:
        return None
    import cupy
    return cupy


def on_device(a):
    """Our kernels' input: a CuPy array on a GPU; under the simulator the NumPy array itself (copied by the wrapper)."""
    cupy = cupy_or_none()
    return a if cupy is None else cupy.asarray(a)


def to_numpy(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def synchronize():
    if TORCH_DEVICE == "cuda":
        torch.cuda.synchronize()
    cupy = cupy_or_none()
    if cupy is not None:
        cupy.cuda.Device().synchronize()


def inputs(B, Hq, Hk, Hv, T, D, padding, seed=0):
    rng = np.random.default_rng(seed)
    arrays = dict(q=rng.standard_normal((B, Hq, T, D)), k=rng.standard_normal((B, Hk, T, D)),
                  v=rng.standard_normal((B, Hv, T, D)), do=rng.standard_normal((B, Hq, T, D)))
    arrays = {name: a.astype(np.float32) for name, a in arrays.items()}
    mask = None
    if padding:
        mask = rng.random((B, T)) > 0.2
        mask[0, :7] = False  # with causal, the first queries of batch 0 see no key
    return arrays, mask


# ---- PyTorch references --------------------------------------------------------------------------------------

def torch_attention(q, k, v, causal, mask, naive=False):
    """SDPA (or the naive formula) with keys and values repeated to the query heads; rows with no key give 0."""
    Hq, T = q.shape[1], q.shape[2]
    k, v = k.repeat_interleave(Hq // k.shape[1], dim=1), v.repeat_interleave(Hq // v.shape[1], dim=1)
    seen = torch.ones(T, T, dtype=torch.bool, device=q.device)
    seen = seen.tril() if causal else seen
    if mask is not None:
        seen = seen & mask[:, None, None, :]
    if naive or mask is not None:
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        scores = scores.masked_fill(~seen, -torch.inf)
        any_seen = seen.any(-1, keepdim=True)
        p = torch.softmax(scores.masked_fill(~any_seen, 0.0), -1) * any_seen
        return p @ v
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def torch_reference(arrays, causal, mask):
    """(O, dq, dk, dv) from PyTorch autograd, as NumPy float32."""
    t = {n: torch.tensor(arrays[n], device=TORCH_DEVICE, requires_grad=n != "do") for n in ("q", "k", "v", "do")}
    t_mask = None if mask is None else torch.tensor(mask, device=TORCH_DEVICE)
    o = torch_attention(t["q"], t["k"], t["v"], causal, t_mask)
    o.backward(t["do"])
    return [a.detach().cpu().numpy() for a in (o, t["q"].grad, t["k"].grad, t["v"].grad)]


# ---- 1. the kernel tests on the GPU -----------------------------------------------------------------------

def run_kernel_tests():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1" if TINY else "0"}
    print(f"1. tests/kernels/test_flash_cuda.py with NUMBA_ENABLE_CUDASIM={env['NUMBA_ENABLE_CUDASIM']}", flush=True)
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/kernels/test_flash_cuda.py", "-q", "-rs",
                           "-p", "no:cacheprovider"], cwd=ROOT, env=env)
    return done.returncode == 0


# ---- 2. correctness at real sizes -----------------------------------------------------------------------

def check(case, blocks):
    B, Hq, Hk, Hv, T, D, causal, padding = case
    arrays, mask = inputs(B, Hq, Hk, Hv, T, D, padding)
    q, k, v, do = (on_device(arrays[n]) for n in ("q", "k", "v", "do"))
    device_mask = None if mask is None else on_device(mask)
    o, lse = flash.forward(q, k, v, causal, device_mask, **blocks)
    grads = flash.backward(q, k, v, o, lse, do, causal, device_mask, **blocks)
    ours = [to_numpy(a) for a in (o,) + tuple(grads)]
    worst = 0.0
    for got, want in zip(ours, torch_reference(arrays, causal, mask)):
        error = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)  # relative to the largest entry
        worst = max(worst, float(error)) if np.isfinite(got).all() else float("inf")
    ok = worst < 2e-4
    print(f"   B={B} Hq={Hq} Hk={Hk} Hv={Hv} T={T} D={D} causal={causal} padding={padding}: "
          f"max error / max |value| over O, dq, dk, dv = {worst:.2e} {'ok' if ok else 'FAILED'}", flush=True)
    return ok


# ---- 3. timing -----------------------------------------------------------------------------------------------

def median_time(fn, reps):
    fn()
    synchronize()
    times = []
    for _ in range(reps):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing(B, H, T, D, causal, reps, blocks):
    arrays, _ = inputs(B, H, H, H, T, D, False)
    q, k, v, do = (on_device(arrays[n]) for n in ("q", "k", "v", "do"))
    cupy = cupy_or_none()

    def ours_forward():
        return flash.forward(q, k, v, causal, **blocks)

    def ours_forward_backward():
        o, lse = flash.forward(q, k, v, causal, **blocks)
        flash.backward(q, k, v, o, lse, do, causal, **blocks)

    rows = {"ours": (median_time(ours_forward, reps), median_time(ours_forward_backward, reps))}
    if TORCH_DEVICE == "cuda" or cupy is None:
        t = {n: torch.tensor(arrays[n], device=TORCH_DEVICE) for n in ("q", "k", "v", "do")}
        for name, naive in (("torch SDPA", False), ("naive torch", True)):
            def forward(naive=naive):
                with torch.no_grad():
                    torch_attention(t["q"], t["k"], t["v"], causal, None, naive)

            def forward_backward(naive=naive):
                leaves = [t[n].detach().requires_grad_() for n in ("q", "k", "v")]
                torch_attention(*leaves, causal, None, naive).backward(t["do"])
            rows[name] = (median_time(forward, reps), median_time(forward_backward, reps))
    else:  # torch without CUDA: a naive CuPy forward as the baseline
        def naive_cupy():
            scores = (q @ k.transpose(0, 1, 3, 2)) * D ** -0.5
            if causal:
                scores = cupy.where(cupy.tri(T, dtype=bool), scores, -cupy.inf)
            scores = cupy.exp(scores - scores.max(-1, keepdims=True))
            return (scores / scores.sum(-1, keepdims=True)) @ v
        rows["naive cupy"] = (median_time(naive_cupy, reps), float("nan"))
    base = rows["ours"]
    for name, (fwd, both) in rows.items():
        print(f"   {T:>6} {str(causal):>6} {name:>12} | {fwd * 1e3:9.2f}ms {both * 1e3:9.2f}ms | ours / this: "
              f"{base[0] / fwd:6.2f}x {base[1] / both:6.2f}x", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="Numba's CUDA simulator at tiny sizes (no GPU needed)")
    parser.add_argument("--no-tests", action="store_true", help="skip step 1 (the pytest run)")
    parser.add_argument("--reps", type=int, default=None, help="timed runs per measurement (10; 2 with --tiny)")
    args = parser.parse_args()
    blocks = TINY_BLOCKS if TINY else {}
    reps = args.reps or (2 if TINY else 10)
    where = "Numba CUDA simulator (tiny sizes: timings mean nothing)" if TINY else "GPU"
    print(f"FlashAttention CUDA kernels on the {where}; PyTorch references on {TORCH_DEVICE}")
    if not TINY and cupy_or_none() is None:
        sys.exit("needs CuPy on a GPU (pip install -r requirements-gpu.txt), or --tiny")
    ok = True
    if not args.no_tests:
        ok &= run_kernel_tests()
    print("2. outputs and gradients against PyTorch autograd, float32", flush=True)
    for case in TINY_CHECKS if TINY else CHECKS:
        ok &= check(case, blocks)
    print(f"3. median times (forward, forward + backward), float32, {reps} runs")
    print(f"   {'T':>6} {'causal':>6} {'':>12} | {'forward':>11} {'fwd+bwd':>11} |")
    for B, H, T, D in TINY_TIMINGS if TINY else TIMINGS:
        for causal in (False, True):
            timing(B, H, T, D, causal, reps, blocks)
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
