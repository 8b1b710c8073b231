"""`python -m book.env`: what this machine runs, for bug reports.

Prints the Python and library versions, whether a GPU is usable (CuPy imports, sees a device, and a
one-element allocation succeeds) and, if not, why; and whether the Numba CUDA simulator is on.
"""
import importlib
import os
import platform
import sys

from minigrad import backend

PACKAGES = ["numpy", "scipy", "numba", "torch", "matplotlib", "nbclient", "pytest", "hypothesis", "cupy"]


def version_of(name: str) -> str:
    try:
        return getattr(importlib.import_module(name), "__version__", "installed")
    except Exception as err:
        return f"not available ({type(err).__name__})"


def report() -> str:
    lines = [f"python      {sys.version.split()[0]} ({platform.platform()})",
             f"cpu cores   {os.cpu_count()}"]
    lines += [f"{name:<11} {version_of(name)}" for name in PACKAGES]
    lines.append(f"gpu usable  {backend.gpu_status()}")
    sim = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
    lines.append(f"cuda sim    {'on' if sim else 'off'} (NUMBA_ENABLE_CUDASIM={os.environ.get('NUMBA_ENABLE_CUDASIM', '')!r})")
    lines.append(f"fast mode   {os.environ.get('MINIGRAD_FAST', '0')} (MINIGRAD_FAST)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
