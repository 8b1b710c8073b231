"""Optimizers, gradient clipping and learning-rate schedules against torch.optim, step by step.

Each step both libraries receive the same gradients (set from one random array), so any difference
in the parameters comes from the update rule alone.
"""
import math

import pytest
import torch

import minigrad as mg
from minigrad import nn, optim
from minigrad.backend import np
from minigrad.optim import lr_scheduler
from book.testing import TOLERANCES, assert_close, random_array

SHAPES = [(3, 4), (5,), (2, 3, 2)]
STEPS = 5


def _params(dtype, seed=0):
    arrays = [random_array(s, seed=seed + i, dtype=dtype) for i, s in enumerate(SHAPES)]
    return ([mg.Parameter(a.copy()) for a in arrays], [torch.nn.Parameter(torch.tensor(a.copy())) for a in arrays])


def _set_grads(mg_params, torch_params, step, dtype):
    for i, (p, tp) in enumerate(zip(mg_params, torch_params)):
        g = random_array(p.shape, seed=100 * step + i, dtype=dtype)
        p.grad = mg.tensor(g.copy())
        tp.grad = torch.tensor(g.copy())


def _compare(mg_params, torch_params, dtype, what):
    for i, (p, tp) in enumerate(zip(mg_params, torch_params)):
        assert p.dtype == np.dtype(dtype)
        assert_close(f"[{dtype}] {what}, param {i}", p.data, tp.detach().numpy(), **TOLERANCES[dtype])


def _groups(params, split):
    """One group, or two groups with their own lr (to check per-group hyperparameters)."""
    return [{"params": params[:1], "lr": 0.05}, {"params": params[1:]}] if split else params


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.8, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.3)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True, betas=(0.7, 0.9))),
]


@pytest.mark.parametrize("split", [False, True], ids=["one_group", "two_groups"])
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_optimizer_matches_torch(name, kwargs, dtype, split):
    mg_params, torch_params = _params(dtype)
    opt = getattr(optim, name)(_groups(mg_params, split), **kwargs)
    ref = getattr(torch.optim, name)(_groups(torch_params, split), **kwargs)
    for step in range(STEPS):
        _set_grads(mg_params, torch_params, step, dtype)
        opt.step()
        ref.step()
        _compare(mg_params, torch_params, dtype, f"{name}{kwargs} step {step}")


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9)), ("AdamW", dict(lr=0.01, amsgrad=True))])
def test_optimizer_state_dict_round_trip(name, kwargs):
    """Save after 2 steps, load into a fresh optimizer over copies of the parameters: the next 3 steps agree."""
    dtype = "float64"
    mg_params, torch_params = _params(dtype)
    opt = getattr(optim, name)(mg_params, **kwargs)
    ref = getattr(torch.optim, name)(torch_params, **kwargs)
    for step in range(2):
        _set_grads(mg_params, torch_params, step, dtype)
        opt.step()
        ref.step()
    saved = opt.state_dict()
    copies = [mg.Parameter(p.data.copy()) for p in mg_params]
    resumed = getattr(optim, name)(copies, lr=123.0)  # the saved hyperparameters must win
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == kwargs["lr"]
    for step in range(2, STEPS):
        _set_grads(mg_params, torch_params, step, dtype)
        for p, c in zip(mg_params, copies):
            c.grad = mg.tensor(p.grad.data.copy())
        opt.step()
        resumed.step()
        ref.step()
        _compare(copies, torch_params, dtype, f"resumed {name} step {step}")
        for p, c in zip(mg_params, copies):
            np.testing.assert_array_equal(p.data, c.data)


def test_optimizer_state_dict_is_a_snapshot():
    p = mg.Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = mg.tensor(np.ones(3))
    opt.step()
    saved = opt.state_dict()
    opt.step()
    np.testing.assert_array_equal(saved["state"][0]["momentum_buffer"].data, np.ones(3))
    assert saved["param_groups"][0]["params"] == [0]


def test_adam_loads_a_torch_optimizer_state_dict():
    """A torch.optim.Adam checkpoint (tensors, 'step' as a tensor) continues here exactly as in torch."""
    dtype = "float64"
    mg_params, torch_params = _params(dtype)
    ref = torch.optim.Adam(torch_params, lr=0.01, weight_decay=0.1)
    for step in range(2):
        _set_grads(mg_params, torch_params, step, dtype)
        ref.step()
    for p, tp in zip(mg_params, torch_params):
        p.data[...] = tp.detach().numpy()
    opt = optim.Adam(mg_params)
    opt.load_state_dict(ref.state_dict())
    assert opt.state[mg_params[0]]["step"] == 2
    for step in range(2, STEPS):
        _set_grads(mg_params, torch_params, step, dtype)
        opt.step()
        ref.step()
        _compare(mg_params, torch_params, dtype, f"Adam from torch state, step {step}")


def test_zero_grad_and_skipped_parameters():
    a, b = mg.Parameter(np.ones(2)), mg.Parameter(np.ones(2))
    opt = optim.SGD([a, b], lr=1.0)
    a.grad = mg.tensor(np.full(2, 0.5))
    opt.step()  # b has no gradient: left alone
    np.testing.assert_array_equal(a.data, [0.5, 0.5])
    np.testing.assert_array_equal(b.data, [1.0, 1.0])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.data, [0.0, 0.0])
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_step_records_no_graph_and_calls_the_closure():
    model = nn.Linear(3, 2)
    opt = optim.Adam(model.parameters(), lr=0.1)
    x = mg.randn(4, 3)

    def closure():
        opt.zero_grad()
        loss = (model(x) ** 2).mean()
        loss.backward()
        return loss
    loss = opt.step(closure)
    assert loss.requires_grad
    assert all(p.is_leaf and p.grad_fn is None for p in model.parameters())


def test_optimizer_errors():
    p = mg.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="group sizes"):
        opt.load_state_dict(optim.SGD([p, mg.Parameter(np.ones(1))], lr=0.1).state_dict())


# ---- clip_grad_norm_ ----------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, dtype):
    mg_params, torch_params = _params(dtype)
    _set_grads(mg_params, torch_params, 0, dtype)
    mg_params[1].grad = torch_params[1].grad = None  # parameters without a gradient are skipped
    total = nn.utils.clip_grad_norm_(mg_params, max_norm, norm_type=norm_type)
    ref = torch.nn.utils.clip_grad_norm_(torch_params, max_norm, norm_type=norm_type)
    assert total.dtype == np.dtype(dtype) and total.shape == ()
    assert_close(f"[{dtype}] total norm", total.data, ref.numpy(), **TOLERANCES[dtype])
    for i, (p, tp) in enumerate(zip(mg_params, torch_params)):
        if tp.grad is None:
            assert p.grad is None
        else:
            assert_close(f"[{dtype}] clipped grad {i}", p.grad.data, tp.grad.numpy(), **TOLERANCES[dtype])


def test_clip_grad_norm_single_tensor_and_nonfinite():
    p = mg.Parameter(np.ones(4))
    p.grad = mg.tensor(np.full(4, 2.0))
    assert nn.utils.clip_grad_norm_(p, 1.0).item() == pytest.approx(4.0)
    np.testing.assert_allclose(p.grad.data, np.full(4, 0.5), rtol=1e-6)
    p.grad = mg.tensor(np.array([1.0, np.inf, 0.0, 0.0]))
    with pytest.raises(RuntimeError, match="error_if_nonfinite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


# ---- learning-rate schedules --------------------------------------------------------------------

def _lrs(scheduler, optimizer, steps):
    """The lr of each group before each optimizer step, over `steps` steps."""
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return np.array(out)


def _two_group_optimizers():
    mg_params, torch_params = _params("float64")
    return (optim.SGD(_groups(mg_params, True), lr=0.1),
            torch.optim.SGD(_groups(torch_params, True), lr=0.1))


def test_lambda_lr_matches_torch():
    opt, ref = _two_group_optimizers()
    lambdas = [lambda s: 0.9 ** s, lambda s: 1 / (1 + s)]
    got = _lrs(lr_scheduler.LambdaLR(opt, lambdas), opt, 12)
    want = _lrs(torch.optim.lr_scheduler.LambdaLR(ref, lambdas), ref, 12)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def _torch_warmup_lrs(kind, base_lr, warmup, total, min_lr_ratio):
    """torch's composition: LinearLR warmup from (almost) 0, then CosineAnnealingLR or LinearLR decay."""
    T = torch.optim.lr_scheduler
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    ramp = T.LinearLR(opt, start_factor=1e-12, end_factor=1.0, total_iters=warmup)
    if kind == "cosine":
        decay = T.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=base_lr * min_lr_ratio)
    else:
        decay = T.LinearLR(opt, start_factor=1.0, end_factor=min_lr_ratio, total_iters=total - warmup)
    return _lrs(T.SequentialLR(opt, [ramp, decay], milestones=[warmup]), opt, total + 1)[:, 0]


@pytest.mark.filterwarnings("ignore::UserWarning")  # SequentialLR's internal step(epoch) deprecation notice
@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("min_lr_ratio", [0.0, 0.1])
def test_warmup_schedules_match_torch_compositions(kind, min_lr_ratio):
    warmup, total = 4, 15
    opt, _ = _two_group_optimizers()
    helper = {"cosine": lr_scheduler.get_cosine_schedule_with_warmup,
              "linear": lr_scheduler.get_linear_schedule_with_warmup}[kind]
    got = _lrs(helper(opt, warmup, total, min_lr_ratio=min_lr_ratio), opt, total + 1)
    want = np.stack([_torch_warmup_lrs(kind, base, warmup, total, min_lr_ratio) for base in (0.05, 0.1)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_schedule_state_dict_round_trip():
    opt, _ = _two_group_optimizers()
    sched = lr_scheduler.get_cosine_schedule_with_warmup(opt, 3, 10)
    _lrs(sched, opt, 5)
    saved = sched.state_dict()
    assert saved["last_epoch"] == 5 and "optimizer" not in saved
    opt2, _ = _two_group_optimizers()
    sched2 = lr_scheduler.get_cosine_schedule_with_warmup(opt2, 3, 10)
    sched2.load_state_dict(saved)
    sched.step()
    sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr()
    assert [g["lr"] for g in opt2.param_groups] == sched.get_last_lr()
