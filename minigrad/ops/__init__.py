"""minigrad's differentiable ops, grouped by kind. Importing this package also attaches them to Tensor."""
from minigrad.ops.elementwise import *  # noqa: F401,F403
from minigrad.ops.elementwise import abs, pow  # noqa: F401  (shadow builtins on purpose, like torch.abs)
from minigrad.ops.index import getitem  # noqa: F401
from minigrad.ops.index import argsort, gather, index_select, scatter_add, sort, topk  # noqa: F401
from minigrad.ops.linalg import einsum, matmul  # noqa: F401
from minigrad.ops.reduce import *  # noqa: F401,F403
from minigrad.ops.shape import *  # noqa: F401,F403
from minigrad.ops.scan import cummax, cummin, cumprod, logcumsumexp  # noqa: F401
from minigrad.ops.math import *  # noqa: F401,F403  (tan, atan2, floor, round, remainder, isnan, lerp, ...)
from minigrad.ops.index import masked_select, nonzero, take_along_dim  # noqa: F401
from minigrad.ops.scatter import scatter, scatter_reduce  # noqa: F401
