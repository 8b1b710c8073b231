"""Chapter 04 exercises: pretraining objectives, written on plain NumPy arrays.

Each function stands alone: it needs NumPy and nothing from minigrad. The self-checks in
test_04_masked_language_models.py compare every answer with a PyTorch formulation of the same quantity (torch.where,
cross_entropy, binary_cross_entropy_with_logits, index_put_ with accumulate, autograd) on odd shapes, and the
random ones with many draws against the probabilities they should follow.

Notation (as in the notebooks): token ids (B, T) int64; IGNORE = -100 marks a label with nothing to predict (as
torch's cross_entropy ignores); attention_mask (B, T) is 1 on real tokens and 0 on padding.
"""
import numpy as np

from book.exercises import ExerciseNotDone  # noqa: F401  (the reader's copy raises it)

IGNORE = -100
MASK_ACTION, RANDOM_ACTION, KEEP_ACTION = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# BERT's masked language modeling (notebook 01_objectives, section 1)
# ---------------------------------------------------------------------------------------------

def mlm_actions(u, split=(0.8, 0.1, 0.1)):
    """Exercise 04.1a: turn uniform draws into BERT's 80/10/10 choice for each token.

    u: (B, T) floats in [0, 1). split: the probabilities of (MASK, RANDOM, KEEP).
    returns int64 (B, T): MASK_ACTION where u < split[0], RANDOM_ACTION where split[0] <= u < split[0] + split[1],
    KEEP_ACTION otherwise. (Thresholding one uniform per token is how a categorical draw is made.)
    """
    # BEGIN SOLUTION 04.1 (about 3 lines; see 01_objectives, section 1)
    edges = np.cumsum(split)[:2]                                   # (2,): 0.8, 0.9
    return (u[..., None] >= edges).sum(axis=-1).astype(np.int64)
    # END SOLUTION


def apply_mlm_masking(ids, selected, action, random_ids, mask_id):
    """Exercise 04.1b: BERT's corruption and labels.

    ids, random_ids, action: (B, T) int64; selected: (B, T) bool, the positions to predict.
    returns (inputs, labels), int64 (B, T): at a selected position the input is mask_id (action MASK), random_ids
    (action RANDOM) or the original (action KEEP); elsewhere the original. labels: the original id at the selected
    positions, IGNORE elsewhere. (A KEEP token is still predicted: that is why the model cannot trust its input.)
    """
    # BEGIN SOLUTION 04.1 (about 4 lines; see 01_objectives, section 1)
    inputs = np.where(selected & (action == RANDOM_ACTION), random_ids, ids)
    inputs = np.where(selected & (action == MASK_ACTION), mask_id, inputs)
    labels = np.where(selected, ids, IGNORE)
    return inputs.astype(np.int64), labels.astype(np.int64)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# ELECTRA (notebook 01_objectives, section 2)
# ---------------------------------------------------------------------------------------------

def gumbel_max_sample(logits, u, temperature=1.0):
    """Exercise 04.2: sample from softmax(logits / temperature) with the Gumbel-max trick.

    logits: (..., V); u: (..., V) uniform draws in (0, 1). returns int64 (...,): argmax_v (z_v / temperature + g_v)
    with g = -log(-log u), the Gumbel noise. No softmax, no cumulative sum: the argmax of perturbed logits is an
    exact sample, and it is a function of the noise, so ELECTRA passes no gradient through it.
    """
    # BEGIN SOLUTION 04.2 (about 2 lines; see 01_objectives, section 2)
    g = -np.log(-np.log(u))
    return np.argmax(logits / temperature + g, axis=-1).astype(np.int64)
    # END SOLUTION


def replaced_labels(original, corrupted, attention_mask):
    """Exercise 04.3: the discriminator's labels.

    original, corrupted: (B, T) int64; attention_mask: (B, T) 0/1. returns int64 (B, T): 1 where the corrupted id
    differs from the original on a real token, 0 elsewhere. A generator sample that happens to equal the original
    is labeled 0 ("original"): it IS the original token.
    """
    # BEGIN SOLUTION 04.3 (one line; see 01_objectives, section 2)
    return ((original != corrupted) & (attention_mask != 0)).astype(np.int64)
    # END SOLUTION


def electra_loss(gen_logits, mlm_labels, disc_logits, disc_labels, attention_mask, disc_weight=50.0):
    """Exercise 04.4: ELECTRA's loss and its gradients with respect to both sets of logits.

    gen_logits: (B, T, V) the generator's; mlm_labels: (B, T) original ids at the masked positions, IGNORE elsewhere;
    disc_logits: (B, T) one score per token; disc_labels: (B, T) 0/1; attention_mask: (B, T) 0/1.
        L_MLM = mean over the N labeled positions of -log softmax(gen_logits)[label]
        L_D   = mean over the M real tokens (mask 1) of BCE(sigmoid(disc_logit), disc_label)
        L     = L_MLM + disc_weight * L_D
    returns (L, dL/dgen_logits (B, T, V), dL/ddisc_logits (B, T)). Hints: d CE / d z = softmax(z) - onehot(label);
    d BCE / d x = sigmoid(x) - y; compute log-softmax and BCE stably (no overflow for |x| ~ 1000).
    """
    # BEGIN SOLUTION 04.4 (about 14 lines; see 01_objectives, section 2)
    labeled = mlm_labels != IGNORE                                           # (B, T)
    n = labeled.sum()
    z = gen_logits - gen_logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))                # (B, T, V)
    safe = np.where(labeled, mlm_labels, 0)
    nll = -np.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0]       # (B, T)
    mlm = (nll * labeled).sum() / n
    d_gen = np.exp(log_p)
    np.put_along_axis(d_gen, safe[..., None], np.take_along_axis(d_gen, safe[..., None], axis=-1) - 1, axis=-1)
    d_gen *= labeled[..., None] / n
    real = attention_mask != 0
    m = real.sum()
    x, y = disc_logits, disc_labels
    bce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))            # (B, T), stable
    disc = (bce * real).sum() / m
    sigmoid = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
    d_disc = disc_weight * (sigmoid - y) * real / m
    return mlm + disc_weight * disc, d_gen, d_disc
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# C-RTS (notebook 01_objectives, section 4)
# ---------------------------------------------------------------------------------------------

def target_cluster_probabilities(counts, beta=2.0):
    """Exercise 04.5: C-RTS's distribution of replacement clusters.

    counts: C (K, K). returns P (K, K), row s = softmax(beta * minmax(C[s])), minmax(r) = (r - min r) / (max r - min r).
    A flat row (max == min) has minmax 0 everywhere, so its distribution is uniform (no division by zero, no warning).
    """
    # BEGIN SOLUTION 04.5 (about 5 lines; see 01_objectives, section 4)
    low = counts.min(axis=1, keepdims=True)
    span = counts.max(axis=1, keepdims=True) - low
    scores = beta * (counts - low) / np.where(span == 0, 1.0, span)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
    # END SOLUTION


def update_cluster_counts(counts, token_clusters, original, corrupted, predictions, attention_mask):
    """Exercise 04.6: C-RTS's count update after one step.

    counts: C (K, K) (not modified); token_clusters: (V,) the cluster of each token id; original, corrupted,
    predictions, attention_mask: (B, T), predictions 1 = "replaced". For every real position where the token was
    replaced (corrupted != original): C[c(original), c(corrupted)] += 1 if the discriminator missed it (predicted 0),
    -1 if it caught it. Every position counts, also when a batch hits the same (s, k) pair many times.
    returns the new C (a new array).
    """
    # BEGIN SOLUTION 04.6 (about 5 lines; see 01_objectives, section 4)
    replaced = (original != corrupted) & (attention_mask != 0)
    step = np.where(predictions[replaced] == 1, -1, 1)
    out = counts.copy()
    np.add.at(out, (token_clusters[original[replaced]], token_clusters[corrupted[replaced]]), step)
    return out
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# MEAP (notebook 02_meap)
# ---------------------------------------------------------------------------------------------

def meap_inputs_and_targets(tokens, u, ratio, mask_id):
    """Exercise 04.7: MEAP's input and target for a decoder-only model.

    tokens: (B, T + 1) int64; u: (B, T) distinct uniform draws, one per input position; ratio: the masked fraction.
    Each row masks its own n = max(1, int(ratio * T)) input positions: those with the n smallest u in that row
    (a uniform choice without replacement, different in every row). returns (inputs, targets), int64 (B, T):
    inputs = tokens[:, :T] with mask_id at the masked positions; targets = tokens[:, 1:], the ORIGINAL next tokens
    (a masked input's next token is still predicted, and so is a masked token when it is a target).
    """
    # BEGIN SOLUTION 04.7 (about 6 lines; see 02_meap, section 1)
    T = tokens.shape[1] - 1
    n = max(1, int(ratio * T))
    rank = np.argsort(np.argsort(u, axis=1), axis=1)                          # (B, T): 0 for the smallest u
    inputs = np.where(rank < n, mask_id, tokens[:, :T])
    return inputs.astype(np.int64), tokens[:, 1:].astype(np.int64)
    # END SOLUTION
