"""Chapter 12's TERA experiment: pretrain on synthetic phone spectrograms with a choice of alterations, then probe
the frozen encoder's frame representations for the phone labels with a linear classifier.

    inventory = make_inventory(12, 24, np.random.default_rng(0))
    model = TeraEncoder(24, ...)
    losses = pretrain_tera(model, inventory, steps, data_rng, alteration_rng, alterations=("time",))
    acc = frame_probe_accuracy(model, probe_set)

The method (alterations, loss, encoder) is book/pretraining/tera.py; the data book/data/phone_spectrograms.py;
the probe is chapter 04's logistic regression (book/experiments/pretraining_objectives.py).
"""
from dataclasses import dataclass

import minigrad
from minigrad.backend import np
from book.data.phone_spectrograms import generate_utterances
from book.experiments.pretraining_objectives import probe_accuracy
from book.pretraining.tera import TeraEncoder, draw_tera

ALTERATIONS = ("time", "frequency", "magnitude")


@dataclass
class ProbeSet:
    """Utterances for the frozen probe: train and test spectrograms (N, T, D) with frame labels (N, T)."""
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def make_probe_set(inventory, train_utterances, test_utterances, length, rng):
    train_x, train_y = generate_utterances(inventory, train_utterances, length, rng)
    test_x, test_y = generate_utterances(inventory, test_utterances, length, rng)
    return ProbeSet(train_x, train_y, test_x, test_y)


def pretrain_tera(model, inventory, steps, data_rng, alteration_rng, alterations=ALTERATIONS, batch_size=32,
                  length=64, learning_rate=2e-3):
    """AdamW on L_TERA with fresh utterances and fresh draws every step; returns the losses (steps,). The utterances
    come from data_rng and the alterations from alteration_rng, so two arms with the same data_rng seed see the same
    utterances in the same order whatever their alterations."""
    unknown = set(alterations) - set(ALTERATIONS)
    if unknown:
        raise ValueError(f"pretrain_tera: unknown alterations {sorted(unknown)}; expected some of {ALTERATIONS}")
    optimizer = minigrad.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    switches = {name: name in alterations for name in ALTERATIONS}
    losses = np.empty(steps)
    for step in range(steps):
        x, _ = generate_utterances(inventory, batch_size, length, data_rng)
        draws = draw_tera([length] * batch_size, x.shape, alteration_rng, **switches)
        loss = model.tera_loss(x, draws)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses[step] = loss.item()
    return losses


def frame_features(model, x, batch_size=64):
    """The frozen encoder's hidden state of every frame of clean utterances x (N, T, D): (N * T, d)."""
    with minigrad.no_grad():
        hidden = [model(x[s:s + batch_size]).data for s in range(0, len(x), batch_size)]
    return np.concatenate(hidden).reshape(-1, hidden[0].shape[-1])


def frame_probe_accuracy(model, probe: ProbeSet):
    """Phone accuracy of a linear (logistic-regression) probe on frozen frame features; model None = raw frames."""
    if model is None:
        features = [x.reshape(-1, x.shape[-1]) for x in (probe.train_x, probe.test_x)]
    else:
        features = [frame_features(model, x) for x in (probe.train_x, probe.test_x)]
    return probe_accuracy(features[0], probe.train_y.reshape(-1), features[1], probe.test_y.reshape(-1))


@dataclass
class TeraSetup:
    """Model and training sizes shared by every arm."""
    d_model: int = 32
    nhead: int = 2
    num_layers: int = 3
    dim_feedforward: int = 64
    steps: int = 600
    batch_size: int = 32
    length: int = 64
    learning_rate: float = 2e-3


def make_tera_encoder(inventory, setup, seed):
    """A fresh TeraEncoder, initialised from minigrad's seed `seed`."""
    minigrad.manual_seed(seed)
    return TeraEncoder(inventory.num_bins, setup.d_model, setup.nhead, setup.num_layers, setup.dim_feedforward)


def pretrain_and_probe(inventory, probe, setup, alterations, seed):
    """One arm and seed: pretrain with the given alterations (utterances from seed, alterations from seed + 1000),
    then the frozen linear probe. Returns dict(model, losses, accuracy)."""
    model = make_tera_encoder(inventory, setup, seed)
    losses = pretrain_tera(model, inventory, setup.steps, np.random.default_rng(seed),
                           np.random.default_rng(seed + 1000), alterations, setup.batch_size, setup.length,
                           setup.learning_rate)
    return {"model": model, "losses": losses, "accuracy": frame_probe_accuracy(model, probe)}
