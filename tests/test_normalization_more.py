"""group_norm and instance_norm (functional and modules) against torch: outputs, every gradient, running stats."""
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.backend import np
from book.testing import check_against_torch, check_module_against_torch, random_array

FAST = settings(max_examples=15, deadline=None)
spatial_shapes = st.lists(st.integers(1, 4), max_size=2).map(tuple)


def _affine(channels, weight, bias):
    return ([random_array((channels,), 1)] if weight else []) + ([random_array((channels,), 2)] if bias else [])


@FAST
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), spatial_shapes,
       st.sampled_from([(False, False), (True, False), (True, True)]))  # torch's backward fails for a bias alone
def test_group_norm_matches_torch(n, groups, per_group, spatial, affine):
    weight, bias = affine
    channels = groups * per_group
    if n * per_group * np.prod(spatial) == 1:
        spatial = (2,)  # torch refuses a batch of one sample with one value per group
    inputs = [random_array((n, channels) + spatial)] + _affine(channels, weight, bias)

    def call(f):
        def fn(x, *params):
            w = params[0] if weight else None
            b = params[-1] if bias else None
            return f(x, groups, w, b, eps=1e-3)
        return fn
    check_against_torch(call(F.group_norm), call(TF.group_norm), inputs)


def test_group_norm_rejects_channels_that_do_not_split():
    with pytest.raises(ValueError, match=r"group_norm: the 6 channels .* num_groups=4"):
        F.group_norm(mg.zeros(2, 6, 3), 4)
    with pytest.raises(ValueError, match=r"group_norm: expected more than one value per group"):
        F.group_norm(mg.zeros(1, 6), 6)
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels=6 must be divisible by num_groups=4"):
        nn.GroupNorm(4, 6)


@FAST
@given(st.integers(1, 3), st.integers(1, 4), st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple),
       st.booleans())
def test_instance_norm_input_stats_match_torch(n, channels, spatial, affine):
    if np.prod(spatial) == 1:
        spatial = spatial + (2,)  # torch needs more than one position per channel with input statistics
    inputs = [random_array((n, channels) + spatial)] + _affine(channels, affine, affine)

    def call(f):
        return lambda x, *wb: f(x, None, None, *wb)
    check_against_torch(call(F.instance_norm), call(TF.instance_norm), inputs)


@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm_running_stats_match_torch(use_input_stats):
    shape, channels = (3, 4, 5), 4
    running = {lib: (lib.tensor(random_array((channels,), 3)), lib.tensor(random_array((channels,), 4, 0.5, 2.0)))
               for lib in (mg, torch)}
    weight, bias = random_array((channels,), 1), random_array((channels,), 2)

    def call(f, lib):
        return lambda x, w, b: f(x, *running[lib], w, b, use_input_stats=use_input_stats, momentum=0.3)
    check_against_torch(call(F.instance_norm, mg), call(TF.instance_norm, torch), [random_array(shape), weight, bias],
                        dtypes=("float64",))
    for ours, theirs in zip(running[mg], running[torch]):
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-12)
    if not use_input_stats:
        np.testing.assert_array_equal(running[mg][0].data, random_array((channels,), 3))  # left as they were


def test_instance_norm_needs_more_than_one_position_and_running_stats_without_input_stats():
    with pytest.raises(ValueError, match=r"instance_norm: expected more than 1 spatial element"):
        F.instance_norm(mg.zeros(2, 3, 1))
    with pytest.raises(ValueError, match=r"instance_norm: running_mean and running_var are required"):
        F.instance_norm(mg.zeros(2, 3, 4), use_input_stats=False)
    with pytest.raises(ValueError, match=r"instance_norm: weight of shape \(4,\) does not match the 3 channels"):
        F.instance_norm(mg.zeros(2, 3, 4), weight=mg.ones(4))


# ---- modules ---------------------------------------------------------------------------------

def _randomize(module):
    """Non-trivial weights and running statistics: ones and zeros would hide a swapped weight and bias."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
        if getattr(module, "running_mean", None) is not None:
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return module


@pytest.mark.parametrize("shape", [(2, 6, 5), (3, 6, 2, 3), (1, 6)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_module(shape, affine):
    torch.manual_seed(0)
    ours, theirs = nn.GroupNorm(3, 6, affine=affine), _randomize(torch.nn.GroupNorm(3, 6, affine=affine))
    check_module_against_torch(ours, theirs, random_array(shape))
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("kind,shape", [("1d", (3, 4, 5)), ("1d", (4, 6)), ("2d", (2, 4, 3, 2)), ("2d", (4, 2, 3))])
@pytest.mark.parametrize("affine,track", [(False, False), (True, False), (True, True), (False, True)])
@pytest.mark.parametrize("training", [True, False])
def test_instance_norm_modules(kind, shape, affine, track, training):
    torch.manual_seed(0)
    name = f"InstanceNorm{kind}"
    ours = getattr(nn, name)(4, affine=affine, track_running_stats=track, momentum=0.2)
    theirs = _randomize(getattr(torch.nn, name)(4, affine=affine, track_running_stats=track, momentum=0.2))
    ours.train(training), theirs.train(training)
    check_module_against_torch(ours, theirs, random_array(shape))  # two forwards (float64, float32) on each side
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict()) and repr(ours) == repr(theirs)
    for name, buf in theirs.named_buffers():
        np.testing.assert_allclose(getattr(ours, name).data, buf.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_instance_norm_rejects_wrong_inputs():
    with pytest.raises(ValueError, match=r"InstanceNorm1d: expected a 2-d \(unbatched\) or 3-d input"):
        nn.InstanceNorm1d(3)(mg.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"InstanceNorm2d: expected input with 3 channels"):
        nn.InstanceNorm2d(3, affine=True)(mg.zeros(2, 4, 4, 5))
