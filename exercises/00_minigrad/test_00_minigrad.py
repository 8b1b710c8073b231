"""Self-checks for chapter 00: every answer is compared with PyTorch's autograd on the same inputs.

Run them with `make check CH=00`. Each test calls your function; one you have not written yet raises
ExerciseNotDone and the test fails with "not yet". Gradients are checked in float64 under a random
upstream gradient (a plain .sum() would hide mistakes that cancel out).
"""
import numpy as np
import pytest
import torch

from book.exercises import assert_matches, load_exercises

ex = load_exercises("00_minigrad")


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def torch_grads(fn, *arrays, seed=99):
    """Output of fn on float64 torch copies of the arrays, and each input's gradient under a random g."""
    inputs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    g = rand(tuple(out.shape), seed)
    out.backward(torch.from_numpy(g))
    return out.detach().numpy(), g, [t.grad.numpy() for t in inputs]


# ---- 00.1 topological_sort -------------------------------------------------------------------

class Node:
    """A scalar graph node for the tests: value, inputs in `_parents`, local derivatives in `_local`."""

    def __init__(self, data, parents=(), local=()):
        self.data, self._parents, self._local, self.grad = float(data), tuple(parents), tuple(local), 0.0

    def __add__(self, other):
        return Node(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other):
        return Node(self.data * other.data, (self, other), (other.data, self.data))

    def tanh(self):
        t = np.tanh(self.data)
        return Node(t, (self,), (1 - t * t,))


def backprop(root, order):
    """Reverse-mode pass over `order` (parents before children): d root / d node for every node."""
    for node in order:
        node.grad = 0.0
    root.grad = 1.0
    for node in reversed(order):
        for parent, local in zip(node._parents, node._local):
            parent.grad += local * node.grad


def check_order(root, order):
    reachable, stack = {}, [root]
    while stack:
        node = stack.pop()
        if id(node) not in reachable:
            reachable[id(node)] = node
            stack.extend(node._parents)
    ids = [id(n) for n in order]
    assert len(ids) == len(set(ids)), "a node appears more than once in the order"
    assert set(ids) == set(reachable), (f"the order has {len(set(ids))} distinct nodes, "
                                        f"{len(reachable)} are reachable from the root")
    position = {i: k for k, i in enumerate(ids)}
    for node in order:
        for parent in node._parents:
            assert position[id(parent)] < position[id(node)], "a node comes before one of its parents"
    assert order[-1] is root, "the root must come last"


def sort_backprop_and_compare(root, x, troot, tx):
    """Order the graph with the reader's sort, backpropagate along it, compare d root / d x with torch."""
    order = ex.topological_sort(root)
    check_order(root, order)
    backprop(root, order)
    troot.backward()
    assert_matches("d out / d x", x.grad, tx.grad)


@pytest.mark.exercise("00.1")
def test_topological_sort_neuron_with_shared_nodes():
    values = [0.7, -1.3, 0.4, 2.1, -0.2]
    x1, x2, w1, w2, b = (Node(v) for v in values)
    h = x1 * w1 + x2 * w2 + b
    out = (h * h + h).tanh() * x1 + w1 * w1                      # h, x1 and w1 feed several ops
    order = ex.topological_sort(out)
    check_order(out, order)
    backprop(out, order)
    tx1, tx2, tw1, tw2, tb = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values)
    th = tx1 * tw1 + tx2 * tw2 + tb
    tout = (th * th + th).tanh() * tx1 + tw1 * tw1
    tout.backward()
    for name, mine, ref in zip(["x1", "x2", "w1", "w2", "b"], (x1, x2, w1, w2, b), (tx1, tx2, tw1, tw2, tb)):
        assert_matches(f"d out / d {name}", mine.grad, ref.grad)


@pytest.mark.exercise("00.1")
def test_topological_sort_diamonds():
    """x feeds a ladder of diamonds: a wrong order sends a partial gradient up, and 2^k paths hide it."""
    x = Node(0.9)
    tx = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    node, tnode = x, tx
    for k in range(12):
        c = Node(0.5 + 0.1 * k)
        left, right = node * c, (node * node).tanh()
        node = left + right
        tnode = tnode * (0.5 + 0.1 * k) + (tnode * tnode).tanh()
    sort_backprop_and_compare(node, x, tnode, tx)


@pytest.mark.exercise("00.1")
def test_topological_sort_deeper_than_the_recursion_limit():
    import sys
    depth = sys.getrecursionlimit() * 3
    x = Node(0.3)
    tx = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    node, tnode = x, tx
    for _ in range(depth):
        node = (node * Node(0.999)).tanh() + Node(0.001)
        tnode = (tnode * 0.999).tanh() + 0.001
    sort_backprop_and_compare(node, x, tnode, tx)


@pytest.mark.exercise("00.1")
def test_topological_sort_of_a_leaf():
    leaf = Node(1.0)
    assert ex.topological_sort(leaf) == [leaf]


# ---- 00.2 unbroadcast ------------------------------------------------------------------------

BROADCASTS = [((3, 1), (2, 3, 4)), ((), (2, 3)), ((1,), (5,)), ((4,), (3, 4)), ((1, 1, 1), (2, 3, 4)),
              ((2, 1, 4), (5, 2, 3, 4)), ((3, 4), (3, 4)), ((1, 5), (7, 1, 5))]


@pytest.mark.exercise("00.2")
@pytest.mark.parametrize("shape, out_shape", BROADCASTS, ids=str)
def test_unbroadcast(shape, out_shape):
    _, g, (want,) = torch_grads(lambda x: x.expand(out_shape), rand(shape, 1))
    assert_matches(f"unbroadcast to {shape}", ex.unbroadcast(g, shape), want)


# ---- 00.3 mul_backward -----------------------------------------------------------------------

MUL_SHAPES = [((3, 4), (3, 4)), ((3, 1), (2, 3, 4)), ((), (2, 3)), ((4,), (3, 4)), ((2, 1, 5), (1, 4, 1)),
              ((5, 1), (1,)), ((1, 3, 1), (2, 1, 1, 7))]


@pytest.mark.exercise("00.3")
@pytest.mark.parametrize("a_shape, b_shape", MUL_SHAPES, ids=str)
def test_mul_backward(a_shape, b_shape):
    a, b = rand(a_shape, 1), rand(b_shape, 2)
    _, g, (want_a, want_b) = torch_grads(lambda x, y: x * y, a, b)
    grad_a, grad_b = ex.mul_backward(a, b, g)
    assert_matches("grad of a", grad_a, want_a)
    assert_matches("grad of b", grad_b, want_b)


# ---- 00.4 matmul_backward --------------------------------------------------------------------

@pytest.mark.exercise("00.4")
@pytest.mark.parametrize("n, k, m", [(2, 3, 4), (5, 1, 3), (1, 7, 1), (6, 6, 6), (3, 2, 1)])
def test_matmul_backward(n, k, m):
    a, b = rand((n, k), 1), rand((k, m), 2)
    _, g, (want_a, want_b) = torch_grads(lambda x, y: x @ y, a, b)
    grad_a, grad_b = ex.matmul_backward(a, b, g)
    assert_matches("grad of A", grad_a, want_a)
    assert_matches("grad of B", grad_b, want_b)


# ---- 00.5 sum_backward -----------------------------------------------------------------------

SUMS = [((3, 4), 0), ((3, 4), 1), ((3, 4), -1), ((2, 3, 4), (0, 2)), ((2, 3, 4), (-1, 1)), ((2, 3, 4), None),
        ((5,), 0), ((1, 3, 1), 1), ((2, 1, 3, 2), (1, 3))]


@pytest.mark.exercise("00.5")
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("shape, dim", SUMS, ids=str)
def test_sum_backward(shape, dim, keepdim):
    if dim is None:
        fn = (lambda x: x.sum().reshape((1,) * len(shape))) if keepdim else (lambda x: x.sum())
    else:
        fn = lambda x: x.sum(dim=dim, keepdim=keepdim)  # noqa: E731
    _, g, (want,) = torch_grads(fn, rand(shape, 1))
    if dim is None and keepdim:
        assert g.shape == (1,) * len(shape)
    assert_matches(f"sum_backward({shape}, dim={dim}, keepdim={keepdim})", ex.sum_backward(shape, dim, keepdim, g),
                   want)


# ---- 00.6 numerical_gradient -----------------------------------------------------------------

def smooth_function(x):
    """A float64 scalar function written once for torch tensors (its numpy twin is below)."""
    w = torch.from_numpy(rand(x.shape, 7))
    return (torch.sin(x) * w).sum() + (x * x).sum().sqrt() + torch.tanh(x).prod()


def smooth_function_numpy(x):
    w = rand(x.shape, 7)
    return float((np.sin(x) * w).sum() + np.sqrt((x * x).sum()) + np.tanh(x).prod())


@pytest.mark.exercise("00.6")
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2), (1,)], ids=str)
def test_numerical_gradient(shape):
    x = rand(shape, 3)
    before = x.copy()
    t = torch.tensor(x, requires_grad=True)
    smooth_function(t).backward()
    got = ex.numerical_gradient(smooth_function_numpy, x, 1e-6)
    np.testing.assert_array_equal(x, before, err_msg="numerical_gradient changed its input x")
    assert_matches("central differences", got, t.grad, rtol=1e-6, atol=1e-8)


@pytest.mark.exercise("00.6")
def test_numerical_gradient_is_central():
    """A one-sided difference (f(x+h) - f(x)) / h is off by about h f''/2: for x^3 at x=1 with h=1e-3, 3e-3."""
    x = np.array([1.0, -2.0])
    t = torch.tensor(x, requires_grad=True)
    (t ** 3).sum().backward()
    got = ex.numerical_gradient(lambda v: float((v ** 3).sum()), x, 1e-3)
    assert_matches("central differences of x^3 (h=1e-3)", got, t.grad, rtol=2e-6, atol=0)


# ---- 00.7 log_softmax ------------------------------------------------------------------------

@pytest.mark.exercise("00.7")
@pytest.mark.parametrize("shape, dim", [((5,), 0), ((3, 4), -1), ((3, 4), 0), ((2, 3, 5), 1), ((1, 6), 1)],
                         ids=str)
def test_log_softmax(shape, dim):
    x = rand(shape, 4) * 3
    assert_matches("log_softmax", ex.log_softmax(x, dim), torch.log_softmax(torch.from_numpy(x), dim))


@pytest.mark.exercise("00.7")
def test_log_softmax_large_logits():
    x = np.array([[1000.0, 999.0, -1000.0], [-800.0, -801.0, -805.0], [0.0, 0.0, 0.0]])
    got = ex.log_softmax(x, -1)
    assert np.all(np.isfinite(got)), f"log_softmax overflowed: {got}"
    assert_matches("log_softmax of large logits", got, torch.log_softmax(torch.from_numpy(x), -1))


# ---- 00.8 log_softmax_backward ---------------------------------------------------------------

@pytest.mark.exercise("00.8")
@pytest.mark.parametrize("shape, dim", [((5,), 0), ((3, 4), -1), ((3, 4), 0), ((2, 3, 5), 1), ((2, 3, 5), -3)],
                         ids=str)
def test_log_softmax_backward(shape, dim):
    y, g, (want,) = torch_grads(lambda x: torch.log_softmax(x, dim), rand(shape, 5) * 3)
    assert_matches("log_softmax backward", ex.log_softmax_backward(y, g, dim), want)
