"""book.training against a PyTorch loop: the same weights and batches give the same losses, gradient norms,
learning rates and parameters after several AdamW + warmup-cosine + clipping steps; evaluation equals the torch
twin's loss; checkpoints round-trip and resuming from one is the same as never stopping."""
import math

import pytest
import torch
from safetensors.numpy import load_file

import minigrad as mg
from minigrad.backend import np
from book.data.shakespeare import get_batch
from book.models.gpt import GPT, GPTConfig
from book.testing import assert_close
from book.torch_reference import GPT as TorchGPT
from book.torch_reference import torch_state_dict
from book.training import (TrainConfig, configure_optimizer, evaluate, load_checkpoint, make_scheduler,
                               perplexity, save_checkpoint, train)

MODEL = GPTConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16)
TIGHT = dict(rtol=1e-9, atol=1e-12)


def tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    # a learnable sequence (a noisy ramp), so that the loss moves
    train = (np.cumsum(rng.integers(1, 3, 3000)) % MODEL.vocab_size).astype(np.uint16)
    val = (np.cumsum(rng.integers(1, 3, 800)) % MODEL.vocab_size).astype(np.uint16)
    return {"train": train, "val": val}


def float64_model(seed=0):
    mg.manual_seed(seed)
    model = GPT(MODEL).double()
    rng = np.random.default_rng(seed + 100)
    for _, p in model.named_parameters():           # non-trivial biases and LayerNorms
        if p.ndim == 1:
            p.data[...] += 0.1 * rng.standard_normal(p.shape)
    return model


def config(**overrides):
    base = dict(max_iters=8, batch_size=3, block_size=MODEL.block_size, learning_rate=3e-2, min_lr=3e-3,
                warmup_iters=3, weight_decay=0.1, betas=(0.9, 0.95), grad_clip=0.5, eval_interval=0, seed=5,
                progress=False)
    return TrainConfig(**{**base, **overrides})


def torch_run(model, data, cfg):
    """nanoGPT's loop, written with torch: SequentialLR(LinearLR warmup, CosineAnnealingLR) is the schedule."""
    twin = TorchGPT(MODEL).double()
    twin.load_state_dict(torch_state_dict(model))
    params = list(twin.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=cfg.learning_rate, betas=cfg.betas)
    S = torch.optim.lr_scheduler
    warmup = S.LinearLR(opt, start_factor=1e-12, end_factor=1.0, total_iters=cfg.warmup_iters)
    cosine = S.CosineAnnealingLR(opt, T_max=cfg.max_iters - cfg.warmup_iters, eta_min=cfg.min_lr)
    sched = S.SequentialLR(opt, [warmup, cosine], milestones=[cfg.warmup_iters])
    generator = np.random.default_rng(cfg.seed)
    losses, norms, lrs = [], [], []
    for _ in range(cfg.max_iters):
        x, y = get_batch(data["train"], cfg.batch_size, cfg.block_size, generator)
        lrs.append(opt.param_groups[0]["lr"])
        _, loss = twin(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip).item())
        opt.step()
        sched.step()
        losses.append(loss.item())
    return twin, losses, norms, lrs


@pytest.mark.filterwarnings("ignore::UserWarning")  # SequentialLR's internal step(epoch) deprecation notice
def test_training_steps_match_torch():
    data, cfg = tiny_data(), config()
    model = float64_model()
    twin, losses, norms, lrs = torch_run(model, data, cfg)
    history = train(model, data, cfg)
    assert history.step == list(range(1, cfg.max_iters + 1))
    assert_close("learning rates", history.lr, lrs, rtol=1e-9, atol=1e-11)   # torch's warmup starts at 1e-12 lr
    assert_close("losses", history.train_loss, losses, **TIGHT)
    assert_close("gradient norms", history.grad_norm, norms, **TIGHT)
    assert max(norms) > cfg.grad_clip, "clipping never happened: the test would not check it"
    assert history.train_loss[-1] < history.train_loss[0]
    theirs = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert_close(f"{name} after {cfg.max_iters} steps", p.data, theirs[name].detach().numpy(), rtol=1e-8,
                     atol=1e-10)


def test_optimizer_groups_decay_only_matrices():
    opt = configure_optimizer(float64_model(), 1e-3, 0.1, (0.9, 0.99))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.ndim == 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.ndim == 1 for p in plain["params"])
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)


@pytest.mark.parametrize("eval_iters", [None, 4])
def test_evaluate_matches_torch(eval_iters):
    data = tiny_data()
    model = float64_model()
    twin = TorchGPT(MODEL).double()
    twin.load_state_dict(torch_state_dict(model))
    T, B = MODEL.block_size, 5
    if eval_iters is None:                       # consecutive windows over the whole array
        n = (len(data["val"]) - 1) // T
        tokens = data["val"][:n * T + 1].astype(np.int64)
        x, y = tokens[:-1].reshape(n, T), tokens[1:].reshape(n, T)
    else:                                        # the same random batches at every call
        g = np.random.default_rng(9)
        batches = [get_batch(data["val"], B, T, g) for _ in range(eval_iters)]
        x, y = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x))[0].reshape(-1, MODEL.vocab_size),
                                                 torch.from_numpy(y).reshape(-1)).item()
    got = evaluate(model, data["val"], B, T, eval_iters, seed=9)
    assert_close("validation loss", got, want, **TIGHT)
    assert model.training and got == evaluate(model, data["val"], B, T, eval_iters, seed=9)
    assert perplexity(got) == math.exp(got)


def test_history_records_evaluations():
    cfg = config(max_iters=7, eval_interval=3, eval_iters=2)
    history = train(float64_model(), tiny_data(), cfg)
    assert history.eval_step == [0, 3, 6, 7]
    assert len(history.val_loss) == len(history.eval_train_loss) == 4
    assert history.val_perplexity == [math.exp(v) for v in history.val_loss]
    assert 0 < history.train_seconds <= history.total_seconds


def test_checkpoint_round_trip(tmp_path):
    data, cfg = tiny_data(), config(max_iters=4)
    model = float64_model()
    optimizer = configure_optimizer(model, cfg.learning_rate, cfg.weight_decay, cfg.betas)
    scheduler = make_scheduler(optimizer, cfg)
    g = np.random.default_rng(0)
    for _ in range(3):
        x, y = get_batch(data["train"], 2, MODEL.block_size, g)
        _, loss = model(mg.tensor(x), mg.tensor(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, model, optimizer, scheduler, step=3, note="hello")
    tensors = load_file(str(path))                         # a plain safetensors file: no pickle anywhere
    assert "model.lm_head.weight" in tensors and "optimizer.0.exp_avg" in tensors

    other = float64_model(seed=1)
    opt2 = configure_optimizer(other, cfg.learning_rate, cfg.weight_decay, cfg.betas)
    sched2 = make_scheduler(opt2, cfg)
    saved = load_checkpoint(path, other, opt2, sched2)
    assert saved == {"step": 3, "note": "hello"}
    for (name, p), (_, q) in zip(model.named_parameters(), other.named_parameters()):
        assert np.array_equal(p.data, q.data), name
        s, s2 = optimizer.state[p], opt2.state[q]
        assert s["step"] == s2["step"] == 3
        assert np.array_equal(s["exp_avg"].data, s2["exp_avg"].data)
        assert np.array_equal(s["exp_avg_sq"].data, s2["exp_avg_sq"].data)
    assert sched2.last_epoch == 3 and [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in optimizer.param_groups]
    assert tuple(opt2.param_groups[0]["betas"]) == cfg.betas


def test_resuming_equals_never_stopping(tmp_path, monkeypatch):
    data = tiny_data()
    straight = float64_model()
    full = train(straight, data, config(max_iters=10, eval_interval=4, eval_iters=2))

    path = tmp_path / "run.safetensors"
    cfg = config(max_iters=10, eval_interval=4, eval_iters=2, checkpoint_path=str(path), checkpoint_interval=6)
    _stop_after(float64_model(), data, cfg, 6, monkeypatch)          # a run interrupted after its step-6 checkpoint
    resumed_model = float64_model(seed=7)                    # other weights: all of them must come from the file
    resumed = train(resumed_model, data, cfg, resume=path)
    assert resumed.step == full.step and resumed.train_loss == full.train_loss
    assert resumed.eval_step == full.eval_step and resumed.val_loss == full.val_loss
    for (name, p), (_, q) in zip(straight.named_parameters(), resumed_model.named_parameters()):
        assert np.array_equal(p.data, q.data), name


def _stop_after(model, data, cfg, stop, monkeypatch):
    """Run `train` but interrupt it right after it writes the checkpoint of step `stop`."""
    import book.training as training

    class Interrupt(Exception):
        pass

    def save_then_stop(*args, **kwargs):
        save_checkpoint(*args, **kwargs)
        if kwargs["step"] == stop:
            raise Interrupt
    with monkeypatch.context() as patch:
        patch.setattr(training, "save_checkpoint", save_then_stop)
        with pytest.raises(Interrupt):
            train(model, data, cfg)


def test_load_checkpoint_rejects_other_files(tmp_path):
    from safetensors.numpy import save_file
    path = tmp_path / "other.safetensors"
    save_file({"x": np.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="is not a 'minigrad checkpoint v1' file"):
        load_checkpoint(path, float64_model())


def test_progress_bar(capsys):
    train(float64_model(), tiny_data(), config(max_iters=3, progress=True))
    assert "train" in capsys.readouterr().err
