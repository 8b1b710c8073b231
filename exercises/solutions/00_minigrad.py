"""Chapter 00 exercises: the pieces of an autograd engine, written on plain NumPy arrays.

Each function stands alone: it needs NumPy and nothing from minigrad, so you can write and test it
without reading the library. The self-checks in test_00_minigrad.py compare every answer with
PyTorch's autograd on the same inputs (float64, random upstream gradients, odd shapes).
"""
import numpy as np

from book.exercises import ExerciseNotDone  # noqa: F401  (the reader's copy raises it)


# ---------------------------------------------------------------------------------------------
# Section 2: scalars and the computation graph
# ---------------------------------------------------------------------------------------------

def topological_sort(root):
    """Exercise 00.1: order the nodes of a computation graph so that backward can walk it.

    A node is any object with a `_parents` attribute: the tuple of nodes it was computed from (the
    notebook's Value keeps its inputs there). A node can be the parent of several others and can even
    appear twice in one `_parents` tuple (x * x).

    Return a list holding every node reachable from `root` through `_parents`, root included, each
    exactly once, in which every node comes AFTER all of its parents. The root is therefore last and
    the leaves (nodes with no parents) come early; `reversed(order)` is the order in which backward
    visits the nodes: a node's gradient is complete before it is passed on to its parents.

    Write it without recursion (a graph may be thousands of ops deep, deeper than Python's recursion
    limit): a depth-first search with an explicit stack of (node, parents_done) pairs works; compare
    nodes by identity (`id(node)`), not by value.
    """
    # BEGIN SOLUTION 00.1 (about 14 lines; see section 2)
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)  # every parent was appended before this point
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node._parents if id(p) not in visited)
    return order
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Section 3: tensors, broadcasting, matmul, reductions
# ---------------------------------------------------------------------------------------------

def unbroadcast(grad, shape):
    """Exercise 00.2: undo broadcasting on a gradient.

    An input of `shape` was broadcast to `grad.shape` in the forward pass: NumPy aligned the shapes
    on the right, added leading axes, and stretched axes of size 1. Each input element was therefore
    used once per position it was copied to, so its gradient is the SUM of `grad` over those copies.

    grad:  an array of the broadcast (output) shape, e.g. (2, 3, 4)
    shape: the input's shape, e.g. (3, 1)  (it broadcasts to grad.shape)
    returns an array of exactly `shape`: here grad summed over axis 0 (added) and axis 2 (stretched).
    """
    # BEGIN SOLUTION 00.2 (about 6 lines; see section 3)
    shape = tuple(shape)
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad  # the added leading axes
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    grad = grad.sum(axis=stretched, keepdims=True) if stretched else grad
    return grad.reshape(shape)
    # END SOLUTION


def mul_backward(a, b, g):
    """Exercise 00.3: the gradients of c = a * b (elementwise, with NumPy broadcasting).

    a: shape A, b: shape B, g = dL/dc: shape broadcast(A, B).
    dL/da = g * b and dL/db = g * a, each summed back to its input's shape (use your unbroadcast).
    returns (grad_a, grad_b) with shapes A and B.
    """
    # BEGIN SOLUTION 00.3 (about 2 lines; see section 3)
    return unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)
    # END SOLUTION


def matmul_backward(a, b, g):
    """Exercise 00.4: the gradients of C = A @ B for 2-D matrices.

    a: (n, k), b: (k, m), g = dL/dC: (n, m).
    C_ij = sum_k A_ik B_kj, so dL/dA_ik = sum_j g_ij B_kj and dL/dB_kj = sum_i A_ik g_ij.
    returns (grad_a, grad_b) with shapes (n, k) and (k, m). The shapes alone tell you where the
    transposes go.
    """
    # BEGIN SOLUTION 00.4 (about 2 lines; see section 3)
    return g @ b.T, a.T @ g  # (n, m) @ (m, k) and (k, n) @ (n, m)
    # END SOLUTION


def sum_backward(x_shape, dim, keepdim, g):
    """Exercise 00.5: the gradient of y = x.sum(dim, keepdim) with respect to x (PyTorch's semantics).

    x_shape: the input's shape; dim: None (sum over everything), an int or a tuple of ints, negatives
    allowed; keepdim: whether the summed axes were kept with size 1; g = dL/dy: the output's shape.
    Every x element contributes with weight 1 to exactly one output element, so dL/dx is g copied
    back over the summed axes. returns an array of shape x_shape (and g's dtype).
    """
    # BEGIN SOLUTION 00.5 (about 6 lines; see section 3)
    ndim = len(x_shape)
    dims = range(ndim) if dim is None else ((dim,) if isinstance(dim, int) else dim)
    axes = tuple(sorted(d % ndim for d in dims))
    if not keepdim:
        g = np.expand_dims(g, axes)  # put the summed axes back with size 1
    return np.broadcast_to(g, x_shape).copy()
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Section 4: gradient checking
# ---------------------------------------------------------------------------------------------

def numerical_gradient(f, x, h=1e-6):
    """Exercise 00.6: estimate df/dx by central finite differences.

    f: a function of one array returning a Python float (or 0-d array); x: a float64 array of any shape.
    For each element i:  df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h),  e_i the i-th unit array.
    The error is O(h^2) plus rounding of about eps * |f| / h, which is why float64 and h near 1e-6 work.
    returns an array of x's shape and dtype; x itself must be unchanged afterwards.
    """
    # BEGIN SOLUTION 00.6 (about 10 lines; see section 4)
    x = np.array(x, copy=True)
    grad = np.zeros_like(x)
    flat, grad_flat = x.reshape(-1), grad.reshape(-1)  # views into x and grad
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + h
        up = float(f(x))
        flat[i] = saved - h
        down = float(f(x))
        flat[i] = saved
        grad_flat[i] = (up - down) / (2 * h)
    return grad
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Section 5: log-softmax
# ---------------------------------------------------------------------------------------------

def log_softmax(x, dim=-1):
    """Exercise 00.7: y = log softmax(x) along `dim`, without overflow.

    y_i = x_i - log sum_j exp(x_j). Subtract m = max_j x_j first: y_i = (x_i - m) - log sum_j exp(x_j - m)
    is the same number, and every exp now lies in (0, 1], so x = 1000 gives no inf and no NaN.
    x: any shape; returns an array of x's shape.
    """
    # BEGIN SOLUTION 00.7 (about 3 lines; see section 5)
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    # END SOLUTION


def log_softmax_backward(y, g, dim=-1):
    """Exercise 00.8: the fused backward of y = log_softmax(x, dim), computed from the OUTPUT y.

    dy_i/dx_j = delta_ij - softmax(x)_j, so dL/dx_j = g_j - softmax(x)_j * sum_i g_i, and
    softmax(x) = exp(y). y, g: the same shape; returns dL/dx of that shape.
    """
    # BEGIN SOLUTION 00.8 (about 1 line; see section 5)
    return g - np.exp(y) * g.sum(axis=dim, keepdims=True)
    # END SOLUTION
