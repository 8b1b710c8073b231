"""Forward hooks and pre-hooks, side by side with torch: the same hooks on twin modules give the same results."""
import pytest
import torch

import minigrad as mg
from minigrad import nn
from minigrad.backend import np
from book.testing import assert_close, random_array

TOL = dict(rtol=1e-10, atol=1e-12)


def twins():
    """A small MLP in each library with the same float64 weights."""
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).double()
    ours = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def run(model, lib, x):
    return model(lib.tensor(x)).detach().numpy() if lib is torch else model(lib.tensor(x)).data


def test_hooks_see_and_patch_the_same_activations_in_both_libraries():
    x = random_array((2, 4))
    ours, theirs = twins()
    seen = {}
    for model, lib in ((ours, mg), (theirs, torch)):
        log = seen.setdefault(lib.__name__, [])
        model[0].register_forward_pre_hook(lambda m, args, log=log: log.append(("pre", args[0] * 1.0)))
        model[0].register_forward_pre_hook(lambda m, args: args[0] * 2)                 # patch the input
        model[1].register_forward_hook(lambda m, args, out, log=log: log.append(("post", out * 1.0)))
        model[1].register_forward_hook(lambda m, args, out: out - 0.5)                 # patch the output
        model[1].register_forward_hook(lambda m, args, out, log=log: log.append(("patched", out * 1.0)))
    assert_close("output", run(ours, mg, x), run(theirs, torch, x), **TOL)
    assert [k for k, _ in seen["minigrad"]] == [k for k, _ in seen["torch"]] == ["pre", "post", "patched"]
    for (kind, a), (_, b) in zip(seen["minigrad"], seen["torch"]):
        assert_close(kind, a.data, b.detach().numpy(), **TOL)


def test_hooks_run_in_registration_order_and_prepend_goes_first():
    calls = {}
    for module in (nn.Identity(), torch.nn.Identity()):
        order = calls.setdefault(type(module).__module__.split(".")[0], [])
        module.register_forward_hook(lambda m, a, o, order=order: order.append("first"))
        module.register_forward_hook(lambda m, a, o, order=order: order.append("second"))
        module.register_forward_hook(lambda m, a, o, order=order: order.append("prepended"), prepend=True)
        module.register_forward_pre_hook(lambda m, a, order=order: order.append("pre"))
        module(mg.zeros(1) if isinstance(module, nn.Module) else torch.zeros(1))
    assert calls["minigrad"] == calls["torch"] == ["pre", "prepended", "first", "second"]


def test_remove_and_context_manager_take_the_hook_out():
    x = random_array((2, 4))
    ours, theirs = twins()
    outputs = []
    for model, lib in ((ours, mg), (theirs, torch)):
        handle = model.register_forward_hook(lambda m, a, out: out * 0)
        zeroed = run(model, lib, x)
        handle.remove()
        handle.remove()                                      # removing twice is harmless, as in torch
        with model[2].register_forward_pre_hook(lambda m, args: (args[0] + 1,)):
            shifted = run(model, lib, x)
        outputs.append((zeroed, shifted, run(model, lib, x)))
    (z1, s1, p1), (z2, s2, p2) = outputs
    assert np.all(z1 == 0) and np.all(z2 == 0)
    assert_close("shifted", s1, s2, **TOL)
    assert_close("plain", p1, p2, **TOL)
    assert not np.allclose(s1, p1)


def test_hooks_with_kwargs_match_torch():
    theirs = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    ours = nn.MultiheadAttention(4, 2, batch_first=True)
    ours.load_state_dict(theirs.state_dict())
    q = random_array((2, 3, 4)).astype("float32")
    results = []
    for module, lib in ((ours, mg), (theirs, torch)):
        seen = []
        module.register_forward_pre_hook(lambda m, args, kwargs: (args, {**kwargs, "need_weights": False}),
                                         with_kwargs=True)
        module.register_forward_hook(lambda m, args, kwargs, out, seen=seen: seen.append(kwargs) or out,
                                     with_kwargs=True)
        out, weights = module(lib.tensor(q), lib.tensor(q), lib.tensor(q), need_weights=True)
        assert weights is None                                   # the pre-hook's kwargs reached forward
        results.append((out.detach().numpy() if lib is torch else out.data, seen))
    (ours_out, ours_seen), (theirs_out, theirs_seen) = results
    assert ours_seen == theirs_seen == [{"need_weights": False}]
    assert_close("attention output", ours_out, theirs_out, rtol=1e-5, atol=1e-6)


def test_bad_with_kwargs_pre_hook_result_raises():
    layer = nn.Identity()
    layer.register_forward_pre_hook(lambda m, args, kwargs: args, with_kwargs=True)
    with pytest.raises(RuntimeError, match=r"forward pre-hook registered with_kwargs must return None or a tuple"):
        layer(mg.zeros(1))


def test_hooks_survive_state_dict_round_trips_and_stay_out_of_them():
    x = random_array((2, 4))
    ours, theirs = twins()
    for model in (ours, theirs):
        model[2].register_forward_hook(lambda m, a, out: out + 1)
    assert list(ours.state_dict()) == list(theirs.state_dict())          # no hook in either state dict
    torch.manual_seed(1)
    other = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).double()
    ours.load_state_dict(other.state_dict())
    theirs.load_state_dict(other.state_dict())
    assert_close("output after loading", run(ours, mg, x), run(theirs, torch, x), **TOL)
    assert_close("hook still adds one", run(ours, mg, x), other(torch.tensor(x)).detach().numpy() + 1, **TOL)


def test_hooks_see_gradients_flow_through_patched_outputs():
    x = random_array((3, 4))
    ours, theirs = twins()
    for model in (ours, theirs):
        model[0].register_forward_hook(lambda m, a, out: out * 3)
    grads = []
    for model, lib in ((ours, mg), (theirs, torch)):
        model(lib.tensor(x)).sum().backward()
        grads.append(model[0].weight.grad)
    assert_close("weight grad", grads[0].data, grads[1].numpy(), **TOL)
