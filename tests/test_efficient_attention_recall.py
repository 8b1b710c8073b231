"""The recall experiments' models and loops (book.efficient_attention.recall), at toy sizes: shapes, state
accounting, determinism per seed, and the chapter's method list fitting one palette."""
import numpy as np

from book.efficient_attention import DiffQKVAttention, RoutingAttention, SlidingWindowAttention
from book.efficient_attention.recall import (CHAPTER_METHODS, EluLinearAttention, MQARModel, MQARSetup, RecallSetup,
                                             train_mqar, train_recall)
from book.plotting import Palette


def test_chapter_methods_fit_one_palette():
    palette = Palette(CHAPTER_METHODS)
    assert len({palette.color(name) for name in CHAPTER_METHODS}) == len(CHAPTER_METHODS)


def test_mqar_state_sizes():
    E, H, T = 16, 2, 12
    conv = 2 * E                                                                  # kernel 3: two inputs per layer
    attention = MQARModel(32, E, lambda: DiffQKVAttention(E, H, H, H), T)
    assert attention.state_size(T) == 2 * (conv + 2 * (T - 1) * E)               # KV cache after T - 1 tokens
    window = MQARModel(32, E, lambda: SlidingWindowAttention(E, H, window=4), T)
    assert window.state_size(T) == 2 * (conv + 2 * 3 * E)
    elu = MQARModel(32, E, lambda: EluLinearAttention(E, H, 4), T, conv_kernel=None)
    assert elu.state_size(T) == 2 * H * 4 * (E // H + 1)


def test_train_mqar_is_deterministic_per_seed():
    setup = MQARSetup(vocab=16, seq_len=12, num_kv=2, embed=16, steps=3, batch=2, eval_n=4)
    make = lambda: DiffQKVAttention(16, 2, 2, 2)                                   # noqa: E731
    a, b = train_mqar(setup, make, seed=1), train_mqar(setup, make, seed=1)
    assert a["accuracy"] == b["accuracy"] and (a["curve"] == b["curve"]).all() and len(a["curve"]) == 3
    assert 0 <= a["in_context"] <= 1


def test_train_recall_routing_runs():
    setup = RecallSetup(seq_len=32, num_pairs=2, min_gap=8, num_keys=4, num_values=4, num_fillers=4, embed=16,
                        steps=2, eval_every=1, eval_n=4, batch=2)
    model, curve, seconds = train_recall(setup, lambda: RoutingAttention(16, 2, num_clusters=4, shared_qk=False), 0)
    assert sorted(curve) == [1, 2] and all(0 <= acc <= 1 for acc in curve.values()) and seconds > 0
    assert model(setup.batch_of(np.random.default_rng(0), 3).inputs).shape == (3, 32, setup.vocab)
