"""nll_loss and binary_cross_entropy against torch.nn.functional: outputs and every gradient torch defines."""
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.backend import np
from book.testing import check_against_torch, random_array

FAST = settings(max_examples=15, deadline=None)
REDUCTIONS = ("mean", "sum", "none")


def _targets(shape, classes, seed=0, ignore=-100):
    target = np.random.default_rng(seed).integers(0, classes, size=shape)
    target.reshape(-1)[1::3] = ignore  # every third sample ignored (never all of them)
    return target


def _log_probs(shape, seed=0):
    x = random_array(shape, seed)
    return x - np.log(np.exp(x).sum(axis=0 if len(shape) == 1 else 1, keepdims=True))


def nll(**kwargs):
    return (lambda x, t, *w: F.nll_loss(x, t, *w, **kwargs), lambda x, t, *w: TF.nll_loss(x, t, *w, **kwargs))


# ---- nll_loss ----------------------------------------------------------------------------------

@FAST
@given(st.integers(1, 4), st.integers(1, 6), st.lists(st.integers(1, 3), max_size=2).map(tuple),
       st.sampled_from(REDUCTIONS), st.booleans())
def test_nll_loss_matches_torch(n, classes, extra, reduction, weighted):
    shape = (n, classes) + extra
    inputs = [_log_probs(shape), _targets((n,) + extra, classes)]
    if weighted:
        inputs.append(random_array((classes,), 1, 0.5, 2.0))
    # torch gives the class weights no gradient, so they are passed as constants to both
    check_against_torch(*nll(reduction=reduction), inputs, no_grad=(2,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_unbatched_and_custom_ignore_index(reduction):
    weight = random_array((5,), 1, 0.5, 2.0)
    check_against_torch(*nll(reduction=reduction), [_log_probs((5,)), np.array(2), weight], no_grad=(2,))
    target = np.array([0, 3, 1, 3, 4, 2, 3])  # class 3 is ignored
    check_against_torch(*nll(reduction=reduction, ignore_index=3), [_log_probs((7, 5)), target, weight],
                        no_grad=(2,))


def test_nll_loss_of_log_softmax_is_cross_entropy_in_torch_too():
    logits, target = random_array((6, 4)), _targets((6,), 4)
    check_against_torch(lambda x, t: F.nll_loss(F.log_softmax(x, dim=1), t),
                        lambda x, t: TF.cross_entropy(x, t), [logits, target])


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_nll_loss_all_ignored_mean_is_nan_as_torch():
    x, t = _log_probs((3, 4)), np.full(3, -100)
    ours = F.nll_loss(mg.tensor(x), mg.tensor(t)).item()
    theirs = TF.nll_loss(torch.tensor(x), torch.tensor(t)).item()
    assert np.isnan(ours) and np.isnan(theirs)


def test_nll_loss_rejects_bad_targets():
    with pytest.raises(ValueError, match=r"nll_loss: target of shape \(7, 5\) .* expected class indices of shape "
                                         r"\(7,\)$"):
        F.nll_loss(mg.zeros(7, 5), mg.zeros(7, 5))
    with pytest.raises(IndexError, match=r"nll_loss: target values \[5\] are out of range for 5 classes"):
        F.nll_loss(mg.zeros(2, 5), mg.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"nll_loss: weight of shape \(4,\) does not match the 5 classes"):
        F.nll_loss(mg.zeros(2, 5), mg.tensor([0, 1]), mg.ones(4))


# ---- binary_cross_entropy ---------------------------------------------------------------------

def bce(**kwargs):
    return (lambda x, t, *w: F.binary_cross_entropy(x, t, *w, **kwargs),
            lambda x, t, *w: TF.binary_cross_entropy(x, t, *w, **kwargs))


@FAST
@given(st.lists(st.integers(1, 5), max_size=3).map(tuple), st.sampled_from(REDUCTIONS), st.booleans())
def test_binary_cross_entropy_matches_torch(shape, reduction, weighted):
    inputs = [random_array(shape, 0, 0.02, 0.98), random_array(shape, 1, 0.0, 1.0)]
    if weighted:  # a weight that broadcasts: one value per last-dim entry
        inputs.append(random_array(shape[-1:], 2, 0.5, 2.0))
    # torch gives the weight no gradient
    check_against_torch(*bce(reduction=reduction), inputs, no_grad=(2,))


def test_binary_cross_entropy_clamps_the_log_at_minus_100_as_torch():
    x = np.array([0.0, 1.0, 0.0, 1.0, 1e-50, 0.5])
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.3])
    check_against_torch(*bce(reduction="none"), [x, t], dtypes=("float64",), no_grad=(1,))
    assert F.binary_cross_entropy(mg.tensor(x), mg.tensor(t), reduction="none").data[0] == 100


def test_binary_cross_entropy_weight_gradient_matches_the_formula_in_torch():
    # torch's F.binary_cross_entropy refuses a weight gradient; its formula, written out in torch, gives one
    x, t, w = random_array((4, 3), 0, 0.05, 0.95), random_array((4, 3), 1, 0.0, 1.0), random_array((3,), 2, 0.5, 2)
    check_against_torch(lambda x, t, w: F.binary_cross_entropy(x, t, w),
                        lambda x, t, w: (-(t * x.log() + (1 - t) * (1 - x).log()) * w).mean(), [x, t, w])


def test_binary_cross_entropy_rejects_values_outside_0_1_and_other_shapes():
    with pytest.raises(ValueError, match=r"binary_cross_entropy: all elements of the input \(shape \(2,\)\) must be "
                                         r"between 0 and 1"):
        F.binary_cross_entropy(mg.tensor([0.5, 1.5]), mg.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target shape \(3,\) differs"):
        F.binary_cross_entropy(mg.tensor([0.5, 0.5]), mg.tensor([0.0, 1.0, 1.0]))
