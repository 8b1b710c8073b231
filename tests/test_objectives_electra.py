"""book.objectives.electra against transformers' ElectraForMaskedLM (generator) and ElectraForPreTraining
(discriminator), made to share their embeddings, with the ELECTRA objective written in PyTorch around them: the same
masking draws and Gumbel noise go to both sides; the corrupted ids, the labels, L_MLM, L_D, L = L_MLM + 50 L_D
and the gradient of every parameter must agree (float64 tight, float32 realistic; odd sizes, padding).
Also: no gradient reaches the generator from L_D, labels are 0 where the sample equals the original, Gumbel-max
samples follow the softmax, and the generator's size follows ELECTRA's recipe."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
import transformers  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad.backend import np  # noqa: E402
from book.objectives.electra import (ELECTRA_SPLIT, ElectraConfig, ElectraPretraining,  # noqa: E402
                                         draw_gumbel_noise, gumbel_sample, replaced_token_detection_loss,
                                         replaced_token_labels)
from book.objectives.mlm import (IGNORE_INDEX, RANDOM, apply_mlm_masking, draw_mlm_masking,  # noqa: E402
                                     maskable_positions)
from book.testing import TOLERANCES, assert_close, check_against_torch, random_array  # noqa: E402

PAD, CLS, SEP, MASK_ID = 0, 1, 2, 3
V = 19
BASE = dict(vocab_size=V, num_hidden_layers=2, num_attention_heads=3, intermediate_size=29, max_position_embeddings=16,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=PAD)
# (embedding size, discriminator width, generator fraction, generator layers fraction): a projection in both
# models, then a generator as wide as the embeddings (no projection in it) and with fewer layers
SIZES = [dict(embedding_size=8, hidden_size=12, generator_hidden_size=0.5, generator_layers=1.0),
         dict(embedding_size=6, hidden_size=12, generator_hidden_size=0.5, generator_layers=0.5)]


def _config(sizes):
    return ElectraConfig(**BASE, **sizes)


def _hf_pair(config: ElectraConfig, dtype, seed=0):
    """transformers' generator and discriminator sharing one embeddings module, every parameter random."""
    gen = config.generator_config()
    common = dict(vocab_size=V, embedding_size=config.embedding_size, max_position_embeddings=16,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=PAD,
                  layer_norm_eps=config.layer_norm_eps, attn_implementation="eager")
    disc_config = transformers.ElectraConfig(hidden_size=config.hidden_size, num_hidden_layers=2,
                                             num_attention_heads=3, intermediate_size=29, **common)
    gen_config = transformers.ElectraConfig(hidden_size=gen.hidden_size, num_hidden_layers=gen.num_hidden_layers,
                                            num_attention_heads=gen.num_attention_heads,
                                            intermediate_size=gen.intermediate_size, **common)
    torch.manual_seed(seed)
    generator = transformers.ElectraForMaskedLM(gen_config)
    discriminator = transformers.ElectraForPreTraining(disc_config)
    generator.electra.embeddings = discriminator.electra.embeddings
    generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight
    pair = torch.nn.Module()
    pair.generator, pair.discriminator = generator, discriminator
    pair = pair.to(getattr(torch, dtype)).eval()
    with torch.no_grad():
        for name, p in pair.named_parameters():
            p.uniform_(0.5, 1.5) if name.endswith("LayerNorm.weight") else p.normal_(0.0, 0.3)
    return pair


def _ours(config, pair, dtype):
    model = ElectraPretraining(config).to(np.dtype(dtype)).eval()
    model.generator.load_state_dict(pair.generator.state_dict())
    model.discriminator.load_state_dict(pair.discriminator.state_dict())
    return model


def _torch_electra(pair, masked, labels, noise, mask, types, disc_weight=50.0):
    """ELECTRA's objective in PyTorch: sample under no_grad, label where the sample differs, L_MLM + 50 L_D."""
    gen_logits = pair.generator(input_ids=masked, attention_mask=mask, token_type_ids=types).logits   # (B, T, V)
    mlm = TF.cross_entropy(gen_logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
    selected = labels != -100
    original = torch.where(selected, labels, masked)
    with torch.no_grad():
        sampled = torch.softmax(gen_logits + noise, dim=-1).argmax(dim=-1)
    corrupted = torch.where(selected, sampled, original)
    y = ((corrupted != original) & (mask == 1)).to(gen_logits.dtype)
    disc_logits = pair.discriminator(input_ids=corrupted, attention_mask=mask, token_type_ids=types).logits
    m = mask.to(gen_logits.dtype)
    disc = (TF.binary_cross_entropy_with_logits(disc_logits, y, reduction="none") * m).sum() / m.sum()
    return mlm + disc_weight * disc, mlm, disc, gen_logits, disc_logits, corrupted, y


def _inputs(seed=1):
    """A padded batch (B=3, T=7), the ELECTRA masking draws, and Gumbel noise forced at some positions:
    the sample equals the original at the first selected token of each row and differs at the second."""
    rng = np.random.default_rng(seed)
    lengths = np.array([7, 6, 3])
    mask = (np.arange(7) < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, rng.integers(4, V, size=(3, 7)), PAD)
    ids[:, 0], ids[np.arange(3), lengths - 1] = CLS, SEP
    types = ((np.arange(7) >= 4)[None] * mask).astype(np.int64)
    draws = draw_mlm_masking(maskable_positions(ids, (PAD, CLS, SEP, MASK_ID), mask), rng, V, rate=0.5,
                             split=ELECTRA_SPLIT)
    masked, labels = apply_mlm_masking(ids, draws, MASK_ID)
    noise = draw_gumbel_noise((3, 7, V), rng)
    forced = {}
    for b in range(3):
        positions = np.flatnonzero(draws.selected[b])
        noise[b, positions[0], ids[b, positions[0]]] += 100.0                   # sample = original: label 0
        forced[(b, positions[0])] = 0
        if positions.size > 1:
            noise[b, positions[1], (ids[b, positions[1]] + 1) % V] += 100.0     # sample != original: label 1
            forced[(b, positions[1])] = 1
    return ids, mask, types, draws, masked, labels, noise, forced


@pytest.mark.parametrize("sizes", SIZES, ids=["projected", "generator-as-wide-as-embeddings"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_electra_loss_parts_and_every_gradient_match_torch(dtype, sizes):
    config = _config(sizes)
    pair = _hf_pair(config, dtype)
    ours = _ours(config, pair, dtype)
    ids, mask, types, draws, masked, labels, noise, forced = _inputs()
    assert (draws.action[draws.selected] != RANDOM).all()                       # ELECTRA: no random ids

    out = ours(masked, labels, noise.astype(dtype), mask, types)
    t = _torch_electra(pair, *(torch.from_numpy(a) for a in (masked, labels, noise.astype(dtype), mask, types)))
    t_loss, t_mlm, t_disc, t_gen_logits, t_disc_logits, t_corrupted, t_y = t
    tol = TOLERANCES[dtype]
    assert_close(f"[{dtype}] generator logits", out.generator_logits.data, t_gen_logits.detach().numpy(), **tol)
    assert out.corrupted_ids.tolist() == t_corrupted.tolist()
    assert out.disc_labels.tolist() == t_y.to(torch.int64).tolist()
    for (b, t_pos), label in forced.items():
        assert out.disc_labels[b, t_pos] == label
        assert (out.corrupted_ids[b, t_pos] == ids[b, t_pos]) == (label == 0)
    assert 0 < out.disc_labels.sum() < (labels != IGNORE_INDEX).sum()            # some replaced, some not
    assert_close(f"[{dtype}] discriminator logits", out.discriminator_logits.data, t_disc_logits.detach().numpy(),
                 **tol)
    for name, got, want in (("L_MLM", out.mlm_loss, t_mlm), ("L_D", out.disc_loss, t_disc), ("L", out.loss, t_loss)):
        assert got.dtype == np.dtype(dtype), name
        assert_close(f"[{dtype}] {name}", got.data, want.detach().numpy(), **tol)

    out.loss.backward()
    t_loss.backward()
    torch_params = dict(pair.named_parameters())
    names = [name for name, _ in ours.named_parameters()]
    assert sorted(names) == sorted(torch_params)
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.dtype == p.dtype and p.grad.shape == p.shape, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, torch_params[name].grad.numpy(), **tol)


def test_embeddings_are_shared_and_the_generator_has_electras_size():
    config = ElectraConfig(vocab_size=V, embedding_size=8, hidden_size=256, num_hidden_layers=4,
                           num_attention_heads=4, intermediate_size=1024, generator_hidden_size=0.25,
                           generator_layers=0.5, max_position_embeddings=16)
    gen = config.generator_config()
    assert (gen.hidden_size, gen.num_hidden_layers, gen.num_attention_heads, gen.intermediate_size) == (64, 2, 1, 256)
    model = ElectraPretraining(config)
    assert model.generator.electra.embeddings is model.discriminator.electra.embeddings
    assert model.generator.generator_lm_head.weight is model.generator.electra.embeddings.word_embeddings.weight
    assert model.generator.electra.embeddings_project.weight.shape == (64, 8)
    assert model.discriminator.electra.embeddings_project.weight.shape == (256, 8)
    assert not model.generator.electra.embeddings.word_embeddings.weight.data[PAD].any()
    with pytest.raises(ValueError, match="ElectraConfig: the generator would have hidden size 0"):
        ElectraConfig(hidden_size=8, generator_hidden_size=0.01).generator_config()


def test_the_discriminator_loss_sends_no_gradient_to_the_generator():
    config = _config(SIZES[0])
    ours = _ours(config, _hf_pair(config, "float64"), "float64")
    ids, mask, types, draws, masked, labels, noise, forced = _inputs(seed=2)
    ours(masked, labels, noise, mask, types).disc_loss.backward()
    shared = {"generator.electra.embeddings.", "generator.generator_lm_head.weight"}
    for name, p in ours.named_parameters():
        if name.startswith("generator.") and not any(name.startswith(s) for s in shared):
            assert p.grad is None, f"{name} got a gradient from L_D"
        else:
            assert p.grad is not None and np.abs(p.grad.data).sum() > 0, name  # the discriminator and the embeddings
    # under the total loss, the generator's own parameters get exactly the gradient of L_MLM
    gen_only = [(n, p) for n, p in ours.named_parameters()
                if n.startswith("generator.") and not any(n.startswith(s) for s in shared)]
    ours.zero_grad()
    out = ours(masked, labels, noise, mask, types)
    out.loss.backward()
    total = {n: p.grad.data.copy() for n, p in gen_only}
    ours.zero_grad()
    ours(masked, labels, noise, mask, types).mlm_loss.backward()
    for n, p in gen_only:
        assert_close(f"grad of {n}", total[n], p.grad.data, 0, 0)


def test_labels_are_zero_where_the_sample_equals_the_original():
    original = np.array([[CLS, 5, 6, 7, SEP, PAD]])
    corrupted = np.array([[CLS, 5, 9, 7, SEP, PAD]])                             # position 1: sampled == original
    assert replaced_token_labels(original, corrupted, np.array([[1, 1, 1, 1, 1, 0]])).tolist() == [[0, 0, 1, 0, 0, 0]]
    logits = np.zeros((1, 6, V))
    logits[0, 1, 5] = 50.0                                                       # the generator is sure of the original
    assert gumbel_sample(logits, np.zeros_like(logits))[0, 1] == 5


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_gumbel_max_samples_follow_the_softmax(temperature):
    rng = np.random.default_rng(3)
    z = np.array([1.0, -0.5, 2.0, 0.0, 0.3])
    N = 40000
    samples = gumbel_sample(np.broadcast_to(z, (N, 5)), draw_gumbel_noise((N, 5), rng), temperature)
    p = np.exp(z / temperature) / np.exp(z / temperature).sum()
    freq = np.bincount(samples, minlength=5) / N
    assert np.all(np.abs(freq - p) < 4.5 * np.sqrt(p * (1 - p) / N)), (freq, p)


def test_replaced_token_detection_loss_matches_torch():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=(3, 5))
    mask = (np.arange(5) < np.array([5, 3, 1])[:, None]).astype(np.int64)

    def torch_fn(z, y_, m):
        m = m.to(z.dtype)
        return (TF.binary_cross_entropy_with_logits(z, y_.to(z.dtype), reduction="none") * m).sum() / m.sum()
    check_against_torch(lambda z, y_, m: replaced_token_detection_loss(z, y_, m), torch_fn,
                        [random_array((3, 5)), y, mask])
    with pytest.raises(ValueError, match=r"replaced_token_detection_loss: labels of shape \(3, 4\) do not match"):
        replaced_token_detection_loss(mg.zeros(3, 5), y[:, :4], mask)


def test_shapes_are_checked():
    model = ElectraPretraining(_config(SIZES[0]))
    ids = np.full((2, 5), 7)
    with pytest.raises(ValueError, match=r"ElectraPretraining: gumbel_noise of shape \(2, 5, 3\) does not match"):
        model(ids, ids, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"ElectraPretraining: mlm_labels of shape \(2, 4\) do not match"):
        model(ids, ids[:, :4], np.zeros((2, 5, V)))
    with pytest.raises(ValueError, match="ElectraModel: sequence length 17 exceeds max_position_embeddings 16"):
        model.discriminator(np.full((1, 17), 7))
    with pytest.raises(ValueError, match=r"gumbel_sample: gumbel_noise of shape \(2, 3\) does not match"):
        gumbel_sample(np.zeros((2, 4)), np.zeros((2, 3)))
