"""Needle-in-a-haystack sequences: every record, query and answer checked against the text itself."""
import numpy as np
import pytest

from book.data.needles import needle_batch, needle_text, query_text
from book.data.shakespeare import CharTokenizer

TEXT = ("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 40)
CHARS = CharTokenizer.from_text(TEXT + "abcdefghijklmnopqrstuvwxyz0123456789{:}")
HAYSTACK = np.array(CHARS.encode(TEXT), dtype=np.uint16)


def draw(rng=None, num=20, length=129, **kwargs):
    return needle_batch(HAYSTACK, CHARS, rng or np.random.default_rng(0), num, length, **kwargs)


@pytest.mark.parametrize("num_needles,key_len,value_len", [(1, 1, 1), (3, 2, 3), (5, 3, 4)])
def test_the_answer_is_the_value_of_the_queried_key(num_needles, key_len, value_len):
    batch = draw(num_needles=num_needles, key_len=key_len, value_len=value_len)
    assert batch.tokens.shape == (20, 129) and batch.tokens.dtype == np.int64
    for i, row in enumerate(batch.tokens):
        text = CHARS.decode(row)
        keys, values = batch.keys[i], batch.values[i]
        assert len(set(keys)) == num_needles                                   # distinct keys
        assert all(len(k) == key_len and k.isalpha() for k in keys)
        assert all(len(v) == value_len and v.isdigit() for v in values)
        for key, value, start in zip(keys, values, batch.needle_starts[i]):   # each record where it says
            assert text[start:start + len(needle_text(key, value))] == needle_text(key, value)
        records = dict(zip(keys, values))
        query = query_text(keys[0])
        assert text[batch.answer_start - len(query):batch.answer_start] == query
        assert CHARS.decode(batch.answers[i]) == records[keys[0]] == values[0]
        assert text.count("{") == num_needles + 1                             # the needles and the query


def test_the_text_between_the_needles_is_one_contiguous_window_of_the_haystack():
    batch = draw(num=10)
    for i, row in enumerate(batch.tokens):
        text = CHARS.decode(row[:batch.answer_start - len(query_text(batch.keys[i][0]))])
        for key, value in zip(batch.keys[i], batch.values[i]):
            text = text.replace(needle_text(key, value), "")
        assert text in TEXT and len(text) == 129 - 3 - 4 - 3 * 8


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_the_queried_needle_sits_at_the_requested_depth(depth):
    batch = draw(num=30, length=200, depth=depth)
    context = 200 - len(query_text("ab")) - 3                   # tokens before the query
    needle = len(needle_text("ab", "123"))
    starts = batch.needle_starts[:, 0]
    assert np.abs(starts - depth * (context - needle)).max() <= 0.5
    assert (batch.depth == depth).all()
    if depth == 0.0:
        assert all(CHARS.decode(row[:1]) == "{" for row in batch.tokens)
    if depth == 1.0:                                            # the needle ends where the query begins
        assert all(CHARS.decode(row[context - needle:context]) == needle_text(k[0], v[0])
                   for row, k, v in zip(batch.tokens, batch.keys, batch.values))


def test_depth_none_draws_a_uniform_depth_per_sequence():
    batch = draw(num=400, length=160)
    assert 0.0 <= batch.depth.min() < 0.1 and 0.9 < batch.depth.max() <= 1.0
    assert abs(batch.depth.mean() - 0.5) < 0.05
    context, needle = 160 - 4 - 3, 8
    assert np.abs(batch.needle_starts[:, 0] - batch.depth * (context - needle)).max() <= 0.5


def test_determined_by_the_generator():
    a, b = draw(np.random.default_rng(5)), draw(np.random.default_rng(5))
    c = draw(np.random.default_rng(6))
    assert np.array_equal(a.tokens, b.tokens) and a.keys == b.keys and np.array_equal(a.needle_starts,
                                                                                       b.needle_starts)
    assert not np.array_equal(a.tokens, c.tokens)


@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=1.5), "depth must be in"),
    (dict(depth=-0.1), "depth must be in"),
    (dict(num_needles=0), "must be >= 1"),
    (dict(value_len=0), "must be >= 1"),
    (dict(num_needles=27, key_len=1, length=400), "distinct keys"),
    (dict(length=20), "fewer than"),
    (dict(num_needles=3, length=33, depth=4 / 18), "no room"),   # 4 tokens left of it, 14 right
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        draw(**kwargs)


def test_a_tokenizer_without_the_needle_characters_is_refused():
    plain = CharTokenizer.from_text(TEXT)
    with pytest.raises(ValueError, match="no token for"):
        needle_batch(np.array(plain.encode(TEXT)), plain, np.random.default_rng(0), 2, 129)


def test_a_haystack_shorter_than_the_context_is_refused():
    with pytest.raises(ValueError, match="haystack"):
        needle_batch(HAYSTACK[:50], CHARS, np.random.default_rng(0), 2, 129)


@pytest.mark.parametrize("num_queries", [2, 3])
def test_several_questions_each_answered_by_its_own_needle(num_queries):
    batch = draw(num=15, num_needles=3, num_queries=num_queries, key_len=1, value_len=2)
    assert len(batch.answer_starts) == num_queries
    for i, row in enumerate(batch.tokens):
        text = CHARS.decode(row)
        records = dict(zip(batch.keys[i], batch.values[i]))
        for q, start in enumerate(batch.answer_starts):
            key = batch.keys[i][q]                                       # the first q needles, in order
            assert text[start - len(query_text(key)):start] == query_text(key)
            assert text[start:start + 2] == records[key]
        assert batch.answer_starts[-1] + 2 == len(text)                 # the last answer ends the sequence
        assert CHARS.decode(batch.answers[i]) == batch.values[i][0]     # answers: the first question's
    context = 129 - num_queries * (3 + 2)                                # the depth is measured before them
    assert (batch.needle_starts + 6 <= context).all()


def test_num_queries_must_fit_the_needles():
    with pytest.raises(ValueError, match="num_queries"):
        draw(num_needles=2, num_queries=3)
    with pytest.raises(ValueError, match="num_queries"):
        draw(num_queries=0)


def test_shakespeare_haystack_has_no_cast_lists():
    from book.data.needles import shakespeare_haystack
    from book.data.shakespeare_probe import play_body
    plays = ["macbeth", "winters_tale"]
    chars = CharTokenizer.from_text("".join(play_body(p) for p in plays) + "\n")
    haystack = shakespeare_haystack(chars, plays)
    text = chars.decode(haystack)
    assert haystack.dtype == np.int64 and text == "\n\n\n".join(play_body(p) for p in plays)
    for absent in ("Persons Represented", "Dramatis Personae", "DUNCAN, King of Scotland.", "MAMILLIUS, his son"):
        assert absent not in text
    assert text.startswith("ACT I.") and "When shall we three meet again?" in text
