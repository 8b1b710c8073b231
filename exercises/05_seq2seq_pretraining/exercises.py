# Your exercises for chapter 05_seq2seq_pretraining: replace each `raise ExerciseNotDone(...)` with your code,
# then run `make check CH=05`. Generated from exercises/solutions/05_seq2seq_pretraining.py by
# `python -m book.exercises`; this copy is yours to edit.
"""Chapter 05 exercises: sequence-to-sequence pretraining, written on plain NumPy arrays and Python strings.

Each function stands alone: it needs NumPy (and `re`) and nothing from minigrad. The self-checks in
test_05_seq2seq_pretraining.py compare every answer with a PyTorch formulation of the same quantity (argsort,
gather, cross_entropy on a similarity matrix, lerp, scatter_add) or with the rouge-score package, on hand-made and random cases.

Notation (as in the notebooks): a sequence is a 1-D int64 array of token ids; draws are passed in as arrays.
"""
import re

import numpy as np

from book.exercises import ExerciseNotDone  # noqa: F401  (the reader's copy raises it)

KEPT, SHUFFLED = 0, 1
ORDERS = np.array([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])   # the 5 non-identity orders of 3


# ---------------------------------------------------------------------------------------------
# BART and E2S2 (notebook 01_bart_and_e2s2)
# ---------------------------------------------------------------------------------------------

def span_infilling(tokens, lengths, gaps, mask_id):
    """Exercise 05.1: BART's text infilling with given draws.

    tokens: (n,) int64. lengths: (k,) int64 >= 0, the spans' lengths in order along the sequence (a length of 0
    is allowed). gaps: (k,) strictly increasing: span j sits in gap gaps[j] among the n - sum(lengths) KEPT tokens
    (gap g is just before the g-th kept token, counting from 0; gap n - sum(lengths) is the end).
    returns int64 (n - sum(lengths) + k,): each span replaced by ONE mask_id; a zero-length span inserts a mask_id.
    Example: tokens 10..19, lengths [2, 0, 1], gaps [1, 3, 7] -> [10, M, 13, 14, M, 15, 16, 17, 18, M].
    """
    raise ExerciseNotDone("05.1", "span_infilling", "about 8 lines; see 01_bart_and_e2s2, section 1")


def shuffle_trigrams(tokens, starts, orders):
    """Exercise 05.2: E2S2's trigram shuffle and its detection labels.

    tokens: (n,) int64. starts: (k,) increasing, at least 3 apart, each the first position of a trigram.
    orders: (k,) indices into ORDERS: position starts[j] + i receives the token from starts[j] + ORDERS[orders[j]][i].
    returns (shuffled int64 (n,), labels int64 (n,)): labels are SHUFFLED (1) on the three positions of every
    shuffled trigram and KEPT (0) elsewhere.
    """
    raise ExerciseNotDone("05.2", "shuffle_trigrams", "about 6 lines; see 01_bart_and_e2s2, section 2")


def nt_xent(z1, z2, temperature):
    """Exercise 05.3: the NT-Xent contrastive loss of two views with in-batch negatives.

    z1, z2: (B, C) float, row i of z1 and row i of z2 are two views of one sequence. Normalize the 2B rows of
    [z1; z2] to unit length; s_ij = u_i . u_j / temperature. For each row i of the 2B, the loss is
    -log( exp(s_i,p) / sum_{j != i} exp(s_ij) ), p its other view. returns the mean over the 2B rows (a float).
    Subtract each row's max before exponentiating (no overflow at small temperatures).
    """
    raise ExerciseNotDone("05.3", "nt_xent", "about 8 lines; see 01_bart_and_e2s2, section 2")


# ---------------------------------------------------------------------------------------------
# ROUGE (notebook 01_bart_and_e2s2, section 3)
# ---------------------------------------------------------------------------------------------

def rouge_l(target, prediction):
    """Exercise 05.4: ROUGE-L of two strings, as the rouge-score package computes it without stemming.

    Words: lowercase the string, then the maximal runs of characters in [a-z0-9] (anything else separates).
    L = length of the longest common subsequence of the two word lists (dynamic programming).
    returns (precision, recall, f1) = (L / len(prediction words), L / len(target words), 2PR / (P + R)),
    all 0.0 if either text has no words (and f1 = 0.0 when P + R = 0).
    """
    raise ExerciseNotDone("05.4", "rouge_l", "about 12 lines; see 01_bart_and_e2s2, section 3")


# ---------------------------------------------------------------------------------------------
# The Neural Semantic Encoder and the pointer-generator (notebook 02_summarization)
# ---------------------------------------------------------------------------------------------

def nse_memory_write(memory, attention, written, keep=None):
    """Exercise 05.5: one NSE memory update, M <- M * (1 - z 1^T) + z h^T, row by row of the batch.

    memory: (B, N, D) the slots; attention: (B, N) the weights z the step read with (each row sums to 1, zero on
    padded slots); written: (B, D) the write LSTM's output h; keep: (B,) bool or None, False where the time step is
    padding (that row's memory is returned unchanged).
    returns the new memory (B, N, D). Each slot moves towards h by its own attention weight: a slot with z_j = 1
    becomes h, a slot with z_j = 0 is untouched, and every slot stays a convex mix of what it held and h.
    """
    raise ExerciseNotDone("05.5", "nse_memory_write", "about 3 lines; see 02_summarization, section 2")


def pointer_generator_mixture(p_vocab, p_gen, attention, src_ids):
    """Exercise 05.6: the pointer-generator's output distribution,
    P(w) = p_gen P_vocab(w) + (1 - p_gen) sum_{j: src_j = w} z_j.

    p_vocab: (B, V) the generator's softmax; p_gen: (B,) in [0, 1]; attention: (B, S) the pointer's weights over the
    source positions (zero on padding); src_ids: (B, S) int64 ids in [0, V).
    returns (B, V), each row a distribution. A word that appears twice in the source collects both of its
    positions' weights.
    """
    raise ExerciseNotDone("05.6", "pointer_generator_mixture", "about 4 lines; see 02_summarization, section 3")
