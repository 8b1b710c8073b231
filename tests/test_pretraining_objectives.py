"""book.experiments.pretraining_objectives: sequences, co-occurrence vectors, one pretrainer per objective,
the logistic-regression probe (against PyTorch's L-BFGS on the same objective) and the experiment loop."""
import pytest
import torch

import minigrad
from minigrad.backend import np
from book.experiments.pretraining_objectives import (OBJECTIVES, EncoderConfig, ProbeData, SpecialIds,
                                                         cooccurrence_embeddings, crts_clusters,
                                                         fit_logistic_regression, make_pretrainer, probe_accuracy,
                                                         pretrain_and_probe, random_encoder, sequences, time_steps,
                                                         train_tokenizer, with_cls_sep)

SPECIAL = SpecialIds(pad=60, cls=61, sep=62, mask=63, vocab_size=64)
TINY = EncoderConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                     learning_rate=3e-3, warmup_steps=0, total_steps=1000)


def _options(name):
    if name == "electra":
        return {"generator_fraction": 0.5}
    if name == "crts":
        return {"token_clusters": np.arange(64) % 4}
    return {}


def test_tokenizer_special_ids_are_the_last_four():
    tok = train_tokenizer("to be or not to be, that is the question " * 20, vocab_size=280)
    special = SpecialIds.of(tok)
    assert special.all == (276, 277, 278, 279) and special.vocab_size == 280
    assert tok.decode([special.cls]) == "[CLS]"


def test_sequences_are_framed_windows_of_the_stream():
    stream = np.arange(100, dtype=np.uint16) % 50
    batch = sequences(stream, 5, 12, np.random.default_rng(0), SPECIAL)
    assert batch.shape == (5, 12) and batch.dtype == np.int64
    assert (batch[:, 0] == SPECIAL.cls).all() and (batch[:, -1] == SPECIAL.sep).all()
    for row in batch[:, 1:-1]:                                                  # consecutive stream tokens
        assert ((row[1:] - row[:-1]) % 50 == 1).all()
    again = sequences(stream, 5, 12, np.random.default_rng(0), SPECIAL)
    assert (batch == again).all()
    assert with_cls_sep(np.zeros((2, 3), dtype=np.int64), SPECIAL).tolist() == [[61, 0, 0, 0, 62]] * 2
    with pytest.raises(ValueError, match="length >= 3"):
        sequences(stream, 2, 2, np.random.default_rng(0), SPECIAL)


def test_cooccurrence_embeddings_give_interchangeable_tokens_one_vector():
    # tokens 3 and 4 are used in exactly the same contexts (after 1, before 2); 5 never occurs
    stream = np.array([0, 1, 3, 2, 0, 1, 4, 2] * 50 + [0, 2, 1, 0])
    vectors = cooccurrence_embeddings(stream, 6, dim=4, window=1)
    assert vectors.shape == (6, 4)
    assert np.allclose(vectors[3], vectors[4]) and np.linalg.norm(vectors[3]) > 0.1
    assert not np.allclose(vectors[3], vectors[1])
    assert np.allclose(vectors[5], 0)
    clusters = crts_clusters(stream, SpecialIds(0, 1, 2, 5, vocab_size=6), num_clusters=4, dim=4)
    assert clusters[3] == clusters[4] and len(set(clusters.tolist())) == 4


@pytest.mark.parametrize("name", OBJECTIVES)
def test_each_objective_learns_a_fixed_batch(name):
    """Twenty steps on one batch bring its loss down: the draws, the loss and the update are wired up."""
    rng = np.random.default_rng(0)
    batch = sequences(rng.integers(0, 60, 500), 8, 16, rng, SPECIAL)
    trainer = make_pretrainer(name, TINY, SPECIAL, **_options(name))
    losses = [trainer.step(batch, np.random.default_rng(1))["loss"] for _ in range(20)]  # the same draws
    assert losses[-1] < 0.7 * losses[0], f"{name}: {losses[0]:.3f} -> {losses[-1]:.3f}"
    assert trainer.steps == 20 and trainer.seconds > 0


def test_crts_counts_move_by_one_per_replaced_token_in_the_step():
    rng = np.random.default_rng(2)
    batch = sequences(rng.integers(0, 60, 500), 8, 16, rng, SPECIAL)
    trainer = make_pretrainer("crts", TINY, SPECIAL, **_options("crts"))
    draws = np.random.default_rng(3)
    corrupted = trainer.corrupt(batch, np.random.default_rng(3))
    trainer.step(batch, draws)
    replaced = int((corrupted != batch).sum())
    assert replaced > 0 and np.abs(trainer.counts - 1).sum() <= replaced     # +-1 each (some may cancel)
    assert (trainer.counts - 1).sum() % 2 == replaced % 2


def test_electra_probes_the_discriminator_and_pays_for_the_generator():
    trainer = make_pretrainer("electra", TINY, SPECIAL, generator_fraction=0.5)
    stats = trainer.step(sequences(np.arange(200) % 60, 4, 16, np.random.default_rng(0), SPECIAL),
                         np.random.default_rng(1))
    assert set(stats) == {"loss", "mlm_loss", "disc_loss", "replaced_fraction"}
    assert stats["loss"] == pytest.approx(stats["mlm_loss"] + 50 * stats["disc_loss"], rel=1e-5)
    assert trainer.encoders() == [(16, 1), (8, 1)]
    rts = make_pretrainer("rts", TINY, SPECIAL)
    assert trainer.flops_per_step(4, 16) > rts.flops_per_step(4, 16)
    ids = sequences(np.arange(200) % 60, 3, 16, np.random.default_rng(0), SPECIAL)
    hidden = trainer.model.discriminator.electra(minigrad.tensor(ids)).data          # (3, 16, 16)
    assert np.allclose(trainer.pooled_features(ids, batch_size=2), hidden[:, 1:-1].mean(1), atol=1e-6)


def test_flops_count_every_linear_layer_and_attention():
    trainer = make_pretrainer("rts", TINY, SPECIAL)
    H, V = 16, 64
    per_layer = 4 * H * H + 2 * 4 * H * H                                   # Q K V O, the two FFN matrices
    head = H * H + 2 * H                                                     # transform, decoder to 2 classes
    assert trainer.flops_per_step(2, 10) == 6 * (per_layer + head + 2 * 10 * H) * 2 * 10
    mlm = make_pretrainer("mlm", TINY, SPECIAL)
    assert mlm.flops_per_step(2, 10) == 6 * (per_layer + H * H + H * V + 2 * 10 * H) * 2 * 10


def test_seeded_pretrainers_start_from_the_same_encoder():
    a = make_pretrainer("mlm", TINY, SPECIAL, seed=4).model.bert.state_dict()
    b = random_encoder(TINY, SPECIAL, seed=4).model.bert.state_dict()
    c = make_pretrainer("mlm", TINY, SPECIAL, seed=5).model.bert.state_dict()
    assert all(np.array_equal(a[k].data if hasattr(a[k], "data") else a[k], b[k].data if hasattr(b[k], "data")
                              else b[k]) for k in a)
    assert not all(np.array_equal(np.asarray(getattr(a[k], "data", a[k])), np.asarray(getattr(c[k], "data", c[k])))
                   for k in a)
    with pytest.raises(ValueError, match="unknown objective"):
        make_pretrainer("bart", TINY, SPECIAL)


def _torch_logistic_regression(X, y, l2):
    """The same objective solved by PyTorch's L-BFGS in float64."""
    Z = torch.tensor((X - X.mean(0)) / (X.std(0) + 1e-8))
    W = torch.zeros(X.shape[1], int(y.max()) + 1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(int(y.max()) + 1, dtype=torch.float64, requires_grad=True)
    target = torch.tensor(y)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Z @ W + b, target) + l2 / 2 * (W ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return torch.cat([W, b[None]]).detach().numpy()


def test_logistic_regression_reaches_the_optimum_of_its_objective():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 6)) * [1, 2, 3, 0.5, 1, 5] + 3
    y = (X[:, :3] @ rng.standard_normal((3, 3))).argmax(1) ^ (rng.random(300) < 0.1)  # noisy labels
    y = np.where(y > 2, 0, y)
    predict = fit_logistic_regression(X, y, l2=1e-2, iterations=3000)
    reference = _torch_logistic_regression(X, y, 1e-2)
    # softmax weights are defined up to a constant per row: compare centred weights
    ours = predict.weights - predict.weights.mean(1, keepdims=True)
    theirs = reference - reference.mean(1, keepdims=True)
    assert np.allclose(ours, theirs, atol=1e-4), np.abs(ours - theirs).max()


def test_probe_accuracy_on_separable_and_on_random_labels():
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((4, 10)) * 5
    labels = np.repeat(np.arange(4), 50)
    X = centers[labels] + rng.standard_normal((200, 10))
    train, test = np.arange(200) % 4 != 0, np.arange(200) % 4 == 0
    assert probe_accuracy(X[train], labels[train], X[test], labels[test]) == 1.0
    shuffled = rng.permutation(labels)
    assert probe_accuracy(X[train], shuffled[train], X[test], shuffled[test]) < 0.5


def test_pretrain_and_probe_records_each_checkpoint():
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 60, 2000)
    labels = np.repeat([0, 1], 20)
    ids = with_cls_sep(np.where(labels[:, None] == 0, rng.integers(0, 30, (40, 8)), rng.integers(30, 60, (40, 8))),
                       SPECIAL)
    probe = ProbeData(ids, labels, np.arange(40) % 4 != 0, np.arange(40) % 4 == 0)
    trainer = make_pretrainer("rts", TINY, SPECIAL)
    history = pretrain_and_probe(trainer, stream, {"halves": probe, "again": probe}, steps=6, checkpoints=[0, 3, 6],
                                 batch_size=4, length=12, seed=0)
    assert history["step"] == [0, 3, 6] and len(history["loss"]) == 6 and trainer.steps == 6
    assert history["stats_mean"]["loss"] == pytest.approx(history["loss"][-1])  # the last tenth of 6 steps: one
    assert history["seconds"][0] == 0 and history["seconds"][1] < history["seconds"][2] == trainer.seconds
    assert history["probe"]["halves"] == history["probe"]["again"] and len(history["probe"]["halves"]) == 3
    assert all(0.5 <= p <= 1.0 for p in history["probe"]["halves"])        # bag-of-tokens halves: easy


def test_time_steps_interleaves_real_steps_of_every_trainer():
    trainers = [make_pretrainer(name, TINY, SPECIAL, **_options(name)) for name in ("rts", "electra")]
    seconds = time_steps(trainers, np.arange(300) % 60, batch_size=4, length=16, rounds=3)
    assert set(seconds) == {"rts", "electra 0.5"} and all(s > 0 for s in seconds.values())
    assert [t.steps for t in trainers] == [3, 3]
