"""ROUGE, from ROUGE: A Package for Automatic Evaluation of Summaries (Lin, 2004, ACL Workshop W04-1013):
how much of a target (reference) text a prediction recovers, counted in shared n-grams or in the longest
common subsequence of words.

    ROUGE-N:  overlap  = sum_g min(count_target(g), count_prediction(g))     over the n-grams g of each text
              P = overlap / max(#n-grams of prediction, 1),   R = overlap / max(#n-grams of target, 1)
    ROUGE-L:  L = |LCS(target, prediction)|                                   (longest common subsequence)
              P = L / len(prediction),   R = L / len(target)                  (all zero if either is empty)
    F1      = 2 P R / (P + R),   0 when P + R = 0

Words are what the rouge-score package's default tokenizer (use_stemmer=False) makes of a string: lowercase it,
treat every run of characters outside [a-z0-9] as a separator, keep the non-empty pieces. So "Ay, MADAM!" is
["ay", "madam"], an apostrophe splits a word ("o'er" -> ["o", "er"]), and a punctuation-only or empty string
has no words at all (every score 0). `rouge_scores(target, prediction)` returns what
`rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False).score(target, prediction)` returns,
value for value (tests/test_rouge.py compares them on corpus lines and edge cases):

    {"rouge1": Score(precision, recall, fmeasure), "rouge2": Score(...), "rougeL": Score(...)}

where Score is this module's namedtuple (same field names as rouge-score's own Score).
"""
import re
from collections import Counter, namedtuple

Score = namedtuple("Score", ["precision", "recall", "fmeasure"])
Score.__doc__ = "Precision, recall and their harmonic mean F1 (`fmeasure`) of one ROUGE variant."

WORD = re.compile(r"[a-z0-9]+")


def rouge_tokenize(text):
    """The words of `text`: lowercase, then the maximal runs of a-z and 0-9 (everything else separates).

    >>> rouge_tokenize("Now is the winter -- of our DISCONTENT!")
    ['now', 'is', 'the', 'winter', 'of', 'our', 'discontent']
    """
    if not isinstance(text, str):
        raise TypeError(f"rouge_tokenize: expected a str, got {type(text).__name__}")
    return WORD.findall(text.lower())


def f1(precision, recall):
    """Harmonic mean of precision and recall, 0 when both are 0."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def ngram_counts(words, n):
    """Counter of the n-grams (tuples of n consecutive words) of a word list."""
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def rouge_n(target_words, prediction_words, n):
    """ROUGE-N of two word lists: clipped n-gram overlap over each side's n-gram count."""
    target, prediction = ngram_counts(target_words, n), ngram_counts(prediction_words, n)
    overlap = sum((target & prediction).values())          # & keeps min(count_target, count_prediction)
    precision = overlap / max(sum(prediction.values()), 1)
    recall = overlap / max(sum(target.values()), 1)
    return Score(precision, recall, f1(precision, recall))


def lcs_length(a, b):
    """Length of the longest common subsequence of two sequences, by dynamic programming in O(len(a) len(b)).

    row[j] holds the LCS length of the current prefix of `a` and b[:j]; a match extends the diagonal
    neighbour (the value of row[j-1] before this pass), a mismatch takes the longer of dropping either last item.
    """
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0                                       # LCS(a prefix without x, b[:j-1])
        for j, y in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l(target_words, prediction_words):
    """ROUGE-L of two word lists: LCS length over each side's length (all zero if either side is empty)."""
    if not target_words or not prediction_words:
        return Score(0, 0, 0)
    lcs = lcs_length(target_words, prediction_words)
    precision, recall = lcs / len(prediction_words), lcs / len(target_words)
    return Score(precision, recall, f1(precision, recall))


def rouge_scores(target, prediction):
    """ROUGE-1, ROUGE-2 and ROUGE-L of a prediction string against a target string.

    Returns {"rouge1": Score, "rouge2": Score, "rougeL": Score}, each Score(precision, recall, fmeasure).
    """
    for name, text in (("target", target), ("prediction", prediction)):
        if not isinstance(text, str):
            raise TypeError(f"rouge_scores: {name} must be a str, got {type(text).__name__}")
    target_words, prediction_words = rouge_tokenize(target), rouge_tokenize(prediction)
    return {"rouge1": rouge_n(target_words, prediction_words, 1),
            "rouge2": rouge_n(target_words, prediction_words, 2),
            "rougeL": rouge_l(target_words, prediction_words)}
