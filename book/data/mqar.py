"""Multi-query associative recall (MQAR, Arora et al. 2023, "Zoology"): the recall task of BASED.

A sequence of length T starts with `num_kv_pairs` key-value pairs, then asks for every key once:

    k_1 v_1 k_2 v_2 ... k_n v_n | 0 0 k_3 0 k_1 0 0 0 k_2 ...        target at each query = its key's value

Vocabulary (size V): token 0 is the blank that fills the positions between queries; keys are drawn from
[1, V/2), values from [V/2, V), both without repetition within a sequence (so each key has one answer). The
queries sit at even offsets 2 g after the context, g drawn without replacement with probability proportional to
g^(a - 1) (a power law, a = 0.01 as zoology: most queries come soon after the context, some far away). Targets are
-100 (ignored by cross_entropy) everywhere except at the query positions, where the model must output the value:
the prediction is made at the query token itself (zoology's inputs[:-1] / labels[1:] shift, already applied).

Differences from zoology's multiquery_ar.py: the blanks stay 0 (zoology can fill them with random tokens). All
draws come from the numpy Generator passed in.
"""
from dataclasses import dataclass

from minigrad.backend import np

IGNORE = -100


@dataclass(frozen=True)
class MQARBatch:
    inputs: "np.ndarray"      # (N, T) int64
    targets: "np.ndarray"     # (N, T) int64, IGNORE except at query positions
    keys: "np.ndarray"        # (N, n) int64, the keys in context order
    values: "np.ndarray"      # (N, n) int64, values[i, j] pairs with keys[i, j]


def mqar_batch(rng, num_examples, seq_len, num_kv_pairs, vocab_size, power_a=0.01):
    """Draw num_examples MQAR sequences (see the module docstring) from the numpy Generator rng."""
    context = 2 * num_kv_pairs
    space = (seq_len - context) // 2
    if vocab_size // 2 - 1 < num_kv_pairs or vocab_size - vocab_size // 2 < num_kv_pairs:
        raise ValueError(f"mqar_batch: vocab_size {vocab_size} too small for {num_kv_pairs} distinct keys and values")
    if space < num_kv_pairs:
        raise ValueError(f"mqar_batch: seq_len {seq_len} leaves room for {space} queries after {context} context "
                         f"tokens; need num_kv_pairs {num_kv_pairs}")
    half = vocab_size // 2
    p = power_a * np.arange(1, space + 1) ** (power_a - 1)
    p = p / p.sum()
    inputs = np.zeros((num_examples, seq_len), np.int64)
    targets = np.full((num_examples, seq_len), IGNORE, np.int64)
    keys = np.empty((num_examples, num_kv_pairs), np.int64)
    values = np.empty((num_examples, num_kv_pairs), np.int64)
    for i in range(num_examples):
        keys[i] = rng.choice(np.arange(1, half), size=num_kv_pairs, replace=False)
        values[i] = rng.choice(np.arange(half, vocab_size), size=num_kv_pairs, replace=False)
        gaps = rng.choice(space, size=num_kv_pairs, replace=False, p=p)
        inputs[i, 0:context:2], inputs[i, 1:context:2] = keys[i], values[i]
        query_pos = context + 2 * gaps
        inputs[i, query_pos] = keys[i]
        targets[i, query_pos] = values[i]
    return MQARBatch(inputs, targets, keys, values)
