"""Time the CPU FlashAttention kernels (kernels/flash_attention/cpu.py) against PyTorch's scaled_dot_product_attention.

    python benchmarks/bench_attention.py [--T 512 1024 2048 4096] [--quick] [--threads 2] [--no-memory]

Same inputs for both (B=4, H=8, D=64, float32), causal and not: the forward, and forward + backward (the backward
of an upstream gradient dO). The two run in one process with the same thread count, alternating run by run so that
a slow spell of the machine hits both; the table gives medians and the ratio ours / torch. Then the peak memory
of one forward at T = 16384 (B=1, H=2), each in a fresh process. A script, not a test: timings are reported,
never asserted.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

B, H, D = 4, 8, 64
MEMORY_T = 16384


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cases(T, causal):
    """{name: (ours, torch)}: zero-argument functions on the same inputs."""
    import numpy as np
    import torch
    from kernels.flash_attention import cpu

    rng = np.random.default_rng(0)
    q, k, v, do = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
    tq, tk, tv, tdo = (torch.from_numpy(a) for a in (q, k, v, do))

    def ours_forward_backward():
        o, lse = cpu.forward(q, k, v, causal)
        cpu.backward(q, k, v, o, lse, do, causal)

    def torch_forward():
        with torch.no_grad():
            torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

    def torch_forward_backward():
        leaves = [t.detach().requires_grad_() for t in (tq, tk, tv)]
        torch.nn.functional.scaled_dot_product_attention(*leaves, is_causal=causal).backward(tdo)

    return {"forward": (lambda: cpu.forward(q, k, v, causal), torch_forward),
            "fwd+bwd": (ours_forward_backward, torch_forward_backward)}


def measure(T, causal, reps):
    """{name: (median ours, median torch)} in seconds, alternating ours and torch."""
    result = {}
    for name, (ours, torch_fn) in cases(T, causal).items():
        ours(), torch_fn()  # warm-up: loads the compiled kernels, sizes torch's buffers
        times = {"ours": [], "torch": []}
        for _ in range(reps):
            for label, fn in (("ours", ours), ("torch", torch_fn)):
                time.sleep(0.02)  # let the other library's spinning worker threads go idle
                times[label].append(timed(fn))
        result[name] = (statistics.median(times["ours"]), statistics.median(times["torch"]))
    return result


MEMORY = """
import json, sys
import numpy as np

def status(field):  # kB
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

T, which = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, 2, T, 64)).astype(np.float32) for _ in range(3))
if which == "ours":
    from kernels.flash_attention import cpu
    cpu.forward(q[:, :, :300], k[:, :, :300], v[:, :, :300])
    run = lambda: cpu.forward(q, k, v)
else:
    import torch
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    torch.nn.functional.scaled_dot_product_attention(tq[:, :, :300], tk[:, :, :300], tv[:, :, :300])
    run = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
run()
print(json.dumps((status("VmHWM") - before) / 1024))
"""


def peak_memory_mib(which, threads):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", MEMORY, str(MEMORY_T), which], env=env, capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--quick", action="store_true", help="T 512 and 1024 only, 3 runs each, no memory")
    parser.add_argument("--reps", type=int, default=None, help="runs per measurement (default: 7, fewer at T > 1024)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    args = parser.parse_args()
    lengths = [512, 1024] if args.quick else args.T

    import numba
    import torch
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)

    print(f"FlashAttention, CPU: B={B}, H={H}, D={D}, float32, {args.threads} threads; median times, "
          f"ratio = ours / torch.nn.functional.scaled_dot_product_attention")
    header = f"{'forward':>9} {'torch':>9} {'ratio':>6} | {'fwd+bwd':>9} {'torch':>9} {'ratio':>6}"
    print(f"{'T':>6} {'causal':>6} | {header}")
    for T in lengths:
        reps = args.reps or (3 if args.quick else (7 if T <= 1024 else 3))
        for causal in (False, True):
            r = measure(T, causal, reps)
            (fo, ft), (bo, bt) = r["forward"], r["fwd+bwd"]
            print(f"{T:>6} {str(causal):>6} | {fo * 1e3:7.1f}ms {ft * 1e3:7.1f}ms {fo / ft:5.2f}x | "
                  f"{bo * 1e3:7.1f}ms {bt * 1e3:7.1f}ms {bo / bt:5.2f}x", flush=True)
    if not (args.quick or args.no_memory) and Path("/proc/self/clear_refs").exists():
        ours, torch_mib = peak_memory_mib("ours", args.threads), peak_memory_mib("torch", args.threads)
        print(f"peak memory of one forward at T={MEMORY_T} (B=1, H=2, D=64, float32; one T x T float32 matrix is "
              f"{MEMORY_T * MEMORY_T * 4 / 2**20:.0f} MiB): ours {ours:.1f} MiB, torch SDPA {torch_mib:.1f} MiB")


if __name__ == "__main__":
    main()
