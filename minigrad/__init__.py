"""minigrad: a small autograd engine on NumPy (CPU) and CuPy (GPU), with PyTorch's names.

    import minigrad as mg
    x = mg.randn(3, 4, requires_grad=True)
    loss = (x @ x.T).relu().sum()
    loss.backward()        # x.grad now holds d loss / d x
"""
from minigrad.backend import bool_, float16, float32, float64, gpu_available, int32, int64
from minigrad.tensor import (Parameter, Tensor, enable_grad, is_grad_enabled, no_grad, set_grad_enabled)
from minigrad.ops import *  # noqa: F401,F403  (also attaches the ops to Tensor as methods)
from minigrad.ops import abs, max, min, pow, sum  # noqa: F401
from minigrad.creation import (arange, eye, full, linspace, ones, ones_like, rand, rand_like, randint, randn,
                               randn_like, randperm, tensor, zeros, zeros_like)
from minigrad.creation import empty, full_like  # noqa: F401
from minigrad.random import Generator, manual_seed

long, float, double = int64, float32, float64  # dtype aliases as in torch (mg.float, mg.long)

from minigrad import nn, optim  # noqa: E402  (mg.nn and mg.optim, as torch.nn and torch.optim)
