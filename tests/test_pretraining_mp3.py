"""book.pretraining.position_prediction (MP3): the visible-subset draw (counts, uniformity, never padding), the
attention mask, the loss against torch's cross_entropy, and MP3Encoder / OrderClassifier against PyTorch twins built
on torch.nn.TransformerEncoder (outputs and every parameter's gradient, float64 tight and float32, with padding);
and the property the method rests on: without position embeddings nothing in the model knows the order."""
import pytest
import torch
import torch.nn.functional as TF

import minigrad as mg
from minigrad.backend import np
from book.pretraining.position_prediction import (IGNORE_INDEX, MP3Encoder, OrderClassifier, draw_visible,
                                                  position_labels, position_loss, visible_key_mask)
from book.testing import check_against_torch, random_array

V, T, D, H, LAYERS, FF = 17, 9, 12, 3, 2, 20


def _mask(lengths, T_=T):
    return (np.arange(T_) < np.array(lengths)[:, None]).astype(np.int64)


# ---- the visible subset -----------------------------------------------------------------------------------

def test_visible_counts_padding_and_uniformity():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, T + 1, size=4000)
    mask = _mask(lengths)
    for eta in (0.0, 0.5, 0.75):
        visible = draw_visible(mask, eta, rng)
        assert not (visible & (mask == 0)).any()                                   # padding is never visible
        assert (visible.sum(1) == lengths - np.floor(eta * lengths)).all()         # exactly, per row
        assert visible.sum(1).min() >= 1
    full = draw_visible(np.ones((20000, T), dtype=np.int64), 0.5, rng)             # 5 of 9 visible
    p = 5 / 9
    freq = full.mean(0)                                                            # every position equally often
    assert np.abs(freq - p).max() < 5 * np.sqrt(p * (1 - p) / 20000)
    # pairs are exchangeable too: P(i and j visible) = (5/9)(4/8) for i != j
    both = (full[:, 0] & full[:, 7]).mean()
    assert abs(both - p * 4 / 8) < 5 * np.sqrt(0.28 * 0.72 / 20000)


def test_visible_checks_its_input():
    with pytest.raises(ValueError, match=r"draw_visible: eta must be in \[0, 1\)"):
        draw_visible(np.ones((2, 3)), 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"draw_visible: rows \[1\] of attention_mask \(2, 3\) have no real token"):
        draw_visible(np.array([[1, 1, 0], [0, 0, 0]]), 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="visible_key_mask: every row of visible"):
        visible_key_mask(np.array([[True, False], [False, False]]), 2)


def test_visible_key_mask_by_hand():
    visible = np.array([[True, False, True], [False, True, False]])
    mask = visible_key_mask(visible, 2)                                            # (B * H, T, T)
    assert mask.shape == (4, 3, 3)
    hidden_keys = [[False, True, False], [True, False, True]]
    for b in range(2):
        for h in range(2):                                                         # batch-major, as torch
            assert (mask[b * 2 + h] == np.array(hidden_keys[b])).all()             # every query row alike


def test_labels_and_loss_against_torch():
    mask = _mask([T, 4, 1])
    labels = position_labels(mask)
    assert labels[1].tolist() == [0, 1, 2, 3] + [IGNORE_INDEX] * (T - 4)
    logits = random_array((3, T, T + 2), seed=1)                                   # P = T + 2 positions
    want_labels = torch.from_numpy(labels)
    check_against_torch(lambda z: position_loss(z, mask),
                        lambda z: TF.cross_entropy(z.reshape(3 * T, -1), want_labels.reshape(-1)), [logits])
    with pytest.raises(ValueError, match=r"position_loss: logits of shape \(3, 9, 5\) do not fit"):
        position_loss(mg.tensor(logits[..., :5]), mask)


# ---- the model against PyTorch ---------------------------------------------------------------------------

class TorchMP3(torch.nn.Module):
    """The same model in PyTorch: embeddings, pre-LN nn.TransformerEncoder with a final norm, LayerNorm + Linear."""

    def __init__(self, max_len=T):
        super().__init__()
        self.token_embedding = torch.nn.Embedding(V, D)
        layer = torch.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu", batch_first=True,
                                                 norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, LAYERS, norm=torch.nn.LayerNorm(D),
                                                   enable_nested_tensor=False)
        self.head_norm = torch.nn.LayerNorm(D)
        self.position_head = torch.nn.Linear(D, max_len)

    def forward(self, ids, visible=None, offset=None):
        x = self.token_embedding(ids) + (0 if offset is None else offset)
        mask = None
        if visible is not None:
            B, L = visible.shape
            mask = (~visible)[:, None, None, :].expand(B, H, L, L).reshape(B * H, L, L)
        return self.encoder(x, mask=mask)

    def position_logits(self, hidden):
        return self.position_head(self.head_norm(hidden))


def _randomized(module):
    """Non-trivial LayerNorm and bias values, so their gradients are tested with weights that matter."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return module


@pytest.mark.parametrize("lengths", [[T, T], [T, 5, 2]], ids=["full", "padded"])
def test_mp3_encoder_matches_torch(lengths):
    torch.manual_seed(0)
    mask = _mask(lengths)
    visible = draw_visible(mask, 0.5, np.random.default_rng(len(lengths)))
    ids = np.random.default_rng(3).integers(0, V, size=mask.shape)
    twin = _randomized(TorchMP3())
    mg.manual_seed(0)
    model = MP3Encoder(V, T, D, H, LAYERS, FF)

    names = [n for n, _ in twin.named_parameters()]
    twin.double()
    model.load_state_dict(twin.state_dict())
    params = [p.detach().numpy().copy() for p in twin.parameters()]

    def run_mg(*args):
        model.to(args[0].dtype)
        out = mg.nn.utils.functional_call(model, dict(zip(names, args)), (ids,), {"visible": visible})
        return position_loss(model.position_logits(out), mask), model.position_logits(out)

    def run_torch(*args):
        twin.to(args[0].dtype)
        out = torch.func.functional_call(twin, dict(zip(names, args)), (torch.from_numpy(ids),),
                                         {"visible": torch.from_numpy(visible)})
        z = twin.position_logits(out)
        return TF.cross_entropy(z.reshape(-1, T), torch.from_numpy(position_labels(mask)).reshape(-1)), z
    check_against_torch(run_mg, run_torch, params, tolerances={"float32": dict(rtol=1e-3, atol=1e-4)})


def test_order_classifier_matches_torch():
    mask = _mask([T, 6, 3])
    ids = np.random.default_rng(5).integers(0, V, size=mask.shape)
    twin = _randomized(TorchMP3())
    position_weight = torch.randn(T, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.5
    mg.manual_seed(0)
    model = OrderClassifier(MP3Encoder(V, T, D, H, LAYERS, FF), num_classes=2)
    head = torch.nn.Linear(D, 2).double()
    state = {f"encoder.{k}": v for k, v in twin.double().state_dict().items()}
    state.update({"position_embedding.weight": position_weight, "classifier.weight": head.weight.detach(),
                  "classifier.bias": head.bias.detach()})
    names = list(state)
    assert names == [n for n, _ in model.named_parameters()]
    model.load_state_dict(state)
    params = [v.detach().numpy().copy() for v in state.values()]
    real = torch.from_numpy(mask.astype(bool))

    def run_mg(*args):
        model.to(args[0].dtype)
        return mg.nn.utils.functional_call(model, dict(zip(names, args)), (ids, mask), {})

    def run_torch(*args):
        p = dict(zip(names, args))
        twin.to(args[0].dtype)
        enc = {k[len("encoder."):]: v for k, v in p.items() if k.startswith("encoder.")}
        hidden = torch.func.functional_call(twin, enc, (torch.from_numpy(ids),),
                                            {"visible": real, "offset": p["position_embedding.weight"]})
        pooled = (hidden * real[..., None]).sum(1) / real.sum(1, keepdim=True)
        return TF.linear(pooled, p["classifier.weight"], p["classifier.bias"])
    check_against_torch(run_mg, run_torch, params, tolerances={"float32": dict(rtol=1e-3, atol=1e-4)})


# ---- no order leak ----------------------------------------------------------------------------------------

def test_without_positions_the_encoder_is_permutation_equivariant():
    """Permute the tokens (and the visible subset with them): every hidden state moves with its token and is
    otherwise unchanged. So the only way to predict a position is from the content of the sequence."""
    mg.manual_seed(0)
    model = MP3Encoder(V, T, D, H, LAYERS, FF)
    model.to(mg.float64)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, size=(2, T))
    visible = draw_visible(np.ones((2, T)), 0.5, rng)
    perm = rng.permutation(T)
    with mg.no_grad():
        h = model(ids, visible).data
        h_perm = model(ids[:, perm], visible[:, perm]).data
    np.testing.assert_allclose(h_perm, h[:, perm], rtol=1e-10, atol=1e-12)
    # and a masked token's state does not depend on the other masked tokens (they are never keys)
    other = ids.copy()
    hidden_tokens = ~visible
    other[hidden_tokens] = (other[hidden_tokens] + 1) % V
    with mg.no_grad():
        h_other = model(other, visible).data
    np.testing.assert_allclose(h_other[visible], h[visible], rtol=1e-10, atol=1e-12)


# ---- the experiment's downstream task ------------------------------------------------------------------------

def test_swap_two_words_keeps_the_bag_of_words_and_labels_exactly_the_swapped_rows():
    from book.experiments.position_prediction import swap_two_words
    rng = np.random.default_rng(0)
    mask = _mask(rng.integers(2, T + 1, size=3000))
    ids = np.where(mask == 1, rng.integers(1, 6, size=mask.shape), 0)          # few word ids: many equal pairs
    swapped, labels = swap_two_words(ids, mask, np.random.default_rng(1))
    assert (np.sort(swapped, axis=1) == np.sort(ids, axis=1)).all()              # same bag of words, padding kept
    assert ((swapped != ids).any(axis=1) == (labels == 1)).all()                 # label 1 iff the order changed
    assert ((swapped != ids).sum(axis=1)[labels == 1] == 2).all()                # exactly two positions
    assert 0.3 < labels.mean() < 0.5                                             # half tried; equal pairs are skipped
