"""Engine semantics: which tensors keep .grad, accumulation, freed graphs, errors, grad mode, dtypes.

Values are compared with PyTorch (running the same program) or with hand-derived numbers, never with
minigrad's own output.
"""
import pytest
import torch

import minigrad as mg
from minigrad.backend import np
from book.testing import check_against_torch, random_array


def pair(shape, seed, dtype="float64"):
    """The same leaf in both libraries."""
    data = random_array(shape, seed).astype(dtype)
    return mg.tensor(data.copy(), requires_grad=True), torch.tensor(data.copy(), requires_grad=True)


def assert_close(got, want, rtol=1e-6, atol=1e-9):
    np.testing.assert_allclose(got.data if isinstance(got, mg.Tensor) else got,
                               want.detach().numpy() if isinstance(want, torch.Tensor) else want, rtol=rtol, atol=atol)


# ---- which tensors keep .grad ---------------------------------------------------------------

def test_only_leaves_keep_grad():
    x, _ = pair((3,), 1)
    y = x.exp()
    z = (y * 2).sum()
    z.backward()
    assert x.is_leaf and not y.is_leaf and not z.is_leaf
    assert x.grad is not None
    assert y.grad is None and z.grad is None
    assert_close(x.grad, 2 * np.exp(x.data))


def test_retain_grad_keeps_intermediate_grad():
    x, tx = pair((2, 3), 2)
    y, ty = x.tanh(), tx.tanh()
    y.retain_grad()
    ty.retain_grad()
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    assert_close(y.grad, ty.grad)
    assert_close(x.grad, tx.grad)


def test_retain_grad_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.ones(3).retain_grad()


def test_leaf_without_requires_grad_gets_no_grad():
    x, _ = pair((3,), 3)
    c = mg.tensor(random_array((3,), 4))
    (x * c).sum().backward()
    assert c.grad is None and not c.requires_grad


# ---- accumulation, retain_graph -------------------------------------------------------------

def test_grads_accumulate_across_backward_calls():
    x, tx = pair((4,), 5)
    for _ in range(2):
        (x * x).sum().backward()
        (tx * tx).sum().backward()
    assert_close(x.grad, tx.grad)
    assert_close(x.grad, 4 * x.data)


def test_second_backward_through_freed_graph_raises():
    x, _ = pair((3,), 6)
    y = (x.exp() * 3).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward_and_doubles_grads():
    x, tx = pair((3,), 7)
    y, ty = (x.sin() * x).sum(), (tx.sin() * tx).sum()
    y.backward(retain_graph=True)
    y.backward()
    ty.backward(retain_graph=True)
    ty.backward()
    assert_close(x.grad, tx.grad)
    single = np.cos(x.data) * x.data + np.sin(x.data)  # d/dx sum(x sin x), by hand
    assert_close(x.grad, 2 * single)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()  # the second call did not retain the graph


def test_backward_with_explicit_gradient():
    x, tx = pair((2, 3), 8)
    g = random_array((2, 3), 9)
    x.sigmoid().backward(g)
    tx.sigmoid().backward(torch.from_numpy(g))
    assert_close(x.grad, tx.grad)


# ---- errors ---------------------------------------------------------------------------------

def test_backward_on_non_scalar_needs_gradient():
    x, _ = pair((2, 3), 10)
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        (x * 2).backward()


def test_backward_gradient_of_wrong_shape_raises():
    x, _ = pair((2, 3), 11)
    with pytest.raises(RuntimeError, match=r"\(3, 2\).*\(2, 3\)"):
        (x * 2).backward(np.ones((3, 2)))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.ones(3).sum().backward()


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_requires_grad_on_integer_data_raises(dtype):
    with pytest.raises(RuntimeError, match="floating"):
        mg.tensor(np.zeros(3, dtype=dtype), requires_grad=True)
    with pytest.raises(RuntimeError, match="floating"):
        mg.tensor(np.zeros(3, dtype=dtype)).requires_grad_()


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "matmul", "maximum", "pow"])
def test_mixed_float32_float64_raises_type_error_naming_op(op):
    a = mg.tensor(np.ones((2, 2), dtype="float32"))
    b = mg.tensor(np.ones((2, 2), dtype="float64"))
    with pytest.raises(TypeError, match=rf"{op}.*float32.*float64"):
        getattr(mg, op)(a, b)


def test_mixed_dtypes_in_operators():
    a = mg.tensor(np.ones(2, dtype="float32"))
    b = mg.tensor(np.ones(2, dtype="float64"))
    with pytest.raises(TypeError, match="add"):
        a + b
    with pytest.raises(TypeError, match="matmul"):
        a @ b


def test_matmul_shape_mismatch_names_both_shapes():
    a, b = mg.ones(2, 3), mg.ones(4, 5)
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3, 4\).*\(3, 5, 6\)"):
        mg.ones(2, 3, 4) @ mg.ones(3, 5, 6)  # inner dims fail first


def test_matmul_batch_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3, 4\).*\(3, 4, 5\)"):
        mg.ones(2, 3, 4) @ mg.ones(3, 4, 5)


def test_broadcast_failure_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"mul.*\(2, 3\).*\(4,\)"):
        mg.ones(2, 3) * mg.ones(4)


# ---- grad mode, detach ----------------------------------------------------------------------

def test_no_grad_records_no_graph():
    x, _ = pair((3,), 12)
    with mg.no_grad():
        y = x * 2 + 1
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf
    with pytest.raises(RuntimeError):
        y.sum().backward()


def test_no_grad_as_decorator_and_enable_grad_inside():
    x, _ = pair((3,), 13)

    @mg.no_grad()
    def f(t):
        with mg.enable_grad():
            inner = t * 2
        return inner, t * 3
    inner, outer = f(x)
    assert inner.requires_grad and not outer.requires_grad
    with mg.set_grad_enabled(False):
        assert not (x + 1).requires_grad


def test_detach_cuts_the_graph():
    x, tx = pair((3,), 14)
    y, ty = x * x, tx * tx
    z, tz = (y.detach() * x).sum(), (ty.detach() * tx).sum()
    z.backward()
    tz.backward()
    assert not y.detach().requires_grad
    assert_close(x.grad, tx.grad)
    assert_close(x.grad, x.data ** 2)  # only the path through the un-detached x


# ---- graph shapes ---------------------------------------------------------------------------

def test_diamond_graph_sums_both_paths():
    def program(lib, x):
        a = lib.exp(x)
        b = lib.sin(x)
        c = a * b + a / (b * b + 1)   # a and b each used twice, x reached by two paths
        return c.sum()
    x, tx = pair((5,), 15)
    program(mg, x).backward()
    program(torch, tx).backward()
    assert_close(x.grad, tx.grad)


def test_same_tensor_as_both_operands():
    check_against_torch(lambda x: x * x + x - x / (x * x + 1), lambda x: x * x + x - x / (x * x + 1),
                        [random_array((3, 4), 16)])


def test_deep_chain_uses_iterative_topological_sort():
    """10,000 ops deep: a recursive graph walk would hit Python's recursion limit."""
    x = mg.tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, [1.0001 ** 10_000], rtol=1e-9)


def test_wide_fan_out_accumulates():
    x, tx = pair((2,), 17)
    total, ttotal = x * 0, tx * 0
    for k in range(200):
        total, ttotal = total + x * k, ttotal + tx * k
    total.sum().backward()
    ttotal.sum().backward()
    assert_close(x.grad, tx.grad)


# ---- dtypes ---------------------------------------------------------------------------------

def test_float32_in_float32_grads():
    x = mg.tensor(random_array((3, 4), 18).astype("float32"), requires_grad=True)
    w = mg.tensor(random_array((4, 2), 19).astype("float32"), requires_grad=True)
    loss = ((x @ w).tanh() * 0.5 + 1.5).softmax(-1).log().mean()
    loss.backward()
    assert loss.dtype == mg.float32
    assert x.grad.dtype == mg.float32 and w.grad.dtype == mg.float32


@pytest.mark.parametrize("scalar", [0.5, 3, -2.0, 1e-3])
def test_python_scalar_keeps_float32(scalar):
    x = mg.tensor(random_array((3,), 20).astype("float32") + 3, requires_grad=True)
    outs = [x * scalar, scalar * x, x + scalar, x - scalar, scalar - x, x / scalar, scalar / x, x ** scalar,
            mg.maximum(x, scalar), mg.where(x > 0, x, scalar), x.clamp(min=scalar)]
    for out in outs:
        assert out.dtype == mg.float32, out
    sum(o.sum() for o in outs).backward()
    assert x.grad.dtype == mg.float32


def test_python_float_default_dtype_is_float32():
    assert mg.tensor([1.0, 2.0]).dtype == mg.float32
    assert mg.tensor(1.5).dtype == mg.float32
    assert mg.tensor(np.array([1.0])).dtype == mg.float64  # an explicit float64 array stays float64


# ---- un-broadcasting ------------------------------------------------------------------------

def test_unbroadcast_3x1_plus_2x3x4():
    check_against_torch(lambda a, b: a + b, lambda a, b: a + b, [random_array((3, 1), 21), random_array((2, 3, 4), 22)])
    check_against_torch(lambda a, b: a * b, lambda a, b: a * b, [random_array((3, 1), 21), random_array((2, 3, 4), 22)])


def test_unbroadcast_grad_shapes_by_hand():
    a = mg.tensor(np.ones((3, 1)), requires_grad=True)
    b = mg.tensor(np.ones((2, 3, 4)), requires_grad=True)
    (a + b).backward(np.ones((2, 3, 4)))
    assert a.grad.shape == (3, 1) and b.grad.shape == (2, 3, 4)
    np.testing.assert_array_equal(a.grad.data, np.full((3, 1), 8.0))  # summed over the 2 x 4 copies
    np.testing.assert_array_equal(b.grad.data, np.ones((2, 3, 4)))


def test_scalar_tensor_broadcast_against_matrix():
    check_against_torch(lambda a, b: a * b - b / (a * a + 1), lambda a, b: a * b - b / (a * a + 1),
                        [random_array((), 23), random_array((2, 3), 24)])


def test_a_wrong_backward_is_caught_with_the_op_name():
    """An op whose backward returns the wrong shape or dtype is reported, naming the op."""
    from minigrad.tensor import record
    x = mg.tensor(np.ones(3, dtype="float32"), requires_grad=True)
    bad_shape = record(x.data * 2, (x,), lambda g: (np.ones(4, dtype="float32"),), "bad_shape_op")
    with pytest.raises(AssertionError, match="bad_shape_op"):
        bad_shape.sum().backward()
    bad_dtype = record(x.data * 2, (x,), lambda g: (g.astype("float64"),), "bad_dtype_op")
    with pytest.raises(AssertionError, match="bad_dtype_op"):
        bad_dtype.sum().backward()
