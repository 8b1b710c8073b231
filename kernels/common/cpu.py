"""The Numba pieces every CPU kernel of kernels/ shares: the compile settings and two helpers of the tile loops.

    @numba.njit(**FAST_MATH)       a kernel or helper: fast-math that LLVM vectorizes, NaN and inf kept
    @numba.njit(**PARALLEL)        the same, with `prange` loops run on Numba's threads

Numba caches a compiled function in kernels/**/__pycache__ keyed by its own file, not by the files it inlines:
after editing anything here, run `make clean` (or delete the __pycache__ folders) so no stale kernel is loaded.
"""
import numba

FAST_MATH = dict(
    # LLVM fast-math flags, all but "nnan" and "ninf": masked scores are -inf and NaN must stay NaN, so the
    # compiler may not assume they never occur.
    fastmath={
        "nsz",      # no signed zeros: -0.0 and +0.0 may be treated alike
        "arcp",     # x / y may become x * (1 / y): one division per row, multiplications in the loop
        "contract",  # a * b + c may become one fused multiply-add
        "afn",      # approximate library functions (sqrt, log, ...) are allowed
        "reassoc",  # sums and products may be reordered: lets LLVM split a reduction into SIMD lanes
    },
    error_model="numpy",  # division by zero gives inf/NaN as NumPy does, no ZeroDivisionError check in the loop
    cache=True,           # keep the machine code in __pycache__ between processes
)
PARALLEL = dict(FAST_MATH, parallel=True)  # for the outer `prange` loop over (batch, head, tile) items


@numba.njit(**FAST_MATH)
def tile(buffer, rows, cols):
    """A C-contiguous (rows, cols) view of the front of a flat buffer: one buffer allocated per parallel item
    serves every tile size, and `np.dot` (BLAS) needs contiguous arrays."""
    return buffer[:rows * cols].reshape((rows, cols))


@numba.njit(**FAST_MATH)
def first_visible_query(j, i0, m, causal, keep):
    """In a tile of m queries starting at i0, the first one that may see key j (m: none). The rest of the tile
    sees it too: causal query i sees key j iff i >= j; keep (S,) bool, False = a padded key, seen by no query."""
    if not keep[j]:
        return m
    if not causal:
        return 0
    first = j - i0
    return 0 if first < 0 else (m if first > m else first)
