"""Fast attention kernels (no autograd): NumPy references, Numba CPU and Numba CUDA versions.

Layer 1 of the book: this package never imports minigrad. See ../shared BOOK.md, "Layers".
"""
