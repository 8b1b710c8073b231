"""book.objectives.e2s2: the noisy view on hand-made cases and over many draws; the detection loss, the mean
pooling and NT-Xent against PyTorch formulations (outputs and input gradients, float64 and float32, odd sizes,
padding); the whole weighted E2S2 loss of E2S2Model against a PyTorch twin (tests/test_seq2seq.py's
TorchSeq2Seq plus a Linear head): every term and every parameter's gradient. Also the official code's
ignore_index bug, shown by counting."""
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as tF

import minigrad as mg
from minigrad.backend import np
from book.models.seq2seq import Seq2SeqConfig
from book.objectives.e2s2 import (KEPT, OFFICIAL_IGNORE_INDEX, ORDERS, REPLACED, SHUFFLED, E2S2Model,
                                  ReplacementDraws, TrigramDraws, apply_replacement, apply_trigram_shuffle,
                                  class_counts, detection_loss, draw_and_apply_noise, draw_replacement,
                                  draw_trigram_shuffle, nt_xent)
from book.objectives.mlm import IGNORE_INDEX
from book.testing import TOLERANCES, assert_close, check_against_torch, random_array
from tests.test_seq2seq import PAD, TorchSeq2Seq

pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
MASK = 30                                                               # ids >= 30 are special in these examples


# ---- the noisy view -----------------------------------------------------------------------------

def test_trigram_shuffle_hand_made():
    tokens = np.array([10, 11, 12, 13, 14, 15, 16, 17])
    assert ORDERS.tolist() == [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]   # never the identity
    got, labels = apply_trigram_shuffle(tokens, TrigramDraws(np.array([1, 5]), np.array([4, 2])))
    assert got.tolist() == [10, 13, 12, 11, 14, 16, 17, 15]             # 11 12 13 -> 13 12 11; 15 16 17 -> 16 17 15
    assert labels.tolist() == [KEPT, SHUFFLED, SHUFFLED, SHUFFLED, KEPT, SHUFFLED, SHUFFLED, SHUFFLED]
    with pytest.raises(ValueError, match="apply_trigram_shuffle: need increasing trigram starts at least 3 apart"):
        apply_trigram_shuffle(tokens, TrigramDraws(np.array([1, 3]), np.array([0, 0])))


def test_trigram_draws_avoid_masks_and_never_overlap():
    rng = np.random.default_rng(0)
    for n in [3, 5, 20, 41, 64]:
        for _ in range(100):
            can = rng.random(n) > 0.2
            draws = draw_trigram_shuffle(can, rng, rate=0.15)
            covered = np.zeros(n, dtype=int)
            for s in draws.starts:
                covered[s:s + 3] += 1
            assert covered.max() <= 1 and not (covered.astype(bool) & ~can).any()
            assert len(draws.starts) <= round(0.15 * n / 3)
            assert ((draws.orders >= 0) & (draws.orders < 5)).all()
    full = draw_trigram_shuffle(np.ones(60, dtype=bool), rng, rate=0.15)
    assert len(full.starts) == 3                                        # round(0.15 * 60 / 3) when all fit


def test_replacement_hand_made_and_never_the_same_id():
    tokens, labels = np.array([3, 4, 5, 6]), np.array([KEPT, SHUFFLED, KEPT, KEPT])
    got, new_labels = apply_replacement(tokens, labels, ReplacementDraws(np.array([0, 3]), np.array([9, 1])))
    assert got.tolist() == [9, 4, 5, 1] and new_labels.tolist() == [REPLACED, SHUFFLED, KEPT, REPLACED]
    rng = np.random.default_rng(1)
    originals = rng.integers(0, 7, size=50_000)
    draws = draw_replacement(np.ones(50_000, dtype=bool), originals, rng, num_ordinary=7, rate=0.15)
    assert len(draws.positions) == 7500 and (draws.ids != originals[draws.positions]).all()
    counts = np.bincount(draws.ids, minlength=7)
    assert np.abs(counts / 7500 - 1 / 7).max() < 5 * np.sqrt((1 / 7) * (6 / 7) / 7500)   # uniform over ids


def test_noisy_view_labels_every_change_and_spares_masks():
    rng = np.random.default_rng(2)
    masked = np.concatenate([rng.integers(0, 30, size=20), [MASK], rng.integers(0, 30, size=19)])
    noisy, labels = draw_and_apply_noise(masked, rng, num_ordinary=30)
    assert noisy[20] == MASK and labels[20] == KEPT
    assert (noisy[labels == KEPT] == masked[labels == KEPT]).all()
    assert (noisy[labels == REPLACED] != masked[labels == REPLACED]).all()
    assert (labels == SHUFFLED).sum() == 3 * round(0.15 * 40 / 3) and (labels == REPLACED).sum() > 0


def test_the_official_ignore_index_drops_every_shuffled_label():
    labels = np.array([[0, 1, 1, 1, 2, 0, IGNORE_INDEX], [2, 0, 0, 1, 1, 1, 0]])
    assert class_counts(labels).tolist() == [5, 6, 2]                   # all three classes are counted here
    assert class_counts(labels, ignore_index=OFFICIAL_IGNORE_INDEX).tolist() == [5, 0, 2]


# ---- the loss terms against PyTorch --------------------------------------------------------------

def _labels(B, S, lengths, seed):
    labels = np.random.default_rng(seed).integers(0, 3, size=(B, S))
    labels[np.arange(S) >= np.array(lengths)[:, None]] = IGNORE_INDEX   # padding
    return labels


def test_detection_loss_matches_torch():
    labels = _labels(3, 7, [7, 4, 1], seed=0)
    check_against_torch(
        detection_loss,
        lambda logits, y: tF.cross_entropy(logits.reshape(-1, 3), y.reshape(-1), ignore_index=IGNORE_INDEX),
        [random_array((3, 7, 3), seed=1), labels])
    with pytest.raises(ValueError, match=r"detection_loss: expected logits \(B, S, 3\) and labels \(B, S\)"):
        detection_loss(mg.tensor(random_array((2, 5, 2))), mg.tensor(labels[:2, :5]))


def _torch_nt_xent(z1, z2, tau):
    """NT-Xent as SimCLR writes it: for each of the 2B vectors, -log softmax over the 2B - 1 others at its pair."""
    u = tF.normalize(torch.cat([z1, z2]), dim=1)
    n = len(u)
    sim = u @ u.T / tau
    losses = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        positive = others.index((i + n // 2) % n)
        losses.append(-torch.log_softmax(sim[i, others], dim=0)[positive])
    return torch.stack(losses).mean()


@pytest.mark.parametrize("B,C", [(2, 3), (5, 7)])
def test_nt_xent_matches_torch(B, C):
    check_against_torch(lambda a, b: nt_xent(a, b, 0.3), lambda a, b: _torch_nt_xent(a, b, 0.3),
                        [random_array((B, C), seed=2), random_array((B, C), seed=3)])
    with pytest.raises(ValueError, match=r"nt_xent: expected two views of shape \(B, C\) with B >= 2"):
        nt_xent(mg.tensor(random_array((1, 4))), mg.tensor(random_array((1, 4))))


# ---- the whole E2S2 loss ----------------------------------------------------------------------------

def _batch(seed=0):
    """Noisy sources (B=3, lengths 7, 5, 4), mask-only sources (lengths 6, 6, 3), targets (lengths 6, 3, 5)."""
    rng = np.random.default_rng(seed)
    noisy = rng.integers(3, 11, size=(3, 7))
    noisy[1, 5:], noisy[2, 4:] = PAD, PAD
    masked = rng.integers(3, 11, size=(3, 6))
    masked[2, 3:] = PAD
    tgt = rng.integers(3, 9, size=(3, 6))
    tgt[1, 3:], tgt[2, 5:] = PAD, PAD
    tgt_in = np.concatenate([np.full((3, 1), 1), tgt[:, :-1]], axis=1)
    labels = rng.integers(0, 3, size=(3, 7))
    labels[noisy == PAD] = IGNORE_INDEX
    return noisy, masked, tgt_in, tgt, labels


def _torch_e2s2(twin, head, noisy, masked, tgt_in, tgt, labels, tau):
    """The four terms and the total, written on torch.nn.Transformer's encoder and decoder."""
    decoder_losses, pooled = [], []
    causal = torch.ones(tgt_in.shape[1], tgt_in.shape[1], dtype=torch.bool).triu(1)
    for src in (noisy, masked):
        memory = twin.transformer.encoder(twin.embed(twin.src_embed, src), src_key_padding_mask=src == PAD)
        h = twin.transformer.decoder(twin.embed(twin.tgt_embed, tgt_in), memory, tgt_mask=causal,
                                     tgt_key_padding_mask=tgt_in == PAD, memory_key_padding_mask=src == PAD)
        logits = twin.head(h)
        decoder_losses.append(tF.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                               ignore_index=PAD))
        keep = (src != PAD).to(memory.dtype)[..., None]
        pooled.append((memory * keep).sum(1) / keep.sum(1))
        if src is noisy:
            detection = tF.cross_entropy(head(memory).reshape(-1, 3), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    contrastive = _torch_nt_xent(pooled[0], pooled[1], tau)
    total = 0.5 * decoder_losses[0] + 0.5 * decoder_losses[1] + 0.05 * contrastive + 0.05 * detection
    return total, decoder_losses[0], decoder_losses[1], contrastive, detection


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_e2s2_loss_and_every_gradient_match_torch(dtype):
    config = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=9, d_model=12, nhead=3, num_encoder_layers=2,
                           num_decoder_layers=1, dim_feedforward=10)
    torch.manual_seed(0)
    twin, head = TorchSeq2Seq(config).double(), tnn.Linear(12, 3).double()
    ours = E2S2Model(config, temperature=0.2).to(np.dtype(dtype))
    ours.seq2seq.load_state_dict(twin.state_dict())
    ours.detection_head.load_state_dict(head.state_dict())
    twin, head = twin.to(getattr(torch, dtype)), head.to(getattr(torch, dtype))
    batch = _batch()
    got = ours(*[mg.tensor(a) for a in batch])
    want = _torch_e2s2(twin, head, *[torch.from_numpy(a) for a in batch], tau=0.2)
    tol = TOLERANCES[dtype]
    for name, g, w in zip(got._fields, got, want):
        assert_close(f"[{dtype}] {name}", g.data, w.detach().numpy(), **tol)
    upstream = float(random_array((), seed=5))                          # a random upstream gradient
    (got.loss * upstream).backward()
    (want[0] * upstream).backward()
    pairs = list(zip(ours.seq2seq.named_parameters(), twin.named_parameters())) + \
        list(zip(ours.detection_head.named_parameters(), head.named_parameters()))
    assert len(pairs) == len(list(ours.parameters()))
    for (name, p), (_, tp) in pairs:
        assert p.grad is not None and p.grad.dtype == p.dtype, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, tp.grad.numpy(), **tol)


def test_e2s2_model_rejects_mismatched_labels():
    ours = E2S2Model(Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=9, d_model=12, nhead=3))
    noisy, masked, tgt_in, tgt, labels = _batch()
    with pytest.raises(ValueError, match=r"E2S2Model: detection_labels \(3, 6\) must match noisy_src \(3, 7\)"):
        ours(*[mg.tensor(a) for a in (noisy, masked, tgt_in, tgt, labels[:, :6])])


# ---- the experiment's arms (book.experiments.seq2seq_pretraining) --------------------------------------

def test_bart_and_e2s2_arms_start_equal_and_cost_the_same_flops():
    from book.experiments.pretraining_objectives import EncoderConfig, SpecialIds, sequences
    from book.experiments.seq2seq_pretraining import BartPretrainer, E2S2Pretrainer
    special = SpecialIds(pad=36, cls=37, sep=38, mask=39, vocab_size=40)
    config = EncoderConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, warmup_steps=1, total_steps=4)
    bart, e2s2 = BartPretrainer(config, special, seed=3), E2S2Pretrainer(config, special, seed=3)
    pairs = list(zip(bart.seq2seq.state_dict().items(), e2s2.seq2seq.state_dict().items()))
    assert len(pairs) > 0 and all(a == b and np.array_equal(x.data, y.data) for (a, x), (b, y) in pairs)
    extra = 6 * 8 * 3 * 2 * 4 * 12                          # 6 x the head's multiply-adds x 2B x 4 x 12 tokens
    assert e2s2.flops_per_step(2 * 4, 12) - bart.flops_per_step(2 * 4, 12) == extra
    ids = sequences(np.arange(36).repeat(3), 4, 12, np.random.default_rng(0), special)   # (4, 12)
    stats = e2s2.step(ids, np.random.default_rng(1))
    assert set(stats) == {"loss", "decoder_noisy", "decoder_masked", "contrastive", "detection"}
    assert np.isfinite(bart.step(ids, np.random.default_rng(1))["loss"])
