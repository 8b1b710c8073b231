"""SoftplusLM: DecoderLM with selectable attention (softmax, LSSA, LSSAR).

Checked for real: causality is exact in float64 (changing a later token leaves earlier logits bit-identical); with
attention="softmax" and no QK-norm the model is DecoderLM (same parameter names, same logits and loss); every
parameter, QK-norm gains included, gets a nonzero gradient; the softplus layer equals SoftplusSelfAttention (the
library module checked against a PyTorch twin) when their weights are shared; the re-weighting switch changes
the outputs, not the parameters, and gives what a model built with that power gives.
"""
import pytest

import minigrad as mg
from minigrad.backend import np
from book.models.decoder_lm import DecoderLM, DecoderLMConfig
from book.models.softplus_lm import SoftplusLM, SoftplusLMConfig
from book.efficient_attention import SoftplusSelfAttention

VOCAB, B, T = 11, 2, 37
ATTENTIONS = {"softmax": dict(attention="softmax"), "lssa": dict(attention="softplus"),
              "lssar": dict(attention="softplus", power=3)}


def _config(**options):
    base = dict(vocab_size=VOCAB, n_layer=2, n_head=2, d_model=16, position="rope", train_length=16)
    return SoftplusLMConfig(**{**base, **options})


def _model(seed=0, **options):
    mg.manual_seed(seed)
    model = SoftplusLM(_config(**options)).double()
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():   # norm gains away from one: ones hide mistakes
        if "norm" in name and name.endswith("weight"):
            p.data[...] = rng.uniform(0.5, 1.5, p.shape)
    return model


def _tokens(seed=1):
    return np.random.default_rng(seed).integers(0, VOCAB, size=(B, T))


@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_causality_is_exact_in_float64(attention):
    model, idx = _model(**ATTENTIONS[attention]), _tokens()
    changed = idx.copy()
    changed[:, 20:] = (changed[:, 20:] + 1) % VOCAB                      # every token from position 20 on
    logits, _ = model(mg.tensor(idx))
    logits_changed, _ = model(mg.tensor(changed))
    assert logits.dtype == np.float64
    np.testing.assert_array_equal(logits_changed.data[:, :20], logits.data[:, :20])
    assert not np.allclose(logits_changed.data[:, 20:], logits.data[:, 20:])


@pytest.mark.parametrize("position", ["none", "rope", "learned"])
def test_softmax_without_qk_norm_is_decoder_lm(position):
    options = dict(vocab_size=VOCAB, n_layer=2, n_head=2, d_model=16, position=position, max_len=T)
    mg.manual_seed(0)
    reference = DecoderLM(DecoderLMConfig(**options)).double()
    ours = SoftplusLM(SoftplusLMConfig(**options, attention="softmax", qk_norm=False)).double()
    assert sorted(ours.state_dict()) == sorted(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    idx, targets = mg.tensor(_tokens()), mg.tensor(_tokens(seed=2))
    logits, loss = ours(idx, targets)
    ref_logits, ref_loss = reference(idx, targets)
    np.testing.assert_allclose(logits.data, ref_logits.data, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss.data, ref_loss.data, rtol=1e-12)


@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_every_parameter_gets_a_gradient(attention):
    model = _model(**ATTENTIONS[attention])
    _, loss = model(mg.tensor(_tokens()), mg.tensor(_tokens(seed=2)))
    loss.backward()
    names = [name for name, _ in model.named_parameters()]
    assert any("q_norm" in name for name in names) and any("k_norm" in name for name in names)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.isfinite(p.grad.data).all() and np.abs(p.grad.data).max() > 0, name


@pytest.mark.parametrize("power", [None, 7])
def test_softplus_layer_is_the_library_module(power):
    """Without RoPE the layer is SoftplusSelfAttention with qkv / proj renamed c_attn / c_proj."""
    model = _model(attention="softplus", power=power, position="none")
    layer = model.blocks[1].attn
    library = SoftplusSelfAttention(16, 2, power=power, qk_norm=True, train_length=16).double()
    library.load_state_dict({name.replace("qkv.", "c_attn.").replace("proj.", "c_proj."): value
                             for name, value in layer.state_dict().items()})
    x = mg.tensor(np.random.default_rng(3).standard_normal((B, T, 16)))
    np.testing.assert_allclose(layer(x).data, library(x).data, rtol=1e-12, atol=1e-12)


def test_reweighting_switch_changes_outputs_not_parameters():
    lssa, idx = _model(attention="softplus"), mg.tensor(_tokens())
    before = {k: v.data.copy() for k, v in lssa.state_dict().items()}
    plain = lssa(idx)[0].data
    lssa.set_power(3)
    sharpened = lssa(idx)[0].data
    lssar = _model(attention="softplus", power=3)                         # the same seed: the same weights
    np.testing.assert_array_equal(sharpened, lssar(idx)[0].data)
    assert not np.allclose(sharpened, plain)
    assert all(np.array_equal(v.data, before[k]) for k, v in lssa.state_dict().items())
    lssa.set_power(None)
    np.testing.assert_array_equal(lssa(idx)[0].data, plain)


def test_long_sequences_run_and_bad_configs_are_explained():
    logits, _ = _model(attention="softplus", power=3)(mg.zeros(1, 130, dtype=mg.int64))
    assert logits.shape == (1, 130, VOCAB) and np.isfinite(logits.data).all()
    with pytest.raises(ValueError, match="attention must be one of"):
        _config(attention="sigmoid")
    with pytest.raises(ValueError, match="alibi"):
        _config(position="alibi")
    with pytest.raises(ValueError, match="needs attention='softplus'"):
        _config(attention="softmax", power=3)
    with pytest.raises(ValueError, match="train_length must be >= 2"):
        _config(train_length=1)
    with pytest.raises(ValueError, match="applies to softplus attention"):
        _model(attention="softmax").set_power(3)
