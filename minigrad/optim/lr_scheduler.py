"""Learning-rate schedules (torch.optim.lr_scheduler semantics).

A scheduler sets each group's lr from its base lr and a step counter `last_epoch`; creating it
applies step 0, and `scheduler.step()` after each `optimizer.step()` advances it. The two helpers
below return a LambdaLR with the schedules language models train with (named as in Hugging Face):
linear warmup from 0 for `num_warmup_steps`, then a cosine or linear decay to
`min_lr_ratio * base_lr` at `num_training_steps`, held there afterwards.
"""
import math


class LRScheduler:
    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"{type(self).__name__}: param group {i} has no 'initial_lr'; resuming with "
                               f"last_epoch={last_epoch} needs a scheduler that has run before")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self):
        raise NotImplementedError(f"{type(self).__name__} does not define get_lr()")

    def step(self):
        self.last_epoch += 1
        self._last_lr = list(self.get_lr())
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer (and, for LambdaLR, the functions, which are code, not state)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(step); one function, or one per parameter group."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"LambdaLR: expected {n} lr_lambdas (one per param group), got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]


def _check_steps(num_warmup_steps, num_training_steps):
    if not 0 <= num_warmup_steps <= num_training_steps:
        raise ValueError(f"need 0 <= num_warmup_steps <= num_training_steps, got {num_warmup_steps} and "
                         f"{num_training_steps}")


def _decay_progress(step, num_warmup_steps, num_training_steps):
    """0 at the end of warmup, 1 at num_training_steps and after."""
    return min(1.0, (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps))


def get_cosine_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps, min_lr_ratio=0.0, last_epoch=-1):
    """factor(s) = s / warmup during warmup, then r + (1 - r) (1 + cos(pi * progress)) / 2 (r = min_lr_ratio)."""
    _check_steps(num_warmup_steps, num_training_steps)

    def lr_lambda(step):
        if step < num_warmup_steps:
            return step / num_warmup_steps
        progress = _decay_progress(step, num_warmup_steps, num_training_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return LambdaLR(optimizer, lr_lambda, last_epoch)


def get_linear_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps, min_lr_ratio=0.0, last_epoch=-1):
    """factor(s) = s / warmup during warmup, then a straight line from 1 to min_lr_ratio."""
    _check_steps(num_warmup_steps, num_training_steps)

    def lr_lambda(step):
        if step < num_warmup_steps:
            return step / num_warmup_steps
        return 1 - (1 - min_lr_ratio) * _decay_progress(step, num_warmup_steps, num_training_steps)
    return LambdaLR(optimizer, lr_lambda, last_epoch)
