"""Gapped associative recall: key-value pairs, a long stretch of filler, then the keys again as queries.

The recall task of the Routing Transformer notebook (chapter 07). Each sequence of length T holds `num_pairs`
adjacent pairs `k v` scattered over its first part, filler tokens everywhere else, and ends with the
`num_pairs` keys again, in a random order, as queries:

    f f k1 v1 f f f k2 v2 f | f f f ... (at least min_gap fillers) ... f | k2 k1       targets: . . v2 v1

Between the last pair and the first query there are at least `min_gap` filler tokens, so every query sits more
than `min_gap` positions after the value it asks for: an attention that only looks `min_gap` tokens back
cannot see the answer. Targets are -100 (ignored by cross_entropy) except at the queries, where the model must
output the value bound to that key; as in MQAR the prediction is made at the query token itself.

Vocabulary: keys are tokens [0, num_keys), values [num_keys, num_keys + num_values), fillers the next
num_fillers tokens; vocab_size is their sum. Keys are distinct within a sequence and so are values (each key
has one answer). The pairs' places are uniform over the arrangements of P pairs among the fillers of the first
part. All draws come from the numpy Generator passed in.
"""
from dataclasses import dataclass

from minigrad.backend import np

IGNORE = -100


@dataclass(frozen=True)
class GappedRecallBatch:
    inputs: "np.ndarray"           # (N, T) int64
    targets: "np.ndarray"          # (N, T) int64, IGNORE except at the query positions
    keys: "np.ndarray"             # (N, P) int64, the keys in sequence order
    values: "np.ndarray"           # (N, P) int64, values[i, j] is bound to keys[i, j]
    key_positions: "np.ndarray"    # (N, P) int64, where keys[i, j] first appears (its value is at +1)
    query_positions: "np.ndarray"  # (N, P) int64, where keys[i, j] is asked again


def vocab_size(num_keys, num_values, num_fillers):
    return num_keys + num_values + num_fillers


def gapped_recall_batch(rng, num_examples, seq_len, num_pairs, min_gap, num_keys=16, num_values=16,
                        num_fillers=16):
    """Draw num_examples sequences (see the module docstring) from the numpy Generator rng."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"gapped_recall_batch: rng must be a numpy Generator, got {type(rng).__name__}")
    if num_examples < 1 or num_pairs < 1 or min_gap < 0 or num_fillers < 1:
        raise ValueError(f"gapped_recall_batch: need num_examples >= 1, num_pairs >= 1, min_gap >= 0 and "
                         f"num_fillers >= 1; got {num_examples}, {num_pairs}, {min_gap}, {num_fillers}")
    if num_keys < num_pairs or num_values < num_pairs:
        raise ValueError(f"gapped_recall_batch: {num_pairs} pairs need at least {num_pairs} keys and values "
                         f"(distinct within a sequence); got num_keys={num_keys}, num_values={num_values}")
    context = seq_len - num_pairs - min_gap                 # the part that holds the pairs
    if context < 2 * num_pairs:
        raise ValueError(f"gapped_recall_batch: seq_len {seq_len} is too short for {num_pairs} pairs, a gap of "
                         f"{min_gap} and {num_pairs} queries: need seq_len >= {3 * num_pairs + min_gap}")
    first_filler = num_keys + num_values
    inputs = rng.integers(first_filler, first_filler + num_fillers, size=(num_examples, seq_len))
    targets = np.full((num_examples, seq_len), IGNORE, np.int64)
    keys = np.empty((num_examples, num_pairs), np.int64)
    values = np.empty((num_examples, num_pairs), np.int64)
    key_positions = np.empty((num_examples, num_pairs), np.int64)
    query_positions = np.empty((num_examples, num_pairs), np.int64)
    for i in range(num_examples):
        keys[i] = rng.choice(num_keys, size=num_pairs, replace=False)
        values[i] = num_keys + rng.choice(num_values, size=num_pairs, replace=False)
        # P pair blocks among (context - 2P) fillers: choose the blocks' ranks among the context - P items
        ranks = np.sort(rng.choice(context - num_pairs, size=num_pairs, replace=False))
        key_positions[i] = ranks + np.arange(num_pairs)     # each earlier block takes one extra position
        inputs[i, key_positions[i]], inputs[i, key_positions[i] + 1] = keys[i], values[i]
        query_positions[i] = seq_len - num_pairs + rng.permutation(num_pairs)
        inputs[i, query_positions[i]] = keys[i]
        targets[i, query_positions[i]] = values[i]
    return GappedRecallBatch(inputs.astype(np.int64), targets, keys, values, key_positions, query_positions)
