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
    # BEGIN SOLUTION 03.1 (about 9 lines; see 01_tokenization_and_data.ipynb, section 2)
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
    # END SOLUTION


def bpe_step(words, new_id):
    """Exercise 03.1 (part 2): one BPE merge on a corpus of words.

    words: {tuple of token ids: how often the word occurs}. Count every adjacent pair of every word,
    weighted by the word's frequency; pick the most frequent pair (ties: the smallest pair, comparing
    (a, b) tuples); merge it in every word (your `merge`).
    returns (best_pair, new_words) with new_words in the same format (a dict of tuples), or (None, words)
    when no word has two tokens left.
    """
    # BEGIN SOLUTION 03.1 (about 10 lines; see 01_tokenization_and_data.ipynb, section 2)
    counts = {}
    for word, freq in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + freq
    if not counts:
        return None, words
    best = min(counts, key=lambda p: (-counts[p], p))
    new_words = {}
    for word, freq in words.items():
        merged = tuple(merge(list(word), best, new_id))
        new_words[merged] = new_words.get(merged, 0) + freq
    return best, new_words
    # END SOLUTION


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
    # BEGIN SOLUTION 03.2 (about 7 lines; see 02_training_and_sampling.ipynb, section 1)
    N = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)           # (N, V), max 0 per row
    log_sum = np.log(np.exp(shifted).sum(axis=1))                  # (N,) logsumexp - max
    picked = shifted[np.arange(N), targets]                        # (N,)
    loss = float((log_sum - picked).mean())
    grad = np.exp(shifted - log_sum[:, None])                      # softmax (N, V)
    grad[np.arange(N), targets] -= 1
    return loss, grad / N
    # END SOLUTION


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """Exercise 03.3: one AdamW update (Loshchilov & Hutter, 2019), as torch.optim.AdamW computes it.

    step is the number of this update (1 for the first). With beta1, beta2 = betas:
        param  <- param * (1 - lr * weight_decay)                       (decoupled weight decay, first)
        m      <- beta1 m + (1 - beta1) grad;   v <- beta2 v + (1 - beta2) grad^2
        param  <- param - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
    returns new arrays (param, exp_avg, exp_avg_sq); the inputs are not changed.
    """
    # BEGIN SOLUTION 03.3 (about 6 lines; see 02_training_and_sampling.ipynb, section 2)
    beta1, beta2 = betas
    param = param * (1 - lr * weight_decay)
    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    denom = np.sqrt(v) / math.sqrt(1 - beta2 ** step) + eps
    return param - lr / (1 - beta1 ** step) * m / denom, m, v
    # END SOLUTION


def warmup_cosine_lr(step, max_lr, min_lr, warmup_steps, total_steps):
    """Exercise 03.4: the learning rate of update number `step` (0, 1, 2, ...).

    Linear warmup from 0:   max_lr * step / warmup_steps                    for step < warmup_steps
    then cosine decay:      min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2,
                            progress = (step - warmup_steps) / (total_steps - warmup_steps)
    and min_lr for every step >= total_steps.
    """
    # BEGIN SOLUTION 03.4 (about 5 lines; see 02_training_and_sampling.ipynb, section 2)
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (max_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    # END SOLUTION


def clip_grad_norm(grads, max_norm):
    """Exercise 03.5: gradient clipping by the global norm, as torch.nn.utils.clip_grad_norm_.

    grads: a list of arrays (one per parameter). total = sqrt(sum of every squared entry of every array);
    each gradient is multiplied by min(1, max_norm / (total + 1e-6)).
    returns (the list of clipped arrays, total before clipping as a float).
    """
    # BEGIN SOLUTION 03.5 (about 3 lines; see 02_training_and_sampling.ipynb, section 2)
    total = math.sqrt(sum(float((g * g).sum()) for g in grads))
    scale = min(1.0, max_norm / (total + 1e-6))
    return [g * scale for g in grads], total
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# 02_training_and_sampling.ipynb, sections 5 and 6: decoding and the KV cache
# ---------------------------------------------------------------------------------------------

def top_k_filter(logits, k):
    """Exercise 03.6 (part 1): logits (..., V) with every entry smaller than the k-th largest of its row
    set to -inf (entries equal to the k-th largest stay). k >= V leaves the logits unchanged."""
    # BEGIN SOLUTION 03.6 (about 3 lines; see 02_training_and_sampling.ipynb, section 5)
    if k >= logits.shape[-1]:
        return logits.copy()
    kth = np.sort(logits, axis=-1)[..., -k][..., None]             # (..., 1)
    return np.where(logits < kth, -np.inf, logits)
    # END SOLUTION


def top_p_filter(logits, p):
    """Exercise 03.6 (part 2): nucleus filtering. logits (..., V) -> the same with the tokens outside the
    nucleus set to -inf.

    Sort each row's probabilities (softmax) in DESCENDING order; keep a token when the probability of the
    tokens ranked before it is < p (so the kept set is the smallest one whose probability reaches p, and
    the most likely token is always kept). Hugging Face's TopPLogitsWarper keeps the same tokens.
    """
    # BEGIN SOLUTION 03.6 (about 8 lines; see 02_training_and_sampling.ipynb, section 5)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)                      # (..., V)
    order = np.argsort(-probs, axis=-1, kind="stable")             # descending
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    before = np.cumsum(sorted_probs, axis=-1) - sorted_probs       # the mass ranked before each token
    keep_sorted = before < p
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, logits, -np.inf)
    # END SOLUTION


def attend_with_cache(q, k, v, k_cache, v_cache):
    """Exercise 03.7: one decoding step of causal self-attention with a KV cache.

    q, k, v: (B, H, 1, D), the new token's query, key and value; k_cache, v_cache: (B, H, S, D), the keys
    and values of the S earlier tokens (S may be 0). Append the new key and value to the caches; the new
    token is the last one, so its query may look at every cached key and at its own:
        out = softmax(q K^T / sqrt(D)) V     with K, V the caches after appending
    returns (out (B, H, 1, D), new k_cache (B, H, S + 1, D), new v_cache (B, H, S + 1, D)).
    """
    # BEGIN SOLUTION 03.7 (about 6 lines; see 02_training_and_sampling.ipynb, section 6)
    K = np.concatenate([k_cache, k], axis=2)                       # (B, H, S + 1, D)
    V = np.concatenate([v_cache, v], axis=2)
    scores = q @ np.swapaxes(K, -1, -2) / math.sqrt(q.shape[-1])   # (B, H, 1, S + 1)
    w = np.exp(scores - scores.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    return w @ V, K, V
    # END SOLUTION
