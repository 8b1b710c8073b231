"""Heuristic quality filters in the style of Gopher (Scaling Language Models: Methods, Analysis & Insights from
Training Gopher, Rae et al. 2021, arXiv:2112.11446, appendix A.1.1), the rule-based stage of Yi's cascade
(Yi: Open Foundation Models by 01.AI, arXiv:2403.04652, section 2.1).

A document is a string; its words are its whitespace-separated pieces w_1 .. w_N, |w| a word's length in
characters, C = sum_i |w_i| the characters of all words. The statistics:

    length                  N (words)
    mean word length        C / N
    symbol ratio            the fraction of non-space characters that are neither letters nor digits
    digit ratio             the fraction of non-space characters that are digits
    alphabetic words        the fraction of words with at least one letter
    duplicate lines         (number of lines equal to an earlier non-empty line) / (number of non-empty lines)
    duplicate line chars    (characters in those repeated lines) / (characters in all non-empty lines)
    top n-gram chars        for n = 2, 3, 4: count(g*) * sum_{w in g*} |w| / C, with g* the most frequent
                            word n-gram (ties: the first to occur)
    duplicate n-gram chars  for n = 5 .. 10: the characters of the words covered by the second or a later
                            occurrence of some n-gram, each word counted once however many n-grams cover it, / C

Gopher removes a document when a statistic leaves its range (`HeuristicThresholds`: its values, except where
noted). The first occurrence of a repeated n-gram is not counted (Gopher's text leaves this open; a document
with one repeated sentence then scores that sentence once, not twice).
"""
from collections import Counter
from dataclasses import dataclass, fields

from minigrad.backend import np


def _words(document):
    if not isinstance(document, str):
        raise TypeError(f"filters: a document must be a str, got {type(document).__name__}")
    return document.split()


def duplicate_line_fractions(document):
    """(fraction of non-empty lines that repeat an earlier line, fraction of their characters)."""
    _words(document)
    lines = [line.strip() for line in document.split("\n") if line.strip()]
    if not lines:
        return 0.0, 0.0
    seen, repeated, repeated_chars = set(), 0, 0
    for line in lines:
        if line in seen:
            repeated += 1
            repeated_chars += len(line)
        seen.add(line)
    return repeated / len(lines), repeated_chars / sum(len(line) for line in lines)


def top_ngram_char_fraction(words, n):
    """count(g*) * sum of |w| over g* / C, g* the most frequent word n-gram (0 for fewer than n words)."""
    total = sum(len(w) for w in words)
    if len(words) < n or total == 0:
        return 0.0
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    top, count = Counter(grams).most_common(1)[0]
    return count * sum(len(w) for w in top) / total


def duplicate_ngram_char_fraction(words, n):
    """Characters of the words covered by a second or later occurrence of an n-gram, each word once, / C."""
    total = sum(len(w) for w in words)
    if len(words) < n or total == 0:
        return 0.0
    covered = np.zeros(len(words), dtype=bool)
    seen = set()
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        if gram in seen:
            covered[i:i + n] = True
        seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered) if c) / total


def document_stats(document):
    """Every statistic of the module docstring, as a dict name -> float."""
    words = _words(document)
    chars = [c for c in document if not c.isspace()]
    n_chars = max(len(chars), 1)
    lines, line_chars = duplicate_line_fractions(document)
    stats = {
        "words": float(len(words)),
        "mean word length": sum(len(w) for w in words) / max(len(words), 1),
        "symbol ratio": sum(not c.isalnum() for c in chars) / n_chars,
        "digit ratio": sum(c.isdigit() for c in chars) / n_chars,
        "alphabetic words": sum(any(c.isalpha() for c in w) for w in words) / max(len(words), 1),
        "duplicate lines": lines,
        "duplicate line chars": line_chars,
    }
    for n in (2, 3, 4):
        stats[f"top {n}-gram chars"] = top_ngram_char_fraction(words, n)
    for n in range(5, 11):
        stats[f"duplicate {n}-gram chars"] = duplicate_ngram_char_fraction(words, n)
    return stats


@dataclass(frozen=True)
class HeuristicThresholds:
    """The range a statistic must stay in; a document outside any range is removed. Gopher's values, except
    symbol and digit ratios (Gopher counts only '#' and '...' per word; these count every symbol and digit,
    and are set from clean text) and duplicate lines (Gopher 0.30; a play repeats its speakers' names)."""
    min_words: float = 50
    max_words: float = 100_000
    min_mean_word_length: float = 3
    max_mean_word_length: float = 10
    max_symbol_ratio: float = 0.25
    max_digit_ratio: float = 0.05
    min_alphabetic_words: float = 0.8
    max_duplicate_lines: float = 0.45
    max_duplicate_line_chars: float = 0.20
    max_top_2gram_chars: float = 0.20
    max_top_3gram_chars: float = 0.18
    max_top_4gram_chars: float = 0.16
    max_duplicate_5gram_chars: float = 0.15
    max_duplicate_6gram_chars: float = 0.14
    max_duplicate_7gram_chars: float = 0.13
    max_duplicate_8gram_chars: float = 0.12
    max_duplicate_9gram_chars: float = 0.11
    max_duplicate_10gram_chars: float = 0.10

    def ranges(self):
        """{statistic name: (low, high)} for every statistic of document_stats."""
        value = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {"words": (value["min_words"], value["max_words"]),
               "mean word length": (value["min_mean_word_length"], value["max_mean_word_length"]),
               "alphabetic words": (value["min_alphabetic_words"], 1.0)}
        for name in ("symbol ratio", "digit ratio", "duplicate lines", "duplicate line chars"):
            out[name] = (0.0, value["max_" + name.replace(" ", "_")])
        for n in (2, 3, 4):
            out[f"top {n}-gram chars"] = (0.0, value[f"max_top_{n}gram_chars"])
        for n in range(5, 11):
            out[f"duplicate {n}-gram chars"] = (0.0, value[f"max_duplicate_{n}gram_chars"])
        return out


def failed_rules(document, thresholds=HeuristicThresholds()):
    """The statistics of `document` outside their ranges (an empty list: the document is kept)."""
    stats = document_stats(document)
    return [name for name, (low, high) in thresholds.ranges().items() if not low <= stats[name] <= high]


def heuristic_filter(documents, thresholds=HeuristicThresholds()):
    """Boolean (N,) array: True for the documents every rule keeps."""
    return np.array([not failed_rules(d, thresholds) for d in documents], dtype=bool)
