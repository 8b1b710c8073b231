"""Optimizers and learning-rate schedules with torch.optim's names and update rules."""
from minigrad.optim import lr_scheduler  # noqa: F401
from minigrad.optim.adam import Adam, AdamW
from minigrad.optim.optimizer import Optimizer
from minigrad.optim.sgd import SGD

__all__ = ["Adam", "AdamW", "Optimizer", "SGD", "lr_scheduler"]
