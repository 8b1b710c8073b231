"""MQAR batches: the structure of every sequence, checked position by position with plain loops."""
import numpy as np
import pytest

from book.data.mqar import IGNORE, mqar_batch


@pytest.mark.parametrize("seq_len,num_kv,vocab", [(32, 4, 64), (64, 8, 128), (20, 5, 16)])
def test_every_query_asks_a_context_key_and_targets_its_value(seq_len, num_kv, vocab):
    batch = mqar_batch(np.random.default_rng(3), 50, seq_len, num_kv, vocab)
    assert batch.inputs.shape == batch.targets.shape == (50, seq_len)
    for seq, tgt in zip(batch.inputs, batch.targets):
        context = {int(seq[2 * i]): int(seq[2 * i + 1]) for i in range(num_kv)}
        assert len(context) == num_kv                                   # distinct keys
        assert len(set(context.values())) == num_kv                     # distinct values
        assert all(1 <= k < vocab // 2 <= v < vocab for k, v in context.items())
        asked = []
        for t in range(2 * num_kv, seq_len):
            token = int(seq[t])
            if tgt[t] == IGNORE:
                assert token == 0                                       # blanks between queries
            else:
                assert (t - 2 * num_kv) % 2 == 0
                assert context[token] == tgt[t]                         # the answer is the paired value
                asked.append(token)
        assert sorted(asked) == sorted(context)                         # every key asked exactly once
        assert (tgt[:2 * num_kv] == IGNORE).all()


def test_reproducible_from_the_generator_and_different_across_seeds():
    a, b = (mqar_batch(np.random.default_rng(7), 8, 32, 4, 64) for _ in range(2))
    c = mqar_batch(np.random.default_rng(8), 8, 32, 4, 64)
    assert (a.inputs == b.inputs).all() and (a.targets == b.targets).all()
    assert not (a.inputs == c.inputs).all()


def test_queries_favour_short_gaps():
    """Power law with a = 0.01: the first free query slot is used far more often than the last one."""
    batch = mqar_batch(np.random.default_rng(0), 2000, 64, 4, 64)
    asked = batch.targets[:, 8:] != IGNORE                               # (N, 56) after the context
    assert asked[:, 0].mean() > 2 * asked[:, 54].mean()


@pytest.mark.parametrize("seq_len,num_kv,vocab", [(10, 4, 64), (32, 4, 8)])
def test_rejects_sizes_that_cannot_hold_the_pairs(seq_len, num_kv, vocab):
    with pytest.raises(ValueError, match="mqar_batch"):
        mqar_batch(np.random.default_rng(0), 1, seq_len, num_kv, vocab)
