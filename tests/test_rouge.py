"""book.metrics.rouge against the rouge-score package (RougeScorer(["rouge1", "rouge2", "rougeL"],
use_stemmer=False)): every precision, recall and F1 on pairs of Shakespeare lines, on hand-made edge cases
(empty, punctuation-only, repeated words, very different lengths, digits, non-ASCII), and hand-worked values."""
import pytest
from rouge_score import rouge_scorer

from minigrad.backend import np
from book.data.shakespeare import read_work
from book.metrics.rouge import Score, lcs_length, rouge_scores, rouge_tokenize

TYPES = ("rouge1", "rouge2", "rougeL")
SCORER = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=False)


def _assert_same_as_rouge_score(target, prediction):
    ours, ref = rouge_scores(target, prediction), SCORER.score(target, prediction)
    assert set(ours) == set(TYPES)
    for kind in TYPES:
        assert isinstance(ours[kind], Score)
        assert tuple(ours[kind]) == pytest.approx(tuple(ref[kind]), abs=1e-12), (kind, target, prediction)


def test_tokenizer_lowercases_and_splits_on_everything_but_letters_and_digits():
    assert rouge_tokenize("Now is the winter -- of our DISCONTENT!") == \
        ["now", "is", "the", "winter", "of", "our", "discontent"]
    assert rouge_tokenize("O'er the hill, 2 times; café") == ["o", "er", "the", "hill", "2", "times", "caf"]
    assert rouge_tokenize("?! ... --") == [] and rouge_tokenize("") == []
    with pytest.raises(TypeError, match="rouge_tokenize: expected a str, got list"):
        rouge_tokenize(["a"])


def test_lcs_length_hand_worked():
    assert lcs_length("ABCBDAB", "BDCABA") == 4                  # CLRS's example: BCBA
    assert lcs_length([], ["a"]) == 0 and lcs_length(["a"], ["a"]) == 1
    assert lcs_length(list("aaaa"), list("aa")) == 2


def test_hand_worked_scores():
    got = rouge_scores("the cat sat on the mat", "the cat on the mat")
    # unigrams: overlap 5 of prediction 5 / target 6; bigrams: the-cat, on-the, the-mat = 3 of 4 / 5;
    # LCS = "the cat on the mat" = 5
    assert tuple(got["rouge1"]) == pytest.approx((1.0, 5 / 6, 2 * 5 / 6 / (1 + 5 / 6)))
    assert tuple(got["rouge2"]) == pytest.approx((3 / 4, 3 / 5, 2 * 0.75 * 0.6 / 1.35))
    assert tuple(got["rougeL"]) == pytest.approx((1.0, 5 / 6, 2 * 5 / 6 / (1 + 5 / 6)))


EDGE_CASES = [
    ("", ""), ("", "a word"), ("a word", ""), ("!!!", "..."), ("?!", "to be"), ("to be", "-- ; :"),
    ("a", "a"), ("a", "b"), ("a b", "b a"),                                # one word: no bigrams at all
    ("the the the the", "the"), ("the", "the the the the"),                # clipped counts
    ("to be or not to be", "to be to be to be"), ("be to be to", "to be to be"),
    ("Ay, MADAM; ay!", "ay madam ay"), ("O'er-leap", "o er leap"), ("42 knights", "knights 42 42"),
    ("Café naïve façade", "caf na ve fa ade"), ("x " * 60, "x " * 3), ("word", "word " * 50 + "other"),
    ("\n\tline\n", "line"), ("İstanbul", "i stanbul"),
]


@pytest.mark.parametrize("target,prediction", EDGE_CASES)
def test_edge_cases_match_rouge_score(target, prediction):
    _assert_same_as_rouge_score(target, prediction)


def test_many_shakespeare_lines_match_rouge_score():
    """Pairs of real lines: neighbours (some overlap), random pairs (little), a line against a shuffled or
    shortened copy of itself (much), and concatenations of several lines (longer texts)."""
    lines = [line for line in read_work("hamlet").splitlines()][:3000]
    rng = np.random.default_rng(0)
    pairs = [(lines[i], lines[i + 1]) for i in range(0, 400, 2)]
    pairs += [(lines[i], lines[j]) for i, j in rng.integers(0, len(lines), size=(200, 2))]
    for i in rng.integers(0, len(lines), size=150):
        words = lines[i].split()
        shuffled = " ".join(rng.permutation(words)) if words else ""
        pairs += [(lines[i], shuffled), (lines[i], " ".join(words[: len(words) // 2]))]
    for start in rng.integers(0, len(lines) - 8, size=40):
        pairs.append((" ".join(lines[start:start + 4]), " ".join(lines[start + 2:start + 8])))
    assert any(line.strip() == "" for line in lines[:400])                 # empty lines are among them
    for target, prediction in pairs:
        _assert_same_as_rouge_score(target, prediction)


def test_bad_input_names_the_function():
    with pytest.raises(TypeError, match="rouge_scores: prediction must be a str, got NoneType"):
        rouge_scores("a", None)
