"""Training a language model: the loop, evaluation, perplexity, checkpoints, a progress bar, a history to plot.

One step of the loop (nanoGPT's recipe):

    x, y = get_batch(train, B, T, generator)             # (B, T) tokens and their next tokens
    logits, loss = model(x, y)                           # mean cross-entropy over the B*T positions
    loss.backward()
    clip_grad_norm_(params, grad_clip)                   # g <- g * min(1, c / ||g||)
    optimizer.step(); scheduler.step()                   # AdamW; linear warmup, then cosine decay to min_lr

AdamW decays only the weight matrices and embeddings (2-D parameters), never biases or LayerNorm gains.
Evaluation averages the loss over validation batches with gradients off and dropout off; the perplexity
exp(loss) is the number of equally likely tokens the model is, on average, choosing between.

Checkpoints are safetensors files (no pickle: loading one cannot run code): the model's state_dict, the
optimizer's moment buffers as tensors, and, as JSON in the header, the step counts, the hyperparameters,
the scheduler's state, the batch generator's state and anything else you pass. Resuming from one continues
exactly where the run stopped (same batches, same learning rates, same updates).
"""
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import minigrad
from minigrad import backend, nn, optim
from minigrad.backend import np
from minigrad.optim import lr_scheduler
from book.data.shakespeare import get_batch
from book.runner import under_runner

CHECKPOINT_FORMAT = "minigrad checkpoint v1"


@dataclass
class TrainConfig:
    """The defaults are nanoGPT's CPU recipe for character-level Shakespeare."""
    max_iters: int = 2000
    batch_size: int = 12
    block_size: int = 64
    learning_rate: float = 1e-3
    min_lr: float = 1e-4                # the cosine ends here, at max_iters
    warmup_iters: int = 100
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.99)
    grad_clip: float = 1.0              # 0 = no clipping
    eval_interval: int = 250            # evaluate at step 0, every eval_interval steps and at the end
    eval_iters: int = 20                # batches per evaluation (the same batches every time)
    seed: int = 1337                    # the training batches' generator
    checkpoint_path: str = None         # save here every checkpoint_interval steps and at the end
    checkpoint_interval: int = 0
    progress: bool = True               # a progress bar on stderr (never under the book runner)


@dataclass
class History:
    """What happened during training, for plots: per step and per evaluation."""
    step: list = field(default_factory=list)            # 1, 2, ... (after that many updates)
    train_loss: list = field(default_factory=list)      # the batch loss of each step
    lr: list = field(default_factory=list)              # the learning rate each step used
    grad_norm: list = field(default_factory=list)       # before clipping
    eval_step: list = field(default_factory=list)
    eval_train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    train_seconds: float = 0.0                          # the steps alone, without evaluations
    total_seconds: float = 0.0

    @property
    def val_perplexity(self):
        return [math.exp(v) for v in self.val_loss]


def configure_optimizer(model, learning_rate, weight_decay, betas):
    """AdamW with two groups: weight decay on parameters with >= 2 dims, none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return optim.AdamW([g for g in groups if g["params"]], lr=learning_rate, betas=tuple(betas))


def make_scheduler(optimizer, config):
    """Linear warmup over warmup_iters, then cosine decay to min_lr at max_iters."""
    return lr_scheduler.get_cosine_schedule_with_warmup(optimizer, config.warmup_iters, config.max_iters,
                                                        min_lr_ratio=config.min_lr / config.learning_rate)


def train_step(model, optimizer, x, y, grad_clip=0.0):
    """One update on the batch (x, y): forward, backward, clip, optimizer step. Returns (loss, grad norm)."""
    model.train()
    _, loss = model(minigrad.tensor(x), minigrad.tensor(y))
    optimizer.zero_grad()
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    optimizer.step()
    return loss.item(), norm.item()


def evaluate(model, data, batch_size, block_size, eval_iters=None, seed=0):
    """The mean loss on `data` with gradients and dropout off.

    eval_iters=None: the whole array, cut into consecutive windows of block_size (every token predicted
    once); otherwise eval_iters random batches drawn from a generator seeded with `seed` (the same
    batches at every call, so successive evaluations are comparable).
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with minigrad.no_grad():
        if eval_iters is None:
            n = (len(data) - 1) // block_size
            tokens = np.asarray(data[:n * block_size + 1], dtype=np.int64)
            x_all = tokens[:-1].reshape(n, block_size)                                 # (n, T)
            y_all = tokens[1:].reshape(n, block_size)                                  # (n, T)
            batches = ((x_all[i:i + batch_size], y_all[i:i + batch_size]) for i in range(0, n, batch_size))
        else:
            generator = np.random.default_rng(seed)
            batches = (get_batch(data, batch_size, block_size, generator) for _ in range(eval_iters))
        for x, y in batches:
            _, loss = model(minigrad.tensor(x), minigrad.tensor(y))
            total += loss.item() * x.size
            count += x.size
    model.train(was_training)
    return total / count


def perplexity(loss):
    """exp(mean cross-entropy in nats)."""
    return math.exp(loss)


# ---- checkpoints ------------------------------------------------------------------------------

def save_checkpoint(path, model, optimizer=None, scheduler=None, step=0, **extra):
    """Write a safetensors checkpoint (see the module docstring). `extra` must be JSON-serializable."""
    from safetensors.numpy import save_file

    tensors = {f"model.{name}": np.ascontiguousarray(backend.to_numpy(t.data))
               for name, t in model.state_dict().items()}
    meta = {"format": CHECKPOINT_FORMAT, "step": step, "extra": extra}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {"param_groups": state["param_groups"], "scalars": {}}
        for index, buffers in state["state"].items():
            for key, value in buffers.items():
                if isinstance(value, minigrad.Tensor):
                    tensors[f"optimizer.{index}.{key}"] = np.ascontiguousarray(backend.to_numpy(value.data))
                else:
                    meta["optimizer"]["scalars"][f"{index}.{key}"] = value
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    save_file(tensors, str(path), metadata={"minigrad": json.dumps(meta)})


def load_checkpoint(path, model, optimizer=None, scheduler=None):
    """Load a checkpoint into the model (and optimizer and scheduler, when given); returns
    {"step": ..., **extra}."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        header = (f.metadata() or {}).get("minigrad")
        if header is None or json.loads(header).get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"load_checkpoint: {path} is not a {CHECKPOINT_FORMAT!r} file")
        meta = json.loads(header)
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    prefix = "model."
    model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    if optimizer is not None:
        if "optimizer" not in meta:
            raise ValueError(f"load_checkpoint: {path} holds no optimizer state")
        state = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        for key, value in meta["optimizer"]["scalars"].items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    if scheduler is not None:
        if "scheduler" not in meta:
            raise ValueError(f"load_checkpoint: {path} holds no scheduler state")
        scheduler.load_state_dict(meta["scheduler"])
    return {"step": meta["step"], **meta["extra"]}


# ---- the loop ---------------------------------------------------------------------------------

class _Progress:
    """tqdm's bar on stderr, or nothing when disabled or under the book runner (a rendered page would keep the
    bar's last state as an error box). Refreshed every 2 s in a terminal; every 10 s elsewhere (a log, a notebook)."""

    def __init__(self, total, initial, enabled):
        self.bar = None
        if enabled and not under_runner():
            from tqdm.std import tqdm
            interval = 2.0 if sys.stderr.isatty() else 10.0
            self.bar = tqdm(total=total, initial=initial, mininterval=interval, desc="train", unit="step")

    def update(self, **postfix):
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def train(model, data, config=None, resume=None):
    """Train `model` (a GPT: model(x, y) -> (logits, loss)) on data["train"], evaluating on data["val"].

    Returns the History. resume: a checkpoint written by an earlier call with the same config; training
    continues from its step with its optimizer, schedule and batch generator, as if never interrupted.
    """
    config = config or TrainConfig()
    optimizer = configure_optimizer(model, config.learning_rate, config.weight_decay, config.betas)
    scheduler = make_scheduler(optimizer, config)
    generator = np.random.default_rng(config.seed)
    history, start = History(), 0
    if resume is not None:
        saved = load_checkpoint(resume, model, optimizer, scheduler)
        start = saved["step"]
        generator.bit_generator.state = saved["generator_state"]
        history = History(**saved["history"])

    def checkpoint(step):
        save_checkpoint(config.checkpoint_path, model, optimizer, scheduler, step=step, config=asdict(config),
                        generator_state=generator.bit_generator.state, history=asdict(history))

    def evaluate_now(step):
        history.eval_step.append(step)
        history.eval_train_loss.append(evaluate(model, data["train"], config.batch_size, config.block_size,
                                                config.eval_iters, seed=config.seed + 1))
        history.val_loss.append(evaluate(model, data["val"], config.batch_size, config.block_size,
                                         config.eval_iters, seed=config.seed + 2))

    began = time.perf_counter()
    progress = _Progress(config.max_iters, start, config.progress)
    try:
        if start == 0 and config.eval_interval:
            evaluate_now(0)
        for step in range(start + 1, config.max_iters + 1):
            tick = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            x, y = get_batch(data["train"], config.batch_size, config.block_size, generator)
            loss, norm = train_step(model, optimizer, x, y, config.grad_clip)
            scheduler.step()
            history.train_seconds += time.perf_counter() - tick
            history.step.append(step)
            history.train_loss.append(loss)
            history.lr.append(lr)
            history.grad_norm.append(norm)
            if config.eval_interval and (step % config.eval_interval == 0 or step == config.max_iters):
                evaluate_now(step)
            shown = {"loss": f"{loss:.3f}"}
            if history.val_loss:
                shown["val"] = f"{history.val_loss[-1]:.3f}"
            progress.update(**shown)
            if config.checkpoint_path and ((config.checkpoint_interval and step % config.checkpoint_interval == 0)
                                           or step == config.max_iters):
                checkpoint(step)
    finally:
        progress.close()
    history.total_seconds += time.perf_counter() - began
    return history
