"""RTS, C-RTS and SLM from Structural Self-Supervised Objectives for Transformers (Di Liello, 2023,
arXiv:2309.08272, part I; first published by Di Liello et al., 2022): token substitution, no generator, no [MASK].

RTS (random token substitution): replace a fraction (0.15) of the tokens by uniformly random ids; a binary head
(H -> 2) says, for every non-padding token, whether it was replaced:
    L_RTS = mean over the non-padding tokens t of CE(head(h_t), y_t),   y_t = [x_corr_t != x_t]

C-RTS (cluster-based RTS): the vocabulary is partitioned into K clusters (c(v) the cluster of token v) and a
count matrix C (K x K, starting at ones) remembers which substitutions fooled the discriminator. A selected token
of cluster s is replaced by a uniform token of a cluster drawn from
    P(target = k | s) = softmax_k(beta * minmax(C[s]))_k,  minmax(r) = (r - min r) / (max r - min r)  (0 if flat),
beta = 2. After each step, for every position where the token was replaced (x_corr_t != x_t, not padding):
    C[c(x_t), c(x_corr_t)] += 1 if the discriminator was wrong there (predicted "original"), -1 if right.
So replacements that the discriminator misses become more frequent: a curriculum without a generator.

SLM (swapped language modeling): MLM without [MASK]: every selected token is replaced by a uniformly random id
(Di Liello's run: probability_masked 0, probability_replaced 1, probability_unchanged 0) and the model predicts
the ORIGINAL id over the vocabulary at the selected positions only (labels IGNORE_INDEX elsewhere), with the
MLM loss and head.

Decisions on the points the papers leave open, checked against the official code, lucadiliello/transformers-framework
(language/modeling.py, pipelines/cluster_random_token_detection/base.py), and tested in tests/test_objectives_rts.py:
- The label "replaced" is y = [x_corr != x]: a random id that happens to equal the original is labeled 0, as in
  ELECTRA. The official code labels every selected position 1, which matters for C-RTS, where the drawn token
  can be the original with probability 1/|cluster|.
- The counts are updated only at replaced positions, and every such position adds its +-1 (np.add.at). The
  official code, by default, updates at every non-padding position (untouched tokens land on the diagonal
  C[s, s]; its --update_only_on_predictions flag restricts to changed tokens, as here) and writes the increments
  with an indexed `+=`, which keeps one increment per (s, k) pair when a batch repeats it.
- Positions are selected as in MLM (mlm.draw_positions: round(0.15 m) per row, whole words optional); the
  official code draws a Bernoulli(0.15) per token. Replacement ids are uniform over the whole vocabulary.
- Di Liello's runs scale the RTS loss by 50 (--td_weight 50); the loss here is unscaled (multiply if you need it).

`cluster_vocabulary` makes the clusters: k-means (Lloyd's algorithm, k-means++ start) of token embeddings.

`BertForTokenDetection`: BertModel + BERT's prediction-head transform + a decoder to 2 classes, with the names of
transformers-framework's BertForTokenDetection (bert.*, cls.predictions.{transform.*, decoder.*, bias}).
"""
from dataclasses import replace

from minigrad import backend, nn
from minigrad.backend import np
from book.models.bert import BertConfig, BertModel
from book.objectives.mlm import (IGNORE_INDEX, BertOnlyHead, MaskingDraws, as_array, draw_mlm_masking,
                                     draw_positions, token_cross_entropy)

SLM_SPLIT = (0.0, 1.0, 0.0)          # MASK, RANDOM, KEEP: every selected token is swapped


# ---- RTS ----------------------------------------------------------------------------------------

def draw_random_substitution(maskable, rng, vocab_size, rate=0.15, word_ids=None):
    """(selected bool (B, T), replacement_ids int64 (B, T) uniform in [0, vocab_size))."""
    selected = draw_positions(maskable, rng, rate, word_ids)
    return selected, rng.integers(0, vocab_size, size=selected.shape, dtype=np.int64)


def substitute_tokens(input_ids, selected, replacement_ids):
    """The corrupted ids: replacement_ids where selected, input_ids elsewhere (int64 (B, T))."""
    ids, selected, replacement = as_array(input_ids), as_array(selected), as_array(replacement_ids)
    if selected.dtype != backend.bool_ or selected.shape != ids.shape or replacement.shape != ids.shape:
        raise ValueError(f"substitute_tokens: expected selected (bool) and replacement_ids of the shape of input_ids "
                         f"{ids.shape}, got {selected.dtype} {selected.shape} and {replacement.shape}")
    return backend.array_module(ids).where(selected, replacement, ids).astype(np.int64)


def detection_labels(input_ids, corrupted_ids, attention_mask=None):
    """y_t = 1 where corrupted_ids differ from input_ids, 0 where equal, IGNORE_INDEX on padding (int64 (B, T))."""
    ids, corrupted = as_array(input_ids), as_array(corrupted_ids)
    if ids.shape != corrupted.shape:
        raise ValueError(f"detection_labels: corrupted_ids of shape {corrupted.shape} do not match input_ids of "
                         f"shape {ids.shape}")
    labels = (ids != corrupted).astype(np.int64)
    if attention_mask is not None:
        labels = backend.array_module(ids).where(as_array(attention_mask) != 0, labels, IGNORE_INDEX)
    return labels


def token_detection_loss(logits, labels):
    """L_RTS: two-class cross-entropy, mean over the positions whose label is not IGNORE_INDEX.
    logits (B, T, 2): class 1 = replaced; labels (B, T) from detection_labels."""
    if logits.ndim < 1 or logits.shape[-1] != 2:
        raise ValueError(f"token_detection_loss: logits must have shape (..., 2), got {logits.shape}")
    return token_cross_entropy("token_detection_loss", logits, labels)


class BertForTokenDetection(nn.Module):
    """forward(input_ids, attention_mask=None, token_type_ids=None) -> logits (B, T, 2)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = replace(config, add_pooling_layer=False)
        self.bert = BertModel(self.config)
        self.cls = BertOnlyHead(self.config, 2)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state   # (B, T, C)
        return self.cls(hidden)                                                           # (B, T, 2)


# ---- C-RTS --------------------------------------------------------------------------------------

def _check_clusters(op, token_clusters, counts):
    clusters, counts = np.asarray(token_clusters), np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"{op}: counts must be a square (K, K) matrix, got shape {counts.shape}")
    K = counts.shape[0]
    if clusters.ndim != 1 or clusters.dtype.kind not in "iu" or clusters.min() < 0 or clusters.max() >= K:
        raise ValueError(f"{op}: token_clusters must be a (vocab_size,) integer array of clusters in [0, {K}) "
                         f"(K from counts of shape {counts.shape}), got {clusters.dtype} {clusters.shape}")
    return clusters, counts


def cluster_probabilities(counts, beta=2.0):
    """P (K, K): row s = softmax(beta * minmax(C[s])), the distribution of target clusters for cluster s."""
    C = np.asarray(counts, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"cluster_probabilities: counts must be a square (K, K) matrix, got shape {C.shape}")
    low = C.min(axis=1, keepdims=True)
    span = C.max(axis=1, keepdims=True) - low
    scores = beta * (C - low) / np.where(span == 0, 1.0, span)                    # (K, K), each row in [0, beta]
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def draw_cluster_substitution(input_ids, maskable, rng, token_clusters, counts, rate=0.15, beta=2.0,
                              word_ids=None):
    """(selected bool (B, T), replacement_ids int64 (B, T)): for each selected token x of cluster s, a target
    cluster k ~ cluster_probabilities(counts, beta)[s], then a uniform token of cluster k. Elsewhere the
    replacement is the token itself. token_clusters: (vocab_size,) cluster of each token; counts: C (K, K)."""
    ids = np.asarray(as_array(input_ids))
    clusters, counts = _check_clusters("draw_cluster_substitution", token_clusters, counts)
    K = counts.shape[0]
    sizes = np.bincount(clusters, minlength=K)                                    # (K,)
    if (sizes == 0).any():
        raise ValueError(f"draw_cluster_substitution: clusters {np.flatnonzero(sizes == 0).tolist()[:5]} have no "
                         f"token; every cluster in [0, {K}) needs at least one")
    selected = draw_positions(maskable, rng, rate, word_ids)
    source = clusters[ids[selected]]                                              # (N,)
    cdf = np.cumsum(cluster_probabilities(counts, beta)[source], axis=1)          # (N, K)
    target = np.minimum((cdf < rng.random((source.size, 1)) * cdf[:, -1:]).sum(axis=1), K - 1)  # (N,)
    members = np.argsort(clusters, kind="stable")                                 # tokens grouped by cluster
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])                         # (K,)
    offset = np.minimum((rng.random(source.size) * sizes[target]).astype(np.int64), sizes[target] - 1)
    replacement = ids.astype(np.int64, copy=True)
    replacement[selected] = members[starts[target] + offset]
    return selected, replacement


def update_cluster_counts(counts, input_ids, corrupted_ids, predictions, token_clusters, attention_mask=None):
    """The counts after one step: C[c(x_t), c(x_corr_t)] += 1 where the discriminator predicted "original" (0)
    for a replaced token, -1 where it predicted "replaced" (1). Only replaced, non-padding positions count.
    predictions: (B, T) 0/1, e.g. logits.argmax(-1). Returns a new (K, K) array; `counts` is not modified."""
    clusters, C = _check_clusters("update_cluster_counts", token_clusters, counts)
    ids, corrupted, preds = (np.asarray(as_array(a)) for a in (input_ids, corrupted_ids, predictions))
    if not ids.shape == corrupted.shape == preds.shape:
        raise ValueError(f"update_cluster_counts: input_ids {ids.shape}, corrupted_ids {corrupted.shape} and "
                         f"predictions {preds.shape} must have one shape")
    replaced = ids != corrupted
    if attention_mask is not None:
        replaced &= np.asarray(as_array(attention_mask)) != 0
    wrong = preds[replaced] != 1                                                  # (N,) the detector missed it
    out = C.copy()
    np.add.at(out, (clusters[ids[replaced]], clusters[corrupted[replaced]]), np.where(wrong, 1, -1))
    return out


def kmeans(points, centroids, iterations=20):
    """Lloyd's algorithm from the given initial centroids: `iterations` times, assign each point to its nearest
    centroid (squared Euclidean distance), then move each centroid to the mean of its points. A cluster left
    empty takes the point farthest from its own centroid, so no cluster ends empty.
    points (N, D), centroids (K, D) -> (assignment int64 (N,) to the final centroids, final centroids (K, D))."""
    X = np.asarray(points, dtype=np.float64)
    C = np.array(centroids, dtype=np.float64)
    if X.ndim != 2 or C.ndim != 2 or C.shape[1] != X.shape[1]:
        raise ValueError(f"kmeans: expected points (N, D) and centroids (K, D) with one D, got {X.shape} and "
                         f"{C.shape}")
    if not 1 <= C.shape[0] <= X.shape[0]:
        raise ValueError(f"kmeans: need between 1 and N = {X.shape[0]} centroids, got {C.shape[0]}")
    if iterations < 0:
        raise ValueError(f"kmeans: iterations must be >= 0, got {iterations}")
    for _ in range(iterations):
        assignment = _nearest_nonempty(X, C)
        sizes = np.bincount(assignment, minlength=C.shape[0])                     # (K,), all >= 1
        sums = np.zeros_like(C)
        np.add.at(sums, assignment, X)
        C = sums / sizes[:, None]                                                 # (K, D)
    return _nearest_nonempty(X, C), C


def _nearest_nonempty(X, C):
    """The nearest centroid of each point; then each empty cluster takes the point farthest from its centroid
    among the clusters with more than one point."""
    distances = (X * X).sum(1)[:, None] - 2 * X @ C.T + (C * C).sum(1)[None, :]  # (N, K)
    assignment = distances.argmin(axis=1)
    for k in np.flatnonzero(np.bincount(assignment, minlength=C.shape[0]) == 0):
        sizes = np.bincount(assignment, minlength=C.shape[0])
        own = distances[np.arange(X.shape[0]), assignment]                        # (N,)
        farthest = np.argmax(np.where(sizes[assignment] > 1, own, -np.inf))
        assignment[farthest] = k
    return assignment.astype(np.int64)


def cluster_vocabulary(embeddings, num_clusters, rng, iterations=20):
    """The clusters of C-RTS: k-means of the token embeddings (vocab_size, D) into num_clusters clusters,
    started from k-means++ centroids (the first a uniform token, each next one a token drawn with probability
    proportional to its squared distance to the nearest centroid so far) drawn from the NumPy Generator rng.
    Returns (vocab_size,) int64 clusters in [0, num_clusters), every cluster non-empty."""
    E = np.asarray(embeddings, dtype=np.float64)
    if E.ndim != 2:
        raise ValueError(f"cluster_vocabulary: embeddings must be a (vocab_size, D) matrix, got shape {E.shape}")
    if not 1 <= num_clusters <= E.shape[0]:
        raise ValueError(f"cluster_vocabulary: num_clusters must be in [1, vocab_size = {E.shape[0]}], got "
                         f"{num_clusters}")
    chosen = [int(rng.integers(E.shape[0]))]
    nearest = ((E - E[chosen[0]]) ** 2).sum(1)                                    # (V,) squared distances
    for _ in range(num_clusters - 1):
        if nearest.sum() <= 0:
            raise ValueError(f"cluster_vocabulary: the embeddings have fewer than num_clusters = {num_clusters} "
                             f"distinct rows")
        chosen.append(int(rng.choice(E.shape[0], p=nearest / nearest.sum())))
        nearest = np.minimum(nearest, ((E - E[chosen[-1]]) ** 2).sum(1))
    return kmeans(E, E[chosen], iterations)[0]


# ---- SLM ----------------------------------------------------------------------------------------

def draw_swaps(maskable, rng, vocab_size, rate=0.15, word_ids=None) -> MaskingDraws:
    """MLM draws with every selected token swapped for a uniformly random id (SLM_SPLIT). Apply them with
    mlm.apply_mlm_masking(input_ids, draws, mask_token_id=None): (swapped ids, labels = originals at the
    swapped positions); train with mlm.mlm_loss and mlm.BertForMaskedLM."""
    return draw_mlm_masking(maskable, rng, vocab_size, rate, SLM_SPLIT, word_ids)
