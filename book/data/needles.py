"""Needles in a haystack: key-value records hidden in text, then queries that ask for them.

Each sequence of `length` tokens is a window of real text (the haystack) with `num_needles` records inserted,
then a query that repeats the opening of one record, then that record's value:

    ...text text {qe:308} text text text {ab:417} text text text {mz:952} text ...{ab:417
                                         ^ the queried needle, at depth d                ^ query ^ answer

A record (needle) is "{" key ":" value "}": the key is `key_len` lowercase letters, distinct among the needles
of a sequence, the value `value_len` digits. The query is "{" key ":" for the first needle's key, and the
answer is its value, the value_len tokens after the query (the last ones of the sequence). The other needles
are distractors with other keys, so finding "the" record is not enough: the model must match the key. With
num_queries = q > 1 the first q needles are asked in turn (query, value, query, value, ...): more answers per
sequence to learn from; the first query, right after the context, is still the one about the needle at depth d.

Depth: the queried needle starts at position round(d * (C - n)), C = length - q (query + value) tokens (the
context), n = the needle's length: d = 0 is the very first token, d = 1 ends the needle where the query begins.
The distractors go to random places that do not overlap it; the text between the needles is one contiguous
window of `haystack` (a 1-D token array: Shakespeare's plays, say), so the needles are inserted, not written
over the text. Every draw comes from the NumPy Generator passed in. `shakespeare_haystack` gives a haystack of
plays without their front matter (title and cast list), so that no window of it is a list of names.

    batch = needle_batch(data["val"], tokenizer, np.random.default_rng(0), 64, length=129, depth=0.5)
    x, y = batch.tokens[:, :-1], batch.tokens[:, 1:]      # next-token pairs, as for text
    batch.answers                                         # (N, value_len): the value of the queried key
"""
from dataclasses import dataclass

from minigrad.backend import np
from book.data.shakespeare import WORK_SEPARATOR
from book.data.shakespeare_probe import play_body

KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
VALUE_ALPHABET = "0123456789"
OPEN, SEPARATOR, CLOSE = "{", ":", "}"


def needle_text(key, value):
    """The record as text: {key:value}."""
    return f"{OPEN}{key}{SEPARATOR}{value}{CLOSE}"


def query_text(key):
    """The query: the record's opening, {key: (the model continues with the value)."""
    return f"{OPEN}{key}{SEPARATOR}"


def shakespeare_haystack(tokenizer, names, separator=WORK_SEPARATOR):
    """(N,) int64: the works' bodies (play_body: without the title and the cast list), joined by separator and
    encoded with tokenizer (a CharTokenizer)."""
    return np.asarray(tokenizer.encode(separator.join(play_body(name) for name in names)), dtype=np.int64)


@dataclass(frozen=True)
class NeedleBatch:
    tokens: "np.ndarray"          # (N, length) int64: haystack with needles, the query, the answer
    keys: list                    # N lists of num_needles keys; keys[i][0] is the queried one
    values: list                  # N lists of the matching values (strings)
    needle_starts: "np.ndarray"   # (N, num_needles) int64: where each needle's "{" is; column 0 = queried
    depth: "np.ndarray"           # (N,) float: the depth asked for (the queried needle's position, see above)
    answer_starts: tuple          # where each query's answer begins (the query ends just before it)
    value_len: int

    @property
    def answer_start(self):
        """Where the answer about the needle at depth d (the first query) begins."""
        return self.answer_starts[0]

    @property
    def answers(self):
        """(N, value_len) int64: the tokens of the first query's answer, the value of the needle at depth d."""
        return self.tokens[:, self.answer_start:self.answer_start + self.value_len]


def _check(tokenizer, length, num_needles, num_queries, key_len, value_len, depth, haystack):
    if num_needles < 1 or key_len < 1 or value_len < 1:
        raise ValueError(f"needle_batch: num_needles, key_len and value_len must be >= 1, got {num_needles}, "
                         f"{key_len}, {value_len}")
    if not 1 <= num_queries <= num_needles:
        raise ValueError(f"needle_batch: num_queries must be in [1, num_needles = {num_needles}], got {num_queries}")
    if num_needles > len(KEY_ALPHABET) ** key_len:
        raise ValueError(f"needle_batch: {num_needles} distinct keys do not exist with key_len {key_len}")
    missing = sorted(set(KEY_ALPHABET + VALUE_ALPHABET + OPEN + SEPARATOR + CLOSE) - set(tokenizer.chars))
    if missing:
        raise ValueError(f"needle_batch: the tokenizer has no token for {missing}")
    needle = len(needle_text("k" * key_len, "0" * value_len))
    context = length - num_queries * (len(query_text("k" * key_len)) + value_len)
    if context < num_needles * needle:
        raise ValueError(f"needle_batch: length {length} leaves {context} context tokens, fewer than "
                         f"{num_needles} needles of {needle} tokens")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"needle_batch: depth must be in [0, 1] (or None: uniform), got {depth}")
    if haystack.ndim != 1 or len(haystack) < context:
        raise ValueError(f"needle_batch: need a 1-D haystack of at least {context} tokens, got {haystack.shape}")
    return needle, context


def _place(rng, first, count, needle, context):
    """Start positions of `count` non-overlapping needles in [0, context - needle], the first one at `first`,
    each other one uniform among the positions still free."""
    starts = [first]
    while len(starts) < count:
        free = [c for c in range(context - needle + 1) if all(abs(c - s) >= needle for s in starts)]
        if not free:
            raise ValueError(f"needle_batch: no room for {count} needles of {needle} tokens in {context} context "
                             f"tokens with the queried one at {first}; use a longer length or fewer needles")
        starts.append(free[int(rng.integers(0, len(free)))])
    return starts


def _random_string(rng, alphabet, size):
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size))


def needle_batch(haystack, tokenizer, rng, num_sequences, length, depth=None, num_needles=3, num_queries=1,
                 key_len=2, value_len=3):
    """num_sequences needle sequences of `length` tokens (see the module docstring).

    haystack: 1-D token array of `tokenizer` (a CharTokenizer: one token per character); depth: the queried
    needle's depth in [0, 1], or None for a uniform draw per sequence; rng: a NumPy Generator."""
    needle, context = _check(tokenizer, length, num_needles, num_queries, key_len, value_len, depth, haystack)
    filler = context - num_needles * needle
    tokens = np.empty((num_sequences, length), dtype=np.int64)
    all_keys, all_values = [], []
    starts = np.empty((num_sequences, num_needles), dtype=np.int64)
    depths = np.empty(num_sequences)
    for i in range(num_sequences):
        depths[i] = rng.random() if depth is None else depth
        keys = []
        while len(keys) < num_needles:
            key = _random_string(rng, KEY_ALPHABET, key_len)
            if key not in keys:
                keys.append(key)
        values = [_random_string(rng, VALUE_ALPHABET, value_len) for _ in keys]
        starts[i] = _place(rng, int(round(depths[i] * (context - needle))), num_needles, needle, context)
        offset = int(rng.integers(0, len(haystack) - filler + 1))
        text = np.asarray(haystack[offset:offset + filler], dtype=np.int64)
        pieces, used, position = [], 0, 0
        for n in np.argsort(starts[i]):             # text up to each needle, then the needle
            gap = int(starts[i, n]) - position
            pieces += [text[used:used + gap], tokenizer.encode(needle_text(keys[n], values[n]))]
            used, position = used + gap, int(starts[i, n]) + needle
        questions = "".join(query_text(k) + v for k, v in zip(keys[:num_queries], values))
        pieces += [text[used:], tokenizer.encode(questions)]
        tokens[i] = np.concatenate([np.asarray(p, dtype=np.int64) for p in pieces])
        all_keys.append(keys)
        all_values.append(values)
    query = len(query_text("k" * key_len))
    answer_starts = tuple(context + (q + 1) * query + q * value_len for q in range(num_queries))
    return NeedleBatch(tokens, all_keys, all_values, starts, depths, answer_starts, value_len)
