"""Chapter 03's comparison of minigrad with PyTorch on the same training run, and small measurements of
generated text.

    torch_seconds, torch_losses = torch_training_run(config, cfg, initial_state, data["train"], steps=300)
    minigrad_seconds = minigrad_training_run(config, cfg, initial_state, data["train"], steps=20)

Both start from the same initial weights (a state dict of NumPy arrays), draw the same batches (a generator
seeded with cfg.seed), use AdamW with decay on the matrices only, the same warmup-cosine schedule and clipping
at cfg.grad_clip; each returns the mean wall-clock seconds per step, evaluations excluded.
"""
import time

import torch

import minigrad as mg
from minigrad.backend import np
from minigrad.optim import lr_scheduler
from book.data import shakespeare as sh
from book.models.gpt import GPT
from book.torch_reference import GPT as TorchGPT
from book.training import configure_optimizer, make_scheduler, train_step


def torch_training_run(config, cfg, initial_state, train_tokens, steps, threads=1):
    """The PyTorch twin trained `steps` steps as book.training.train would; returns (seconds per step, losses)."""
    torch.set_num_threads(threads)
    twin = TorchGPT(config)
    twin.load_state_dict({name: torch.from_numpy(array) for name, array in initial_state.items()})
    params = list(twin.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=cfg.learning_rate, betas=cfg.betas)
    lr_factor = lr_scheduler.get_cosine_schedule_with_warmup(  # the same formula, read off a throwaway optimizer
        mg.optim.SGD([mg.zeros(1, requires_grad=True)], lr=1.0), cfg.warmup_iters, cfg.max_iters,
        cfg.min_lr / cfg.learning_rate).lr_lambdas[0]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    generator = np.random.default_rng(cfg.seed)
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        xb, yb = sh.get_batch(train_tokens, cfg.batch_size, cfg.block_size, generator)
        _, loss = twin(torch.from_numpy(xb), torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return (time.perf_counter() - start) / steps, losses


def minigrad_training_run(config, cfg, initial_state, train_tokens, steps):
    """The body of book.training.train's loop, from the initial weights; returns seconds per step."""
    fresh = GPT(config)
    fresh.load_state_dict(initial_state)
    opt = configure_optimizer(fresh, cfg.learning_rate, cfg.weight_decay, cfg.betas)
    sched = make_scheduler(opt, cfg)
    generator = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    for _ in range(steps):
        xb, yb = sh.get_batch(train_tokens, cfg.batch_size, cfg.block_size, generator)
        train_step(fresh, opt, xb, yb, cfg.grad_clip)
        sched.step()
    return (time.perf_counter() - start) / steps


def words_of(text):
    """Lower-cased words without the punctuation around them."""
    return [w.strip(".,;:!?'-[]").lower() for w in text.split()]


def known_word_share(text, known_words):
    """The share of the text's words (the last one excluded: it may be cut off) found in `known_words`."""
    words = words_of(text)[:-1]
    return float(np.mean([w in known_words for w in words])) if words else 0.0


def repeated_share(text, width=10):
    """The share of the text's windows of `width` characters that already occurred earlier in it: near 0 for
    varied text, near 1 for a loop."""
    windows = [text[i:i + width] for i in range(len(text) - width + 1)]
    seen, repeats = set(), 0
    for w in windows:
        repeats += w in seen
        seen.add(w)
    return repeats / max(1, len(windows))
