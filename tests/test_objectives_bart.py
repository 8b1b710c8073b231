"""book.objectives.bart: BART's corruptions on hand-made cases (every span, gap and zero-length insertion worked
out by hand), their statistics over many draws (the exact masked fraction, Poisson(3) span lengths), and the
denoising batch fed to the encoder-decoder of chapter 02."""
import math

import pytest
from scipy import stats

from minigrad.backend import np
from book.data.padding import pad_rows
from book.objectives.bart import (SpanDraws, apply_sentence_permutation, apply_span_infilling, apply_token_deletion,
                                  denoising_batch, draw_sentence_permutation, draw_span_infilling,
                                  draw_span_lengths, draw_token_deletion, infilling_mask, num_masked,
                                  sentence_starts)

M = 99                                                                   # the mask id in these examples


def test_span_infilling_hand_made():
    tokens = np.arange(10, 20)                                           # 10 .. 19
    # spans of 2 at gap 1 (after the first kept token), 0 at gap 3, 1 at gap 7 (the end: 7 kept tokens)
    draws = SpanDraws(lengths=np.array([2, 0, 1]), gaps=np.array([1, 3, 7]))
    got = apply_span_infilling(tokens, draws, M)
    assert got.tolist() == [10, M, 13, 14, M, 15, 16, 17, 18, M]         # 11 12 hidden; an insertion; 19 hidden
    assert infilling_mask(10, draws).tolist() == [i in (1, 2, 9) for i in range(10)]
    assert apply_span_infilling(tokens, SpanDraws(np.array([0]), np.array([0])), M).tolist() == \
        [M] + tokens.tolist()                                            # a zero-length span at the start
    assert apply_span_infilling(tokens, SpanDraws(np.zeros(0, int), np.zeros(0, int)), M).tolist() == tokens.tolist()
    assert apply_span_infilling(tokens, SpanDraws(np.array([10]), np.array([0])), M).tolist() == [M]


def test_span_infilling_rejects_bad_draws():
    tokens = np.arange(6)
    with pytest.raises(ValueError, match=r"apply_span_infilling: need lengths >= 0 and strictly increasing gaps"):
        apply_span_infilling(tokens, SpanDraws(np.array([1, 1]), np.array([2, 2])), M)   # one gap, two spans
    with pytest.raises(ValueError, match=r"gaps in \[0, 4\]"):
        apply_span_infilling(tokens, SpanDraws(np.array([2]), np.array([5])), M)
    with pytest.raises(ValueError, match="apply_span_infilling: expected a 1-D array of integer token ids"):
        apply_span_infilling(np.zeros((2, 3), dtype=np.int64), SpanDraws(np.array([1]), np.array([0])), M)


def test_span_lengths_add_up_to_m_and_the_last_is_cut():
    rng = np.random.default_rng(0)
    for m in [0, 1, 2, 5, 6, 17, 40]:
        lengths = draw_span_lengths(m, rng)
        assert lengths.sum() == m and (lengths >= 0).all()
        assert m == 0 or lengths[:-1].sum() < m                          # no span after the budget is reached


def test_masked_fraction_is_exact_on_every_draw():
    rng = np.random.default_rng(1)
    for n in [1, 2, 7, 20, 64, 101]:
        for _ in range(200):
            draws = draw_span_infilling(n, rng, rate=0.15)
            hidden = infilling_mask(n, draws)
            assert hidden.sum() == math.ceil(0.15 * n) == num_masked(n, 0.15)
            corrupted = apply_span_infilling(np.arange(n), draws, -1)            # ids 0 .. n-1, mask -1
            assert (corrupted == -1).sum() == len(draws.lengths)          # one mask per span, zero-length ones too
            assert corrupted[corrupted != -1].tolist() == np.flatnonzero(~hidden).tolist()   # kept ones in order
            assert (np.diff(draws.gaps) > 0).all()                       # spans never touch


def test_span_lengths_follow_poisson_3():
    """Complete spans (all but the cut last one of each sequence) are Poisson(3) draws: chi-square test against
    scipy's pmf (a correct sampler fails about once in 1e6 runs), and the share of zero-length spans. Long
    sequences (m = 600), because the spans before the cut are biased short by O(1/number of spans): a long
    draw is the likelier one to cross m and be cut."""
    rng = np.random.default_rng(2)
    lengths = np.concatenate([draw_span_infilling(4000, rng).lengths[:-1] for _ in range(40)])
    counts = np.bincount(np.minimum(lengths, 9), minlength=10)
    expected = stats.poisson.pmf(np.arange(10), 3.0)
    expected[-1] = stats.poisson.sf(8, 3.0)
    _, p = stats.chisquare(counts, expected * len(lengths))
    assert p > 1e-6, (counts, expected * len(lengths))
    assert counts[0] > 0                                                 # insertions do happen


def test_sentence_permutation_hand_made():
    ends = np.zeros(50, dtype=bool)
    ends[[7, 9]] = True                                                  # ids 7 and 9 end a sentence ('.' and '?')
    tokens = np.array([1, 2, 7, 3, 9, 4, 5, 7, 6])
    starts = sentence_starts(tokens, ends)
    assert starts.tolist() == [0, 3, 5, 8]                               # [1 2 7] [3 9] [4 5 7] [6]
    got = apply_sentence_permutation(tokens, starts, np.array([2, 0, 3, 1]))
    assert got.tolist() == [4, 5, 7, 1, 2, 7, 6, 3, 9]
    assert sentence_starts(np.array([1, 7]), ends).tolist() == [0]       # an end token at the very end
    with pytest.raises(ValueError, match="apply_sentence_permutation: permutation \\[0, 0, 1, 2\\] is not"):
        apply_sentence_permutation(tokens, starts, np.array([0, 0, 1, 2]))


def test_sentence_permutation_draws_are_uniform():
    rng = np.random.default_rng(3)
    orders = [tuple(draw_sentence_permutation(3, rng)) for _ in range(6000)]
    counts = np.array([orders.count(p) for p in sorted(set(orders))])
    assert len(counts) == 6 and stats.chisquare(counts).pvalue > 1e-6


def test_token_deletion():
    tokens = np.array([5, 6, 7, 8, 9])
    assert apply_token_deletion(tokens, np.array([False, True, False, False, True])).tolist() == [5, 7, 8]
    rng = np.random.default_rng(4)
    deleted = np.stack([draw_token_deletion(40, rng) for _ in range(2000)])   # (2000, 40)
    assert (deleted.sum(1) == 6).all()                                   # round(0.15 * 40), every time
    per_position = deleted.mean(0)
    assert np.abs(per_position - 0.15).max() < 5 * math.sqrt(0.15 * 0.85 / 2000)   # no position favoured
    with pytest.raises(ValueError, match=r"apply_token_deletion: deleted must be bool of shape \(5,\)"):
        apply_token_deletion(tokens, np.array([1, 0, 0, 0, 1]))


def test_denoising_batch_frames_and_pads():
    PAD, BOS, EOS = 0, 1, 2
    src, tgt_in, targets = denoising_batch([np.array([5, 6, 7]), np.array([8])], [np.array([M, 7]), np.array([8])],
                                           PAD, BOS, EOS)
    assert src.tolist() == [[BOS, M, 7, EOS], [BOS, 8, EOS, PAD]]
    assert tgt_in.tolist() == [[BOS, 5, 6, 7], [BOS, 8, PAD, PAD]]
    assert targets.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    with pytest.raises(ValueError, match="pad_rows: row 0 has 3 tokens, more than length 2"):
        pad_rows([np.array([1, 2, 3])], PAD, length=2)
