"""The CPU FlashAttention never holds a (T, T) array: at T = 16384 its peak memory stays far below T * T * 4 bytes.

Numba allocates inside the kernel with its own allocator, which tracemalloc does not see, so the test measures
the peak resident memory of a fresh process (Linux's VmHWM, reset just before the call) above its resident size
before the call: one causal forward at T = 16384 (B = 1, H = 2, D = 16, float32: the inputs are 2 MiB each, one
(T, T) float32 score matrix would be 1 GiB), and one backward at T = 8192 (four times less work, to keep the test
short; a (T, T) matrix is 256 MiB there). Each runs in its own process, so that freed memory is not reused.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
T, T_BACKWARD = 16384, 8192
MEASURE = """
import json, sys
import numpy as np
from kernels.flash_attention import cpu

def status(field):  # kB
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

which, T = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
q, k, v, do = (rng.standard_normal((1, 2, T, 16)).astype(np.float32) for _ in range(4))
o, lse = cpu.forward(q[:, :, :300], k[:, :, :300], v[:, :, :300], True)  # load the compiled kernels first
cpu.backward(q[:, :, :300], k[:, :, :300], v[:, :, :300], o, lse, do[:, :, :300], True)
if which == "backward":
    o, lse = cpu.forward(q, k, v, True)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM, the peak, to the current resident size
before = status("VmRSS")
if which == "forward":
    cpu.forward(q, k, v, True)
else:
    cpu.backward(q, k, v, o, lse, do, True)
print(json.dumps((status("VmHWM") - before) / 1024))  # MiB
"""


def peak_mib(which, length):
    done = subprocess.run([sys.executable, "-c", MEASURE, which, str(length)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_cpu_flash_attention_memory_is_linear_in_T():
    forward, backward = peak_mib("forward", T), peak_mib("backward", T_BACKWARD)
    square, square_backward = T * T * 4 / 2**20, T_BACKWARD * T_BACKWARD * 4 / 2**20
    print(f"peak memory above the inputs: forward at T={T} {forward:.1f} MiB (one T x T float32 matrix: "
          f"{square:.0f} MiB), backward at T={T_BACKWARD} {backward:.1f} MiB ({square_backward:.0f} MiB)")
    assert forward < square / 64     # O 2 MiB, L 0.1 MiB, the tiles kilobytes
    assert backward < square_backward / 16  # dq, dk, dv 3 MiB
