"""Test-suite setup shared by tests/ and exercises/.

- Numba's CUDA simulator is switched on before anything imports numba, so kernel tests run on a CPU
  (set NUMBA_ENABLE_CUDASIM=0 yourself to test on a real GPU).
- NumPy's BLAS runs on one thread unless you set OPENBLAS_NUM_THREADS: the tests' matrices are small, and idle
  BLAS threads spin on a busy 2-core machine (the BERT tests took 56 s with them, 22-27 s without).
- `--exercises=reader|solutions` chooses which exercise files the self-checks test; the header says which.
"""
import os

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before anything imports numpy

from book.exercises import EXERCISES, SOLUTIONS, TREE_VARIABLE, tree_under_test  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--exercises", choices=["reader", "solutions"], default=None,
                     help="test the reader's exercise files (default; `make check`) or the solutions (`make test`)")


def pytest_configure(config):
    tree = config.getoption("exercises")
    if tree:
        os.environ[TREE_VARIABLE] = tree
    config.addinivalue_line("markers", "exercise(id): the self-check test of exercise `id` (e.g. '00.1')")


def pytest_report_header(config):
    tree = tree_under_test()
    where = SOLUTIONS if tree == "solutions" else EXERCISES / "NN_slug" / "exercises.py"
    return f"exercises under test: the {tree} tree ({where})"
