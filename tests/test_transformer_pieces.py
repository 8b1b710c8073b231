"""book.experiments.transformer_pieces: the synthetic tasks of chapter 02 label what they claim, and the
experiment drivers return one row per seed, NaN where a scheme has no position vector."""
from minigrad.backend import np
from book.experiments.transformer_pieces import (BACK, BOS, EOS, IGNORE, PAD, extrapolation, k_back_batch,
                                                 mod_sum_batch, norm_placement, reversal_batch)


def test_k_back_and_mod_sum_labels():
    x, y = k_back_batch(np.random.default_rng(0), 4, 20)
    assert (y[:, :BACK] == IGNORE).all() and np.array_equal(y[:, BACK:], x[:, :-BACK])
    x, y = mod_sum_batch(np.random.default_rng(0), 4, 20)
    assert np.array_equal(y[:, BACK:], (x[:, :-BACK] + x[:, BACK:]) % 16)


def test_reversal_batch():
    src, tgt_in, tgt = reversal_batch(np.random.default_rng(0), 16)
    for s, ti, t in zip(src, tgt_in, tgt):
        n = int((s != PAD).sum())
        assert np.array_equal(t[:n], s[:n][::-1]) and t[n] == EOS and (t[n + 1:] == PAD).all()
        assert ti[0] == BOS and np.array_equal(ti[1:], t[:-1])


def test_extrapolation_shapes_and_undefined_lengths():
    acc, per_position = extrapolation(["learned", "alibi"], [0, 1], steps=2, train_len=16, eval_lens=[16, 32],
                                      eval_tokens=64)
    assert acc["learned"].shape == (2, 2) and np.isnan(acc["learned"][:, 1]).all()
    assert not np.isnan(acc["alibi"]).any() and per_position["alibi"].shape == (2, 32 - BACK)
    assert per_position["learned"].shape == (2, 16 - BACK)


def test_seeds_differ_and_repeat():
    first = norm_placement([2], [0, 1], steps=3, lr=1e-3, length=8)
    again = norm_placement([2], [0, 1], steps=3, lr=1e-3, length=8)
    assert np.array_equal(first[2, True], again[2, True])                  # deterministic
    assert not np.array_equal(first[2, True][0], first[2, True][1])        # the seeds differ
