"""Peak memory of an attention call, measured by the operating system in a fresh process.

`tracemalloc` sees only Python's allocator; the Numba kernels allocate their tiles with their own. So the
measurement reads Linux's counters instead: reset the peak resident size (`/proc/self/clear_refs`, VmHWM := VmRSS)
just before the call, read the peak (VmHWM) after it, minus the resident size before. Each length runs in its own
process (`python -m book.memory ...`), so that memory freed by an earlier call cannot hide a later one.

    from book.memory import peak_mib
    peak_mib(8192, ["flash", "naive"], heads=1, dim=64)      # {"flash": MiB, "naive": MiB} above the inputs

Cases, measured in the order given, in one process: "flash" (the Numba FlashAttention forward), "naive" (NumPy
attention that materializes the scores), "backward" (the Numba backward, from a forward computed before the reset).
Used by chapter 07's first notebook and by tests/kernels/test_flash_memory.py. Linux only.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = ("flash", "naive", "backward")


def available():
    """True where the measurement works: Linux with /proc/self/clear_refs."""
    return Path("/proc/self/clear_refs").exists()


def _status(field):
    """One field of /proc/self/status, in kB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_above_now(fn):
    """MiB by which the peak resident size rises above the current one while fn() runs."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                                   # VmHWM := VmRSS
    before = _status("VmRSS")
    fn()
    return (_status("VmHWM") - before) / 1024


def naive_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v in NumPy: every step makes a new (T, T) array."""
    scores = (q @ k.swapaxes(-1, -2)) * np.float32(1 / np.sqrt(q.shape[-1]))
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) @ v


def measure_here(length, cases, heads, dim, causal):
    """{case: MiB} in this process (call it in a fresh one: see peak_mib)."""
    from kernels.flash_attention import cpu
    rng = np.random.default_rng(0)
    q, k, v, do = (rng.standard_normal((1, heads, length, dim)).astype(np.float32) for _ in range(4))
    small = [a[:, :, :300] for a in (q, k, v)]
    o, lse = cpu.forward(*small, causal)                               # load the compiled kernels first
    cpu.backward(*small, o, lse, do[:, :, :300], causal)
    if "backward" in cases:
        o, lse = cpu.forward(q, k, v, causal)
    calls = {"flash": lambda: cpu.forward(q, k, v, causal), "naive": lambda: naive_attention(q, k, v),
             "backward": lambda: cpu.backward(q, k, v, o, lse, do, causal)}
    return {case: peak_above_now(calls[case]) for case in cases}


def peak_mib(length, cases, heads=1, dim=64, causal=False, timeout=600):
    """Run measure_here in a fresh Python process (BLAS on one thread) and return its {case: MiB}."""
    unknown = set(cases) - set(CASES)
    if unknown:
        raise ValueError(f"unknown cases {sorted(unknown)}; choose from {CASES}")
    command = [sys.executable, "-m", "book.memory", str(length), str(heads), str(dim), str(int(causal)), *cases]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    length, heads, dim, causal, *cases = sys.argv[1:]
    print(json.dumps(measure_here(int(length), cases, int(heads), int(dim), bool(int(causal)))))
