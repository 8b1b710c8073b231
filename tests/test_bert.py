"""book.models.bert against Hugging Face transformers' BertModel (PyTorch), with the same weights.

A tiny random BertModel (eager attention, no dropout) gives its state_dict to minigrad's BertModel; the last
hidden state, the pooler output and the gradient of every parameter under random upstream gradients must
agree, with padding and token types, in float64 and float32. Files written by transformers' save_pretrained
load with load_pretrained. Everything runs offline: nothing is fetched from the Hugging Face hub.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import minigrad as mg  # noqa: E402
import minigrad.nn.functional as F  # noqa: E402
from minigrad.backend import np  # noqa: E402
from book.models.bert import (BertConfig, BertModel, hf_state_dict, load_pretrained,  # noqa: E402
                                  mean_pooling, sentence_embeddings)
from book.testing import TOLERANCES, assert_close, check_against_torch, random_array  # noqa: E402

TINY = dict(vocab_size=50, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
            max_position_embeddings=16, type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
B, T = 3, 7
LENGTHS = (7, 4, 1)  # tokens per row; the rest is padding


def _hf_model(seed=0, **overrides):
    """A tiny transformers BertModel, every parameter random (LayerNorm's ones and zero biases hide mistakes)."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(**{**TINY, **overrides}, attn_implementation="eager")
    model = transformers.BertModel(config).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.3)
    return model


def _batch(seed=1):
    rng = np.random.default_rng(seed)
    mask = (np.arange(T) < np.array(LENGTHS)[:, None]).astype(np.int64)        # (B, T)
    ids = rng.integers(1, TINY["vocab_size"], size=(B, T)) * mask                # padding is id 0
    types = rng.integers(0, 2, size=(B, T)) * mask
    return ids, mask, types


def _ours_from(hf, dtype):
    model = BertModel(BertConfig.from_dict(hf.config.to_dict())).to(np.dtype(dtype)).eval()
    model.load_state_dict(hf.state_dict())
    return model


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bert_outputs_and_every_gradient_match_transformers(dtype):
    hf = _hf_model().to(getattr(torch, dtype))
    ours = _ours_from(hf, dtype)
    assert list(ours.state_dict()) == list(hf.state_dict())  # the same names, in the same order
    ids, mask, types = _batch()
    out = ours(mg.tensor(ids), mg.tensor(mask), mg.tensor(types))
    ref = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
             token_type_ids=torch.from_numpy(types))
    tol = TOLERANCES[dtype]
    assert out.last_hidden_state.dtype == np.dtype(dtype) and out.last_hidden_state.shape == (B, T, TINY["hidden_size"])
    assert_close(f"[{dtype}] last_hidden_state", out.last_hidden_state.data, ref.last_hidden_state.detach().numpy(),
                 **tol)
    assert_close(f"[{dtype}] pooler_output", out.pooler_output.data, ref.pooler_output.detach().numpy(), **tol)

    rng = np.random.default_rng(2)
    g_hidden = rng.standard_normal(out.last_hidden_state.shape).astype(dtype)
    g_pooled = rng.standard_normal(out.pooler_output.shape).astype(dtype)
    ((out.last_hidden_state * mg.tensor(g_hidden)).sum() + (out.pooler_output * mg.tensor(g_pooled)).sum()).backward()
    torch.autograd.backward([ref.last_hidden_state, ref.pooler_output],
                            [torch.from_numpy(g_hidden), torch.from_numpy(g_pooled)])
    hf_params = dict(hf.named_parameters())
    assert sorted(name for name, _ in ours.named_parameters()) == sorted(hf_params)
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.dtype == p.dtype and p.grad.shape == p.shape, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, hf_params[name].grad.numpy(), **tol)
    assert not ours.embeddings.word_embeddings.weight.grad.data[0].any()  # padding_idx 0 gets no gradient


def test_bert_without_attention_mask_or_token_types_is_all_tokens_of_type_0():
    hf = _hf_model()
    ours = _ours_from(hf, "float64")
    ids, _, _ = _batch()
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(ids)).last_hidden_state.numpy()
    assert_close("last_hidden_state", ours(mg.tensor(ids)).last_hidden_state.data, ref, **TOLERANCES["float64"])


def test_mean_pooling_and_normalize_match_torch():
    """sentence-transformers' Pooling (mean over attention_mask) then Normalize, with the gradient."""
    _, mask, _ = _batch()

    def torch_fn(h, m):
        m = m[..., None].to(h.dtype)
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=-1)
    check_against_torch(lambda h, m: F.normalize(mean_pooling(h, m), dim=-1), torch_fn,
                        [random_array((B, T, 5)), mask])


@pytest.mark.parametrize("head", ["BertModel", "BertModel without pooler", "BertForMaskedLM"])
def test_load_pretrained_reads_save_pretrained_folders(tmp_path, head):
    """config.json + model.safetensors as transformers writes them; a `bert.` prefix and head keys (cls.*) too."""
    torch.manual_seed(3)
    config = transformers.BertConfig(**TINY, attn_implementation="eager")
    if head == "BertForMaskedLM":
        hf = transformers.BertForMaskedLM(config).eval()
        encoder = hf.bert
    else:
        hf = encoder = transformers.BertModel(config, add_pooling_layer=head == "BertModel").eval()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    ours = load_pretrained(tmp_path)
    assert not ours.training and (ours.pooler is not None) == (encoder.pooler is not None)
    ids, mask, types = _batch()
    with torch.no_grad():
        ref = encoder(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                      token_type_ids=torch.from_numpy(types))
    out = ours(ids, mask, types)  # nested arrays are accepted as well as tensors
    assert_close("last_hidden_state", out.last_hidden_state.data, ref.last_hidden_state.numpy(),
                 **TOLERANCES["float32"])
    embedded = sentence_embeddings(ours, ids, mask, types)
    assert embedded.shape == (B, TINY["hidden_size"])
    assert_close("norms", np.linalg.norm(embedded.data, axis=-1), np.ones(B), **TOLERANCES["float32"])


def test_hf_state_dict_renames_old_checkpoints():
    tensors = {"bert.embeddings.LayerNorm.gamma": np.ones(4), "bert.embeddings.LayerNorm.beta": np.zeros(4),
               "bert.embeddings.position_ids": np.arange(8)[None], "cls.predictions.bias": np.zeros(3)}
    assert sorted(hf_state_dict(tensors)) == ["embeddings.LayerNorm.bias", "embeddings.LayerNorm.weight"]
    with pytest.raises(ValueError, match="position_ids is not 0, 1, 2"):
        hf_state_dict({"embeddings.position_ids": np.arange(8)[::-1].copy()})


def test_bert_rejects_bad_inputs():
    model = _ours_from(_hf_model(), "float64")
    ids, mask, types = _batch()
    with pytest.raises(ValueError, match=r"BertModel: input_ids must have shape \(B, T\), got \(7,\)"):
        model(ids[0])
    with pytest.raises(ValueError, match="sequence length 17 exceeds max_position_embeddings 16"):
        model(np.ones((1, 17), dtype=np.int64))
    with pytest.raises(TypeError, match="input_ids must hold integers, got dtype float64"):
        model(ids.astype(np.float64))
    with pytest.raises(ValueError, match=r"attention_mask of shape \(3, 6\) does not match the input of shape "
                                         r"\(3, 7\)"):
        model(ids, mask[:, :6])
    with pytest.raises(ValueError, match="attention_mask must hold only 0"):
        model(ids, mask * 2)
    with pytest.raises(ValueError, match=r"attention_mask rows \[1\] have no token"):
        model(ids, mask * np.array([[1], [0], [1]]))
    with pytest.raises(ValueError, match=r"token_type_ids of shape \(3, 6\) does not match input_ids"):
        model(ids, mask, types[:, :6])
    with pytest.raises(ValueError, match="hidden_size 12 is not divisible by num_attention_heads 5"):
        BertConfig(hidden_size=12, num_attention_heads=5)
    with pytest.raises(ValueError, match="hidden_act 'relu' is not supported"):
        BertConfig(hidden_act="relu")
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key' is not supported"):
        BertConfig.from_dict({"position_embedding_type": "relative_key"})
