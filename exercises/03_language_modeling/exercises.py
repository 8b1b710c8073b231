# Your exercises for chapter 03_language_modeling: replace each `raise ExerciseNotDone(...)` with your code,
# then run `make check CH=03`. Generated from exercises/solutions/03_language_modeling.py by
# `python -m book.exercises`; this copy is yours to edit.
"""Chapter 03 exercises: the pieces of a language model's training and decoding, on plain NumPy arrays.

Each function stands alone: it needs NumPy (or plain Python) and nothing from minigrad. The self-checks in
test_03_language_modeling.py compare every answer with a reference on the same inputs: PyTorch (cross-entropy
and its gradient, AdamW, the learning-rate schedulers, clip_grad_norm_, scaled_dot_product_attention),
Hugging Face's logits warpers (top-k, top-p), and for BPE a worked example and minigrad's trainer (itself
checked against a naive trainer in tests/test_bpe.py).
"""
import math

import numpy as np

from book.exercises import ExerciseNotDone  # noqa: F401  (the reader's copy raises it)


# ---------------------------------------------------------------------------------------------
# 01_tokenization_and_data.ipynb, section 2: one step of byte-pair encoding
# ---------------------------------------------------------------------------------------------

def merge(ids, pair, new_id):
    """Exercise 03.1 (part 1): replace every occurrence of `pair` in the list `ids` by new_id.

    Scan left to right; after a match, continue after the pair (so [7, 7, 7] with pair (7, 7) gives
    [new_id, 7]). Returns a new list; ids is not changed.
    """
    raise ExerciseNotDone("03.1", "merge", "about 9 lines; see 01_tokenization_and_data.ipynb, section 2")


def bpe_step(words, new_id):
    """Exercise 03.1 (part 2): one BPE merge on a corpus of words.

    words: {tuple of token ids: how often the word occurs}. Count every adjacent pair of every word,
    weighted by the word's frequency; pick the most frequent pair (ties: the smallest pair, comparing
    (a, b) tuples); merge it in every word (your `merge`).
    returns (best_pair, new_words) with new_words in the same format (a dict of tuples), or (None, words)
    when no word has two tokens left.
    """
    raise ExerciseNotDone("03.1", "bpe_step", "about 10 lines; see 01_tokenization_and_data.ipynb, section 2")


# ---------------------------------------------------------------------------------------------
# 02_training_and_sampling.ipynb, sections 1 and 2: the loss and the optimizer
# ---------------------------------------------------------------------------------------------

def cross_entropy(logits, targets):
    """Exercise 03.2: the mean cross-entropy of logits (N, V) against class indices targets (N,), and
    its gradient with respect to the logits.

        loss = mean_n [ logsumexp(z_n) - z_n[y_n] ],     dloss/dz_n = (softmax(z_n) - onehot(y_n)) / N

    Subtract each row's max before exponentiating, so logits of 1000 do not overflow.
    returns (loss as a float, dlogits (N, V)).
    """
    raise ExerciseNotDone("03.2", "cross_entropy", "about 7 lines; see 02_training_and_sampling.ipynb, section 1")


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Exercise 03.3: one AdamW update (Loshchilov & Hutter, 2019), as torch.optim.AdamW computes it.

    step is the number of this update (1 for the first). With beta1, beta2 = betas:
        param  <- param * (1 - lr * weight_decay)                       (decoupled weight decay, first)
        m      <- beta1 m + (1 - beta1) grad;   v <- beta2 v + (1 - beta2) grad^2
        param  <- param - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
    returns new arrays (param, exp_avg, exp_avg_sq); the inputs are not changed.
    """
    raise ExerciseNotDone("03.3", "adamw_step", "about 6 lines; see 02_training_and_sampling.ipynb, section 2")


def warmup_cosine_lr(step, max_lr, min_lr, warmup_steps, total_steps):
    """Exercise 03.4: the learning rate of update number `step` (0, 1, 2, ...).

    Linear warmup from 0:   max_lr * step / warmup_steps                    for step < warmup_steps
    then cosine decay:      min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2,
                            progress = (step - warmup_steps) / (total_steps - warmup_steps)
    and min_lr for every step >= total_steps.
    """
    raise ExerciseNotDone("03.4", "warmup_cosine_lr", "about 5 lines; see 02_training_and_sampling.ipynb, section 2")


def clip_grad_norm(grads, max_norm):
    """Exercise 03.5: gradient clipping by the global norm, as torch.nn.utils.clip_grad_norm_.

    grads: a list of arrays (one per parameter). total = sqrt(sum of every squared entry of every array);
    each gradient is multiplied by min(1, max_norm / (total + 1e-6)).
    returns (the list of clipped arrays, total before clipping as a float).
    """
    raise ExerciseNotDone("03.5", "clip_grad_norm", "about 3 lines; see 02_training_and_sampling.ipynb, section 2")


# ---------------------------------------------------------------------------------------------
# 02_training_and_sampling.ipynb, sections 5 and 6: decoding and the KV cache
# ---------------------------------------------------------------------------------------------

def top_k_filter(logits, k):
    """Exercise 03.6 (part 1): logits (..., V) with every entry smaller than the k-th largest of its row
    set to -inf (entries equal to the k-th largest stay). k >= V leaves the logits unchanged."""
    raise ExerciseNotDone("03.6", "top_k_filter", "about 3 lines; see 02_training_and_sampling.ipynb, section 5")


def top_p_filter(logits, p):
    """Exercise 03.6 (part 2): nucleus filtering. logits (..., V) -> the same with the tokens outside the
    nucleus set to -inf.

    Sort each row's probabilities (softmax) in DESCENDING order; keep a token when the probability of the
    tokens ranked before it is < p (so the kept set is the smallest one whose probability reaches p, and
    the most likely token is always kept). Hugging Face's TopPLogitsWarper keeps the same tokens.
    """
    raise ExerciseNotDone("03.6", "top_p_filter", "about 8 lines; see 02_training_and_sampling.ipynb, section 5")


def attend_with_cache(q, k, v, k_cache, v_cache):
    """Exercise 03.7: one decoding step of causal self-attention with a KV cache.

    q, k, v: (B, H, 1, D), the new token's query, key and value; k_cache, v_cache: (B, H, S, D), the keys
    and values of the S earlier tokens (S may be 0). Append the new key and value to the caches; the new
    token is the last one, so its query may look at every cached key and at its own:
        out = softmax(q K^T / sqrt(D)) V     with K, V the caches after appending
    returns (out (B, H, 1, D), new k_cache (B, H, S + 1, D), new v_cache (B, H, S + 1, D)).
    """
    raise ExerciseNotDone("03.7", "attend_with_cache", "about 6 lines; see 02_training_and_sampling.ipynb, section 6")
