"""Gapped recall batches: every sequence re-read token by token with plain loops, against the stated structure."""
import numpy as np
import pytest

from book.data.gapped_recall import IGNORE, gapped_recall_batch, vocab_size

SIZES = [  # (seq_len, num_pairs, min_gap, num_keys, num_values, num_fillers)
    (64, 4, 40, 8, 8, 8),
    (40, 3, 0, 3, 5, 2),
    (27, 5, 12, 6, 5, 4),          # seq_len = 3 P + min_gap: the pairs fill the first part exactly
]


@pytest.mark.parametrize("seq_len, num_pairs, min_gap, num_keys, num_values, num_fillers", SIZES)
def test_each_query_targets_the_value_bound_to_its_key_after_the_gap(seq_len, num_pairs, min_gap, num_keys,
                                                                      num_values, num_fillers):
    batch = gapped_recall_batch(np.random.default_rng(1), 200, seq_len, num_pairs, min_gap, num_keys, num_values,
                                num_fillers)
    assert batch.inputs.shape == batch.targets.shape == (200, seq_len) and batch.inputs.dtype == np.int64
    V = vocab_size(num_keys, num_values, num_fillers)
    for seq, tgt in zip(batch.inputs, batch.targets):
        is_key = seq < num_keys
        is_value = (num_keys <= seq) & (seq < num_keys + num_values)
        assert ((seq >= 0) & (seq < V)).all()
        first_seen, bound = {}, {}
        for t, token in enumerate(seq):
            token = int(token)
            if is_key[t] and token not in first_seen:          # a pair: the key, then its value right after
                first_seen[token] = t
                assert is_value[t + 1]
                bound[token] = int(seq[t + 1])
        assert len(bound) == num_pairs and len(set(bound.values())) == num_pairs
        queries = [t for t in range(seq_len) if tgt[t] != IGNORE]
        assert queries == list(range(seq_len - num_pairs, seq_len))          # the last P tokens are the queries
        assert sorted(int(seq[t]) for t in queries) == sorted(bound)          # every key asked once
        for t in queries:
            key = int(seq[t])
            assert tgt[t] == bound[key]                                       # the answer is the bound value
            assert t - (first_seen[key] + 1) - 1 >= min_gap                   # tokens between value and query
        last_value = max(first_seen.values()) + 1
        assert (seq[last_value + 1:seq_len - num_pairs] >= num_keys + num_values).all()   # only fillers between
        assert seq_len - num_pairs - last_value - 1 >= min_gap
        assert is_key.sum() == 2 * num_pairs and is_value.sum() == num_pairs  # nothing else is a key or a value


def test_returned_positions_and_pairs_describe_the_sequences():
    batch = gapped_recall_batch(np.random.default_rng(2), 30, 50, 4, 10)
    rows = np.arange(30)[:, None]
    assert (batch.inputs[rows, batch.key_positions] == batch.keys).all()
    assert (batch.inputs[rows, batch.key_positions + 1] == batch.values).all()
    assert (batch.inputs[rows, batch.query_positions] == batch.keys).all()
    assert (batch.targets[rows, batch.query_positions] == batch.values).all()
    assert (np.diff(batch.key_positions, axis=1) >= 2).all()                  # in order, never overlapping


def test_pair_places_and_query_orders_vary():
    batch = gapped_recall_batch(np.random.default_rng(3), 400, 40, 2, 10)
    assert len({tuple(p) for p in batch.key_positions}) > 50
    assert 0.3 < (batch.query_positions[:, 0] == 38).mean() < 0.7             # either key can be asked first
    assert batch.key_positions[:, 0].min() == 0                               # a pair can open the sequence


def test_reproducible_from_the_generator_and_different_across_seeds():
    a, b = (gapped_recall_batch(np.random.default_rng(7), 8, 48, 3, 20) for _ in range(2))
    c = gapped_recall_batch(np.random.default_rng(8), 8, 48, 3, 20)
    for field in ("inputs", "targets", "keys", "values", "key_positions", "query_positions"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not (a.inputs == c.inputs).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(seq_len=20, num_pairs=3, min_gap=12), r"too short .* need seq_len >= 21"),
    (dict(seq_len=40, num_pairs=5, min_gap=4, num_keys=4), "at least 5 keys and values"),
    (dict(seq_len=40, num_pairs=5, min_gap=4, num_values=3), "at least 5 keys and values"),
    (dict(seq_len=40, num_pairs=0, min_gap=4), "num_pairs >= 1"),
    (dict(seq_len=40, num_pairs=2, min_gap=-1), "min_gap >= 0"),
    (dict(seq_len=40, num_pairs=2, min_gap=4, num_fillers=0), "num_fillers >= 1"),
])
def test_bad_arguments_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gapped_recall_batch(np.random.default_rng(0), 4, **kwargs)


def test_a_seed_instead_of_a_generator_is_refused():
    with pytest.raises(TypeError, match="numpy Generator"):
        gapped_recall_batch(0, 4, 40, 2, 4)
