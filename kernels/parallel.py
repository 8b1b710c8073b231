"""Around a CPU kernel's parallel loop: SciPy's BLAS on one thread, items handed out one at a time.

The attention kernels parallelize over (batch, head, tile) items with `prange` and multiply tiles with `np.dot`,
which Numba hands to SciPy's BLAS. Nested BLAS threads would only fight the loop's own threads, so the OpenBLAS
behind SciPy is set to one thread while a kernel runs. Items are handed out one at a time (chunk size 1):
causal items differ in cost, and a fixed share per thread would leave cores idle.
"""
import contextlib
import ctypes

import numba


def _openblas_threads():
    """(get, set) of the thread count of the OpenBLAS behind SciPy's BLAS (which Numba's np.dot calls), or None
    when SciPy uses another BLAS."""
    try:
        import scipy.linalg.cython_blas
        lib = ctypes.CDLL(scipy.linalg.cython_blas.__file__)  # dlsym also searches the libraries it links to
    except (ImportError, OSError):
        return None
    for prefix in ("scipy_openblas_", "openblas_"):
        try:
            return getattr(lib, prefix + "get_num_threads"), getattr(lib, prefix + "set_num_threads")
        except AttributeError:
            continue
    return None


_BLAS_THREADS = _openblas_threads()


@contextlib.contextmanager
def parallel_items():
    """Run a kernel's parallel loop with single-threaded BLAS and one item per hand-out."""
    with numba.parallel_chunksize(1):
        if _BLAS_THREADS is None:
            yield
            return
        get, set_ = _BLAS_THREADS
        before = get()
        set_(1)
        try:
            yield
        finally:
            set_(before)
