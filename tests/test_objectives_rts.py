"""book.objectives.rts: RTS, C-RTS and SLM.

- RTS: BertForTokenDetection against a PyTorch twin (transformers' BertModel + the same head written in torch), fed
  the same substitution draws: the two-class loss over the non-padding tokens and every gradient, float64 and float32.
- C-RTS: the cluster probabilities and the count update against hand-worked examples (numbers written in the test),
  and the cluster draws' statistics; the vocabulary's k-means against scipy.cluster.vq.kmeans2 from the same
  initial centroids, and its guarantees (nearest centroid, no empty cluster, same rng -> same clusters).
- SLM: no [MASK] anywhere, every selected token swapped, the originals predicted at the swapped positions;
  BertForMaskedLM's SLM loss and gradients against transformers' BertForMaskedLM.
"""
import math
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
import transformers  # noqa: E402
from transformers.models.bert.modeling_bert import BertPredictionHeadTransform  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad.backend import np  # noqa: E402
from book.models.bert import BertConfig  # noqa: E402
from book.objectives.mlm import (IGNORE_INDEX, RANDOM, BertForMaskedLM, apply_mlm_masking,  # noqa: E402
                                     maskable_positions, mlm_loss)
from book.objectives.rts import (BertForTokenDetection, cluster_probabilities, cluster_vocabulary,  # noqa: E402
                                     detection_labels, draw_cluster_substitution, draw_random_substitution,
                                     draw_swaps, kmeans, substitute_tokens, token_detection_loss,
                                     update_cluster_counts)
from book.testing import TOLERANCES, assert_close, check_against_torch, random_array  # noqa: E402

PAD, CLS, SEP, MASK_ID = 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK_ID)
TINY = dict(vocab_size=21, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
            max_position_embeddings=16, type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _batch(lengths, T, vocab_size, seed):
    rng = np.random.default_rng(seed)
    mask = (np.arange(T) < np.array(lengths)[:, None]).astype(np.int64)
    ids = np.where(mask == 1, rng.integers(len(SPECIAL), vocab_size, size=(len(lengths), T)), PAD)
    ids[:, 0] = CLS
    ids[np.arange(len(lengths)), np.array(lengths) - 1] = SEP
    return ids.astype(np.int64), mask


def _assert_15_percent_per_row(selected, maskable):
    """round(0.15 m) selected tokens (at least one) in each row of m maskable ones, none elsewhere."""
    assert not (selected & ~maskable).any()
    m = maskable.sum(axis=1)
    assert (selected.sum(axis=1) == np.where(m > 0, np.maximum(1, np.round(0.15 * m)), 0)).all()


def _randomize(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.uniform_(0.5, 1.5) if name.endswith("LayerNorm.weight") else p.normal_(0.0, 0.3)
    return model


class TorchTokenDetection(torch.nn.Module):
    """The PyTorch twin: transformers' BertModel, then transform (dense, GELU, LayerNorm) and a decoder to 2 classes."""

    def __init__(self, config):
        super().__init__()
        self.bert = transformers.BertModel(config, add_pooling_layer=False)
        self.cls = torch.nn.Module()
        self.cls.predictions = torch.nn.Module()
        self.cls.predictions.transform = BertPredictionHeadTransform(config)
        self.cls.predictions.decoder = torch.nn.Linear(config.hidden_size, 2, bias=False)
        self.cls.predictions.bias = torch.nn.Parameter(torch.zeros(2))
        self.cls.predictions.decoder.bias = self.cls.predictions.bias

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        return self.cls.predictions.decoder(self.cls.predictions.transform(hidden))


def _hf_config():
    return transformers.BertConfig(**TINY, pad_token_id=PAD, attn_implementation="eager")


# ---- RTS --------------------------------------------------------------------------------------------

def test_random_substitution_draws():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 33, size=2000)
    ids, mask = _batch(lengths, 32, 40, 1)
    maskable = maskable_positions(ids, SPECIAL, mask)
    selected, replacement = draw_random_substitution(maskable, rng, vocab_size=40)
    _assert_15_percent_per_row(selected, maskable)
    N = selected.sum()
    counts = np.bincount(replacement[selected], minlength=40)
    assert counts.size == 40 and ((counts - N / 40) ** 2 / (N / 40)).sum() < 39 + 6 * np.sqrt(2 * 39)
    corrupted = substitute_tokens(ids, selected, replacement)
    assert (corrupted[~selected] == ids[~selected]).all() and (corrupted[selected] == replacement[selected]).all()


def test_detection_labels_by_hand():
    ids = np.array([[CLS, 10, 11, 12, SEP, PAD]])
    corrupted = np.array([[CLS, 17, 11, 5, SEP, PAD]])                           # 11 was drawn as its own replacement
    labels = detection_labels(ids, corrupted, np.array([[1, 1, 1, 1, 1, 0]]))
    assert labels.tolist() == [[0, 1, 0, 1, 0, IGNORE_INDEX]]
    with pytest.raises(ValueError, match=r"detection_labels: corrupted_ids of shape \(1, 5\) do not match"):
        detection_labels(ids, corrupted[:, :5])


def test_token_detection_loss_matches_torch():
    labels = np.array([[0, 1, 0, 1, 0], [1, 0, 0, IGNORE_INDEX, IGNORE_INDEX], [0, 1, -100, -100, -100]])
    check_against_torch(lambda z, y: token_detection_loss(z, y),
                        lambda z, y: TF.cross_entropy(z.reshape(-1, 2), y.reshape(-1), ignore_index=-100),
                        [random_array((3, 5, 2)), labels])
    with pytest.raises(ValueError, match=r"token_detection_loss: logits must have shape \(\.\.\., 2\), got \(3, 5"):
        token_detection_loss(mg.zeros(3, 5, 3), labels)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rts_loss_and_every_gradient_match_torch(dtype):
    ids, mask = _batch((7, 5, 2), 7, TINY["vocab_size"], 2)
    types = ((np.arange(7) >= 3)[None] * mask).astype(np.int64)
    rng = np.random.default_rng(3)
    selected, replacement = draw_random_substitution(maskable_positions(ids, SPECIAL, mask), rng,
                                                     TINY["vocab_size"], rate=0.5)
    first = np.argmax(selected[0])
    replacement[0, first] = ids[0, first]                                        # one "substitution" by itself: label 0
    corrupted = substitute_tokens(ids, selected, replacement)
    labels = detection_labels(ids, corrupted, mask)
    assert labels[0, first] == 0 and (labels == 1).sum() >= 2

    torch.manual_seed(0)
    twin = _randomize(TorchTokenDetection(_hf_config()).to(getattr(torch, dtype)).eval())
    ours = BertForTokenDetection(BertConfig(**TINY, pad_token_id=PAD)).to(np.dtype(dtype)).eval()
    assert sorted(ours.state_dict()) == sorted(twin.state_dict())
    ours.load_state_dict(twin.state_dict())

    logits = ours(mg.tensor(corrupted), mg.tensor(mask), mg.tensor(types))
    loss = token_detection_loss(logits, labels)
    t_ids = torch.where(torch.from_numpy(selected), torch.from_numpy(replacement), torch.from_numpy(ids))
    t_labels = torch.where(torch.from_numpy(mask) == 1, (t_ids != torch.from_numpy(ids)).long(), -100)
    t_logits = twin(t_ids, torch.from_numpy(mask), torch.from_numpy(types))
    t_loss = TF.cross_entropy(t_logits.reshape(-1, 2), t_labels.reshape(-1), ignore_index=-100)
    tol = TOLERANCES[dtype]
    assert_close(f"[{dtype}] logits", logits.data, t_logits.detach().numpy(), **tol)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)
    loss.backward()
    t_loss.backward()
    params = dict(twin.named_parameters())
    assert sorted(n for n, _ in ours.named_parameters()) == sorted(params)
    for name, p in ours.named_parameters():
        assert p.grad.dtype == p.dtype, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, params[name].grad.numpy(), **tol)


# ---- C-RTS ------------------------------------------------------------------------------------------

def test_cluster_probabilities_by_hand():
    counts = np.array([[1, 3, 2], [5, 5, 5], [-4, 0, 4]])
    got = cluster_probabilities(counts, beta=2.0)
    # row 0: minmax [0, 1, 0.5] -> softmax([0, 2, 1]); row 1: flat -> uniform; row 2: minmax [0, 0.5, 1]
    e = [math.exp(0), math.exp(2), math.exp(1)]
    want = np.array([[e[0], e[1], e[2]], [1, 1, 1], [e[0], e[2], e[1]]], dtype=float)
    want /= want.sum(axis=1, keepdims=True)
    assert_close("cluster probabilities", got, want, 1e-12, 1e-15)


def test_count_update_by_hand():
    # vocabulary of 8 tokens in 3 clusters
    clusters = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    counts = np.ones((3, 3), dtype=np.int64)
    original = np.array([[1, 2, 5, 6, 3, 7],
                         [4, 5, 0, 2, 2, 0]])
    corrupted = np.array([[1, 6, 2, 7, 3, 7],
                          [6, 6, 3, 2, 4, 0]])
    predictions = np.array([[1, 0, 1, 0, 1, 0],
                            [0, 1, 0, 1, 0, 1]])
    attention = np.array([[1, 1, 1, 1, 1, 1],
                          [1, 1, 1, 1, 1, 0]])
    # replaced positions (original != corrupted, not padding), their clusters and the detector's verdict:
    #   (0,1) 2->6: cluster 1 -> 2, predicted 0 (missed)   -> C[1,2] += 1
    #   (0,2) 5->2: cluster 2 -> 1, predicted 1 (caught)   -> C[2,1] -= 1
    #   (0,3) 6->7: cluster 2 -> 0, predicted 0 (missed)   -> C[2,0] += 1
    #   (1,0) 4->6: cluster 1 -> 2, predicted 0 (missed)   -> C[1,2] += 1   (a second time: both count)
    #   (1,1) 5->6: cluster 2 -> 2, predicted 1 (caught)   -> C[2,2] -= 1
    #   (1,2) 0->3: cluster 0 -> 1, predicted 0 (missed)   -> C[0,1] += 1
    #   (1,4) 2->4: cluster 1 -> 1, predicted 0 (missed)   -> C[1,1] += 1
    # not counted: unchanged tokens (0,0), (0,4), (0,5), (1,3) whatever the prediction, and padding (1,5)
    want = [[1, 2, 1],
            [1, 2, 3],
            [2, 0, 0]]
    got = update_cluster_counts(counts, original, corrupted, predictions, clusters, attention)
    assert got.tolist() == want
    assert counts.tolist() == [[1] * 3] * 3                                      # the input is not modified
    with pytest.raises(ValueError, match=r"update_cluster_counts: counts must be a square \(K, K\) matrix"):
        update_cluster_counts(np.ones((3, 2)), original, corrupted, predictions, clusters)
    with pytest.raises(ValueError, match=r"token_clusters must be a \(vocab_size,\) integer array of clusters in "
                                         r"\[0, 2\)"):
        update_cluster_counts(np.ones((2, 2)), original, corrupted, predictions, clusters)


def test_cluster_draws_follow_the_counts():
    rng = np.random.default_rng(5)
    clusters = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 0, 2, 2, 1, 0])      # 16 tokens: clusters 0, 1, 2
    counts = np.array([[1, 4, 2], [0, 0, 0], [3, 3, -3]])
    B, T = 3000, 20
    ids = rng.integers(4, 16, size=(B, T))
    ids[:, 0], ids[:, -1] = CLS, SEP
    maskable = maskable_positions(ids, SPECIAL)
    selected, replacement = draw_cluster_substitution(ids, maskable, rng, clusters, counts, rate=0.15)
    _assert_15_percent_per_row(selected, maskable)
    assert (replacement[~selected] == ids[~selected]).all()
    source, target = clusters[ids[selected]], clusters[replacement[selected]]
    P = cluster_probabilities(counts)
    for s in range(3):
        n = (source == s).sum()
        freq = np.bincount(target[source == s], minlength=3) / n
        assert np.all(np.abs(freq - P[s]) < 4.5 * np.sqrt(P[s] * (1 - P[s]) / n) + 1e-12), (s, freq, P[s])
    # within a target cluster, every token of it is equally likely
    for k in range(3):
        members = np.flatnonzero(clusters == k)
        picked = replacement[selected][target == k]
        freq = np.bincount(picked, minlength=16)[members] / picked.size
        assert np.abs(freq - 1 / members.size).max() < 4.5 * np.sqrt(1 / members.size / picked.size), k


def test_every_cluster_needs_a_token():
    with pytest.raises(ValueError, match=r"draw_cluster_substitution: clusters \[1\] have no token"):
        draw_cluster_substitution(np.array([[4, 5]]), np.ones((1, 2), dtype=bool), np.random.default_rng(0),
                                  np.array([0, 0, 0, 0, 2, 2]), np.ones((3, 3)))


# ---- SLM --------------------------------------------------------------------------------------------

def test_slm_swaps_every_selected_token_and_never_masks():
    rng = np.random.default_rng(6)
    ids, mask = _batch(rng.integers(3, 25, size=1500), 24, 30, 7)
    maskable = maskable_positions(ids, SPECIAL, mask)
    draws = draw_swaps(maskable, rng, vocab_size=30)
    assert (draws.action[draws.selected] == RANDOM).all()
    swapped, labels = apply_mlm_masking(ids, draws, mask_token_id=None)
    # [MASK] appears only where the uniform replacement happened to be its id
    assert ((swapped == MASK_ID) == (draws.selected & (draws.random_ids == MASK_ID))).all()
    assert (swapped[draws.selected] == draws.random_ids[draws.selected]).all()
    assert (swapped[~draws.selected] == ids[~draws.selected]).all()
    assert (labels[draws.selected] == ids[draws.selected]).all() and (labels[~draws.selected] == IGNORE_INDEX).all()
    _assert_15_percent_per_row(draws.selected, maskable)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_slm_loss_and_every_gradient_match_torch(dtype):
    ids, mask = _batch((6, 7, 3), 7, TINY["vocab_size"], 8)
    types = np.zeros_like(ids)
    draws = draw_swaps(maskable_positions(ids, SPECIAL, mask), np.random.default_rng(9), TINY["vocab_size"], rate=0.5)
    swapped, labels = apply_mlm_masking(ids, draws, None)

    torch.manual_seed(1)
    hf = _randomize(transformers.BertForMaskedLM(_hf_config()).to(getattr(torch, dtype)).eval())
    ours = BertForMaskedLM(BertConfig(**TINY, pad_token_id=PAD)).to(np.dtype(dtype)).eval()
    ours.load_state_dict(hf.state_dict())
    loss = mlm_loss(ours(mg.tensor(swapped), mg.tensor(mask), mg.tensor(types)), labels)
    selected = torch.from_numpy(draws.selected)
    t_ids = torch.where(selected, torch.from_numpy(draws.random_ids), torch.from_numpy(ids))
    t_labels = torch.where(selected, torch.from_numpy(ids), -100)
    t_logits = hf(input_ids=t_ids, attention_mask=torch.from_numpy(mask), token_type_ids=torch.from_numpy(types)).logits
    t_loss = TF.cross_entropy(t_logits.reshape(-1, TINY["vocab_size"]), t_labels.reshape(-1), ignore_index=-100)
    tol = TOLERANCES[dtype]
    assert_close(f"[{dtype}] SLM loss", loss.data, t_loss.detach().numpy(), **tol)
    loss.backward()
    t_loss.backward()
    params = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, params[name].grad.numpy(), **tol)


# ---- the vocabulary's clusters ----------------------------------------------------------------------

def _blobs(centers, per_blob, spread, seed):
    rng = np.random.default_rng(seed)
    centers = np.asarray(centers, dtype=np.float64)
    points = np.concatenate([c + spread * rng.standard_normal((per_blob, centers.shape[1])) for c in centers])
    return points, np.repeat(np.arange(len(centers)), per_blob)


@pytest.mark.parametrize("iterations", [1, 2, 7])
def test_kmeans_matches_scipy_from_the_same_centroids(iterations):
    from scipy.cluster.vq import kmeans2, vq
    rng = np.random.default_rng(3)
    points = rng.standard_normal((200, 5))                  # no structure: the centroids move a lot
    start = points[rng.choice(200, 6, replace=False)]
    assignment, centroids = kmeans(points, start, iterations)
    reference, _ = kmeans2(points, start.copy(), iter=iterations, minit="matrix", missing="raise")
    assert_close(f"centroids after {iterations} iterations", centroids, reference, atol=1e-10, rtol=1e-10)
    assert (assignment == vq(points, reference)[0]).all()


def test_cluster_vocabulary_finds_separated_groups_and_assigns_each_token_to_its_nearest_centroid():
    points, truth = _blobs([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], 30, 0.5, seed=4)
    found = 0
    for seed in range(10):
        clusters = cluster_vocabulary(points, 4, np.random.default_rng(seed))
        assert clusters.shape == (120,) and clusters.dtype == np.int64
        centroids = np.stack([points[clusters == k].mean(0) for k in range(4)])
        nearest = ((points[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
        assert (clusters == nearest).all(), f"seed {seed}: a token is not in the cluster of its nearest centroid"
        found += len({(t, c) for t, c in zip(truth, clusters)}) == 4      # the blobs, up to renaming
    # k-means++ puts two starts in one blob with probability about 2% (then Lloyd stays in that local optimum)
    assert found >= 8, f"the blobs were recovered from {found} of 10 starts"


def test_cluster_vocabulary_is_deterministic_given_the_rng_and_depends_on_it():
    points = np.random.default_rng(5).standard_normal((300, 8))
    first = cluster_vocabulary(points, 12, np.random.default_rng(7))
    assert (first == cluster_vocabulary(points, 12, np.random.default_rng(7))).all()
    assert any((first != cluster_vocabulary(points, 12, np.random.default_rng(seed))).any() for seed in range(8, 12))


def test_no_cluster_ends_empty():
    # three far groups and a start with two centroids in one group and one between the others: Lloyd's
    # algorithm leaves a cluster empty, which takes the farthest point
    points, _ = _blobs([[0, 0], [100, 0], [0, 100]], 10, 0.1, seed=6)
    start = np.array([[0.0, 0.0], [0.05, 0.0], [1000.0, 1000.0]])
    assignment, centroids = kmeans(points, start, 5)
    assert (np.bincount(assignment, minlength=3) > 0).all()
    clusters = cluster_vocabulary(points, 30, np.random.default_rng(0))          # one token per cluster
    assert sorted(clusters.tolist()) == list(range(30))


def test_cluster_vocabulary_errors():
    points = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="num_clusters must be in"):
        cluster_vocabulary(points, 11, np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_clusters must be in"):
        cluster_vocabulary(points, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(vocab_size, D\)"):
        cluster_vocabulary(points[0], 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fewer than num_clusters"):
        cluster_vocabulary(np.repeat(points[:3], 4, axis=0), 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="one D"):
        kmeans(points, points[:2, :2], 3)
