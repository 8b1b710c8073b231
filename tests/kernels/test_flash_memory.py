"""The CPU FlashAttention never holds a (T, T) array: at T = 16384 its peak memory stays far below T * T * 4 bytes.

Numba allocates inside the kernel with its own allocator, which tracemalloc does not see, so the test measures
the peak resident memory of a fresh process (Linux's VmHWM, reset just before the call) above its resident size
before the call, with `book.memory` (the measurement chapter 07's first notebook uses): one causal forward at
T = 16384 (B = 1, H = 2, D = 16, float32: the inputs are 2 MiB each, one (T, T) float32 score matrix would be
1 GiB), and one backward at T = 8192 (four times less work, to keep the test short; a (T, T) matrix is 256 MiB
there). Each runs in its own process, so that freed memory is not reused.
"""
import pytest

from book.memory import available, peak_mib

T, T_BACKWARD = 16384, 8192


@pytest.mark.skipif(not available(), reason="needs Linux's /proc/self/clear_refs")
def test_cpu_flash_attention_memory_is_linear_in_T():
    forward = peak_mib(T, ["flash"], heads=2, dim=16, causal=True)["flash"]
    backward = peak_mib(T_BACKWARD, ["backward"], heads=2, dim=16, causal=True)["backward"]
    square, square_backward = T * T * 4 / 2**20, T_BACKWARD * T_BACKWARD * 4 / 2**20
    print(f"peak memory above the inputs: forward at T={T} {forward:.1f} MiB (one T x T float32 matrix: "
          f"{square:.0f} MiB), backward at T={T_BACKWARD} {backward:.1f} MiB ({square_backward:.0f} MiB)")
    assert forward < square / 64     # O 2 MiB, L 0.1 MiB, the tiles kilobytes
    assert backward < square_backward / 16  # dq, dk, dv 3 MiB
