"""Fast attention kernels (no autograd): NumPy references, Numba CPU and Numba CUDA versions.

Layer 1 of the book: this package never imports minigrad (nor book/ nor torch); tests/test_repo_policy.py
enforces it. The layers are listed in CONTRIBUTING.md.
"""
