"""minigrad.nn.functional against torch.nn.functional, name for name, forward and every gradient."""
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.backend import np
from book.testing import check_against_torch, random_array

FAST = settings(max_examples=10, deadline=None)
REDUCTIONS = ("mean", "sum", "none")
batch_shapes = st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple)


def both(name, *args, **kwargs):
    """(minigrad fn, torch fn) calling F.<name>(*inputs, *args, **kwargs) in each library."""
    return (lambda *xs: getattr(F, name)(*xs, *args, **kwargs),
            lambda *xs: getattr(TF, name)(*xs, *args, **kwargs))


# ---- linear, embedding, one_hot ---------------------------------------------------------------

@FAST
@given(batch_shapes, st.integers(1, 6), st.integers(1, 6), st.booleans())
def test_linear(batch, n_in, n_out, with_bias):
    inputs = [random_array(batch + (n_in,)), random_array((n_out, n_in), 1)]
    if with_bias:
        inputs.append(random_array((n_out,), 2))
    check_against_torch(*both("linear"), inputs)


def test_linear_rejects_wrong_in_features():
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) does not match weight of shape \(4, 5\).*"
                                         r"in_features=5"):
        F.linear(mg.zeros(2, 3), mg.zeros(4, 5))
    with pytest.raises(TypeError, match="linear: mixed dtypes"):
        F.linear(mg.zeros(2, 5), mg.zeros(4, 5, dtype=mg.float64))


def test_embedding_repeated_indices_and_padding():
    rng = np.random.default_rng(0)
    index = rng.integers(0, 7, size=(3, 5))
    index[0, :3] = 4  # a token that occurs several times: its gradients add up
    index[1, 1] = 6
    weight = random_array((7, 4))
    check_against_torch(*both("embedding"), [index, weight])
    check_against_torch(*both("embedding", padding_idx=4), [index, weight])
    check_against_torch(*both("embedding", padding_idx=-1), [index, weight])
    check_against_torch(*both("embedding", scale_grad_by_freq=True), [index, weight])
    check_against_torch(*both("embedding"), [np.array(3), weight])


def test_embedding_rejects_out_of_range_indices():
    with pytest.raises(IndexError, match=r"embedding: indices in \[0, 7\] are out of range for a weight of shape"):
        F.embedding(mg.tensor([0, 7]), mg.zeros(7, 4))


def test_one_hot():
    index = np.array([[0, 3, 1], [3, 3, 2]])
    for classes in (-1, 6):
        got = F.one_hot(mg.tensor(index), classes)
        want = TF.one_hot(torch.from_numpy(index), classes).numpy()
        assert got.dtype == mg.int64
        np.testing.assert_array_equal(got.numpy(), want)
    with pytest.raises(ValueError, match="one_hot: class values"):
        F.one_hot(mg.tensor([0, 4]), 3)


# ---- normalization ----------------------------------------------------------------------------

@FAST
@given(batch_shapes, st.lists(st.integers(1, 5), min_size=1, max_size=2).map(tuple), st.booleans(), st.booleans())
def test_layer_norm(batch, normalized, with_weight, with_bias):
    inputs = [random_array(batch + normalized)]
    weight = random_array(normalized, 1) if with_weight else None
    bias = random_array(normalized, 2) if with_bias else None
    extra = [a for a in (weight, bias) if a is not None]

    def call(lib):
        def fn(x, *params):
            params = iter(params)
            w = next(params) if with_weight else None
            b = next(params) if with_bias else None
            return lib.layer_norm(x, normalized, w, b, eps=1e-5)
        return fn
    check_against_torch(call(F), call(TF), inputs + extra)


@FAST
@given(batch_shapes, st.lists(st.integers(1, 5), min_size=1, max_size=2).map(tuple), st.booleans(),
       st.sampled_from([None, 1e-6]))
def test_rms_norm(batch, normalized, with_weight, eps):
    inputs = [random_array(batch + normalized)] + ([random_array(normalized, 1)] if with_weight else [])
    check_against_torch(lambda x, *w: F.rms_norm(x, normalized, *w, eps=eps),
                        lambda x, *w: TF.rms_norm(x, normalized, *w, eps=eps), inputs)


def test_norms_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(5,\) does not match .* \(2, 4\)"):
        F.layer_norm(mg.zeros(2, 4), (5,))
    with pytest.raises(ValueError, match=r"rms_norm: weight of shape \(3,\) does not match normalized_shape \(4,\)"):
        F.rms_norm(mg.zeros(2, 4), (4,), mg.ones(3))


@pytest.mark.parametrize("shape", [(7, 3), (5, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(shape, training, affine):
    channels = shape[1]
    running_mean, running_var = random_array((channels,), 3), random_array((channels,), 4, 0.5, 2.0)
    params = [random_array((channels,), 1), random_array((channels,), 2)] if affine else []

    def call(lib):
        def fn(x, rm, rv, *wb):
            out = lib.batch_norm(x, rm, rv, *wb, training=training, momentum=0.3, eps=1e-4)
            return out, rm, rv  # the running statistics are compared after the in-place update
        return fn
    check_against_torch(call(F), call(TF), [random_array(shape), running_mean, running_var] + params,
                        no_grad=(1, 2))


def test_batch_norm_without_running_stats_and_errors():
    check_against_torch(lambda x: F.batch_norm(x, None, None, training=True),
                        lambda x: TF.batch_norm(x, None, None, training=True), [random_array((6, 2, 3))])
    with pytest.raises(ValueError, match="batch_norm: expected more than 1 value per channel"):
        F.batch_norm(mg.zeros(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean of shape \(2,\) does not match the 3 channels"):
        F.batch_norm(mg.zeros(4, 3), mg.zeros(2), mg.ones(3))


# ---- cross_entropy ----------------------------------------------------------------------------

def _targets(shape, classes, seed=0, ignore=-100):
    target = np.random.default_rng(seed).integers(0, classes, size=shape)
    target.reshape(-1)[1::3] = ignore  # every third sample ignored (never all of them)
    return target


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_class_indices(reduction, label_smoothing, weighted):
    logits, target = random_array((7, 5)), _targets((7,), 5)
    inputs = [logits, target] + ([random_array((5,), 1, 0.5, 2.0)] if weighted else [])
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    # torch has no gradient for the class weights of class-index targets (nll_loss), so neither is compared
    check_against_torch(lambda x, t, *w: F.cross_entropy(x, t, *w, **kwargs),
                        lambda x, t, *w: TF.cross_entropy(x, t, *w, **kwargs), inputs, no_grad=(2,))


@FAST
@given(st.integers(1, 4), st.integers(2, 6), st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple),
       st.sampled_from(REDUCTIONS), st.sampled_from([0.0, 0.1]))
def test_cross_entropy_extra_dims(n, classes, extra, reduction, label_smoothing):
    logits, target = random_array((n, classes) + extra), _targets((n,) + extra, classes)
    check_against_torch(*both("cross_entropy", reduction=reduction, label_smoothing=label_smoothing),
                        [logits, target])


def test_cross_entropy_custom_ignore_index_and_unbatched():
    target = np.array([0, 3, 1, 3, 4, 2, 3])  # class 3 is ignored
    check_against_torch(*both("cross_entropy", ignore_index=3, label_smoothing=0.1), [random_array((7, 5)), target])
    check_against_torch(*both("cross_entropy"), [random_array((5,)), np.array(2)])
    check_against_torch(*both("cross_entropy", reduction="none"), [random_array((5,)), np.array(2)])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(7, 5), (3, 5, 2, 3), (5,)])
def test_cross_entropy_probability_targets(reduction, label_smoothing, shape):
    class_axis = 0 if len(shape) == 1 else 1
    probs = np.exp(random_array(shape, 1))
    probs /= probs.sum(axis=class_axis, keepdims=True)
    weight = random_array((shape[class_axis],), 2, 0.5, 2.0)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    check_against_torch(*both("cross_entropy", **kwargs), [random_array(shape), probs])
    check_against_torch(lambda x, t, w: F.cross_entropy(x, t, w, **kwargs),
                        lambda x, t, w: TF.cross_entropy(x, t, w, **kwargs), [random_array(shape), probs, weight])


def test_cross_entropy_large_logits_are_stable():
    logits = random_array((4, 6)) * 1e3
    check_against_torch(*both("cross_entropy", label_smoothing=0.1), [logits, np.array([0, 5, 2, 1])])
    check_against_torch(*both("cross_entropy"), [logits, np.array([0, 5, 2, 1])])  # the fused float32 CPU kernel


def test_cross_entropy_rejects_bad_targets():
    with pytest.raises(ValueError, match=r"cross_entropy: target of shape \(7, 3\) .* input of shape \(7, 5\): "
                                         r"expected class indices of shape \(7,\)"):
        F.cross_entropy(mg.zeros(7, 5), mg.zeros(7, 3, dtype=mg.int64))
    with pytest.raises(IndexError, match="cross_entropy: target values \\[5\\] are out of range for 5 classes"):
        F.cross_entropy(mg.zeros(2, 5), mg.tensor([0, 5]))


# ---- other losses -----------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits(reduction):
    shape = (7, 5)
    logits = random_array(shape) * 20  # large |x|: the stable formula must not overflow
    target = random_array(shape, 1, 0.0, 1.0)
    weight, pos_weight = random_array((1, 5), 2, 0.5, 2.0), random_array((5,), 3, 0.5, 3.0)
    fn = both("binary_cross_entropy_with_logits", reduction=reduction)
    check_against_torch(*fn, [logits, target])
    check_against_torch(lambda x, t, w, p: F.binary_cross_entropy_with_logits(x, t, w, reduction=reduction,
                                                                              pos_weight=p),
                        lambda x, t, w, p: TF.binary_cross_entropy_with_logits(x, t, w, reduction=reduction,
                                                                               pos_weight=p),
                        [logits, target, weight, pos_weight], no_grad=(2, 3))


def test_binary_cross_entropy_with_logits_weight_gradients():
    # torch refuses gradients for weight and pos_weight; minigrad gives them, checked against torch's autograd
    # through the formula written out: weight * ((1 - t) x + (1 + (pos_weight - 1) t) softplus(-x))
    def torch_fn(x, t, w, p):
        return (w * ((1 - t) * x + (1 + (p - 1) * t) * TF.softplus(-x))).mean()
    check_against_torch(lambda x, t, w, p: F.binary_cross_entropy_with_logits(x, t, w, pos_weight=p), torch_fn,
                        [random_array((7, 5)), random_array((7, 5), 1, 0.0, 1.0), random_array((7, 1), 2, 0.5, 2.0),
                         random_array((5,), 3, 0.5, 3.0)])


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_and_l1(name, reduction):
    x, t = random_array((7, 3)), random_array((7, 3), 1)
    x[0, 0] = t[0, 0]  # the kink of |x - t|: both give gradient 0
    check_against_torch(*both(name, reduction=reduction), [x, t])
    check_against_torch(lambda a, b, w: getattr(F, name)(a, b, reduction=reduction, weight=w),
                        lambda a, b, w: getattr(TF, name)(a, b, reduction=reduction, weight=w),
                        [x, t, random_array((7, 3), 2, 0.5, 2.0)])


def test_losses_reject_shape_mismatch():
    with pytest.raises(ValueError, match=r"mse_loss: target shape \(3, 1\) differs from the input's shape \(3, 2\)"):
        F.mse_loss(mg.zeros(3, 2), mg.zeros(3, 1))
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits: target shape"):
        F.binary_cross_entropy_with_logits(mg.zeros(3, 2), mg.zeros(2))


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")  # torch's warning for reduction='mean'
@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    log_q = np.log(np.abs(random_array((7, 5))) + 0.1)
    p = random_array((7, 5), 1, 0.05, 1.0)
    target = np.log(p) if log_target else p
    check_against_torch(*both("kl_div", reduction=reduction, log_target=log_target), [log_q, target])


# ---- similarity and normalization of vectors --------------------------------------------------

@FAST
@given(st.sampled_from([((4, 5), (4, 5), 1), ((3, 1, 6), (1, 4, 6), -1), ((2, 7, 3), (7, 3), 1), ((5,), (5,), 0)]))
def test_cosine_similarity(case):
    shape1, shape2, dim = case
    check_against_torch(*both("cosine_similarity", dim=dim), [random_array(shape1), random_array(shape2, 1)])


def test_cosine_similarity_with_a_zero_vector():
    x1, x2 = random_array((3, 4)), random_array((3, 4), 1)
    x1[1] = 0.0
    check_against_torch(*both("cosine_similarity", dim=1, eps=1e-6), [x1, x2])


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_normalize(p, dim):
    x = random_array((4, 3, 5))
    x[0, :, 0] = 0.0  # a zero vector along dim 1: the eps clamp
    check_against_torch(*both("normalize", p=p, dim=dim), [x])


# ---- dropout and padding ----------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_with_a_given_mask(p):
    x = random_array((7, 5))
    mask = np.random.default_rng(1).uniform(size=(7, 5)) >= p
    check_against_torch(lambda a, m: F.dropout(a, p, mask=m), lambda a, m: a * m / (1 - p), [x, mask])
    shared = mask[:1]  # one mask broadcast over the batch
    check_against_torch(lambda a, m: F.dropout(a, p, mask=m), lambda a, m: a * m / (1 - p), [x, shared])


def test_dropout_draws_and_identity_modes():
    x = mg.ones(1000, 10)
    mg.manual_seed(0)
    y = F.dropout(x, 0.3).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((y == 0).mean() - 0.3) < 0.02
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), 0)
    with pytest.raises(ValueError, match="dropout: probability p must be in"):
        F.dropout(x, 1.5)
    with pytest.raises(ValueError, match=r"dropout: mask of shape \(3,\) does not broadcast"):
        F.dropout(x, 0.5, mask=mg.ones(3))


@pytest.mark.parametrize("pad, value", [((1, 2), None), ((0, 1, 2, 0), 1.5), ((1, 1, 1, 1, 1, 1), -2.0),
                                        ((-1, 2), None), ((2, -1, -1, 0), 0.5)])
def test_pad(pad, value):
    check_against_torch(lambda x: F.pad(x, pad, value=value),
                        lambda x: TF.pad(x, pad, value=0.0 if value is None else value), [random_array((3, 4, 5))])


PAD_CASES = [  # (input shape, pad): 1, 2 and 3 padded dims; negative pads; pads as large as each mode allows
    ((2, 6), (2, 3)), ((1, 2, 6), (-1, 2)), ((1, 2, 6), (2, -1)), ((1, 2, 6), (-2, -1)), ((2, 3, 6), (5, 5)),
    ((1, 2, 6), (-1, 5)), ((2, 3, 4), (1, 2, 2, 1)), ((1, 2, 3, 5), (0, 3, -1, 2)), ((2, 3, 4, 5), (4, 1, 2, 0)),
    ((2, 3, 3, 4), (1, 2, 2, 1, 1, 0)), ((1, 2, 2, 3, 4), (-1, 3, 2, -1, 1, 1)), ((1, 2, 6), (6, 0)),
]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape, pad", PAD_CASES, ids=[f"{s}-{p}" for s, p in PAD_CASES])
def test_pad_modes_match_torch(mode, shape, pad):
    """Every case torch accepts is compared (values and gradients); the ones it refuses must raise here too."""
    x = random_array(shape, 61)
    try:
        TF.pad(torch.from_numpy(x), pad, mode=mode)
    except RuntimeError:
        with pytest.raises(ValueError, match=f"pad: mode '{mode}' needs each pad"):
            F.pad(mg.tensor(x), pad, mode=mode)
        return
    check_against_torch(lambda t: F.pad(t, pad, mode=mode), lambda t: TF.pad(t, pad, mode=mode), [x])


def test_pad_errors():
    with pytest.raises(ValueError, match="pad: pad"):
        F.pad(mg.zeros(3), (1, 1, 1, 1))
    with pytest.raises(ValueError, match="pad: mode must be one of"):
        F.pad(mg.zeros(3, 3), (1, 1), mode="wrap")
    with pytest.raises(ValueError, match="pad: mode 'reflect' pads 1 to 3 last dims"):
        F.pad(mg.zeros(3), (1, 1), mode="reflect")
    with pytest.raises(ValueError, match="pad: mode 'replicate' takes no value"):
        F.pad(mg.zeros(2, 3), (1, 1), mode="replicate", value=1.0)


# ---- activations re-exported with torch's signatures -------------------------------------------

@pytest.mark.parametrize("name, kwargs", [
    ("softmax", dict(dim=1)), ("softmax", dict(dim=-1)), ("log_softmax", dict(dim=0)),
    ("relu", {}), ("gelu", {}), ("gelu", dict(approximate="tanh")), ("silu", {}), ("sigmoid", {}), ("tanh", {}),
    ("softplus", {}), ("softplus", dict(beta=2.0, threshold=5.0)),
])
def test_activations(name, kwargs):
    check_against_torch(*both(name, **kwargs), [random_array((7, 5)) * 3])


def test_softmax_dtype_argument():
    check_against_torch(lambda x: F.softmax(x, 1, dtype=mg.float64), lambda x: TF.softmax(x, 1, dtype=torch.float64),
                        [random_array((3, 4))], dtypes=("float64",))
    with pytest.raises(TypeError, match="softmax: pass dim explicitly"):
        F.softmax(mg.zeros(3))


# ---- float32 stays float32 --------------------------------------------------------------------

def test_float32_paths_stay_float32():
    gen = mg.Generator(0)
    x = mg.randn(6, 5, generator=gen, requires_grad=True)
    w = mg.randn(4, 5, generator=gen, requires_grad=True)
    h = F.layer_norm(F.linear(x, w), (4,))
    loss = F.cross_entropy(h, mg.tensor([0, 1, 2, 3, -100, 1]), label_smoothing=0.1)
    loss = loss + F.mse_loss(F.rms_norm(h, (4,)), mg.zeros(6, 4)) + F.normalize(h).sum()
    assert loss.dtype == mg.float32
    loss.backward()
    assert x.grad.dtype == mg.float32 and w.grad.dtype == mg.float32


NORM_ORDERS = [2, 1, 3, 0.5, 0, -1, -2.5, float("inf"), float("-inf")]


@pytest.mark.parametrize("p", NORM_ORDERS)
@pytest.mark.parametrize("dim", [1, -1, 0])
def test_normalize_any_order(p, dim):
    """F.normalize for every p torch.linalg.vector_norm takes, random rows and dims."""
    check_against_torch(lambda x: F.normalize(x, p=p, dim=dim), lambda x: TF.normalize(x, p=p, dim=dim),
                        [random_array((3, 5, 2), 60)])


@pytest.mark.parametrize("p", NORM_ORDERS)
def test_normalize_ties_and_zeros(p):
    """Rows with tied maxima and minima (the +-inf gradient is shared among ties), zeros, and an all-zero row."""
    x = np.array([[1.0, -3.0, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0], [2.0, 0.5, -1.0, -0.5], [0.0, 2.0, -1.0, 4.0]])
    check_against_torch(lambda t: F.normalize(t, p=p, dim=1), lambda t: TF.normalize(t, p=p, dim=1), [x])
