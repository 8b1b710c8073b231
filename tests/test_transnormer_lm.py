"""TransNormerLM (book/models/transnormer_lm.py): causal, its decay switch does what it says, and its loss and
every gradient match a PyTorch twin built from the block twin of tests/test_efficient_attention_transnormer.py."""
import pytest
import torch
import torch.nn.functional as TF

import minigrad as mg
from minigrad.backend import np
from minigrad.nn.linear_attention import linear_attention
from book.models.transnormer_lm import TransNormerLM, TransNormerLMConfig
from tests.test_efficient_attention_transnormer import TorchTransNormerBlock, srms_norm

VOCAB, EMBED, HEADS, LAYERS = 11, 16, 4, 3


def make_model(decay=True, seed=0):
    mg.manual_seed(seed)
    return TransNormerLM(TransNormerLMConfig(VOCAB, EMBED, HEADS, LAYERS, decay=decay)).double()


def tokens(shape, seed):
    return np.random.default_rng(seed).integers(0, VOCAB, shape)


@pytest.mark.parametrize("form", ["blocked", "naive", "recurrent"])
def test_changing_future_tokens_leaves_earlier_logits_unchanged(form):
    model = make_model()
    idx = tokens((2, 70), seed=1)                      # 70 > the kernel's 64-position block: two blocks
    cut = 37
    changed = idx.copy()
    changed[:, cut:] = (changed[:, cut:] + 1 + tokens((2, 70 - cut), seed=2) % (VOCAB - 1)) % VOCAB
    assert (changed[:, cut:] != idx[:, cut:]).all()
    before, _ = model(mg.tensor(idx), form=form)
    after, _ = model(mg.tensor(changed), form=form)
    np.testing.assert_array_equal(after.data[:, :cut], before.data[:, :cut])    # exactly, float64
    assert np.abs(after.data[:, cut:] - before.data[:, cut:]).min(axis=-1).max() > 1e-3


def test_decay_off_is_causal_linear_attention_of_the_same_features():
    with_decay, without = make_model(decay=True), make_model(decay=False)
    without.load_state_dict(with_decay.state_dict())
    assert with_decay.layers[0].token_mixer.slopes[0] > 0.1
    assert all(s == 0 for block in without.layers for s in block.token_mixer.slopes)
    idx = mg.tensor(tokens((2, 21), seed=3))
    x = with_decay.layers[0].token_norm(with_decay.embed(idx))                   # layer 0's input (B, T, E)
    mixer = without.layers[0].token_mixer
    q, k, v, u = mixer._project(x, 0)                                            # (B, H, T, 2D) x2, (B, H, T, D)
    plain = mixer._output(linear_attention(q, k, v, feature_map="identity", normalize=False), u)   # (B, T, E)
    np.testing.assert_allclose(mixer(x).data, plain.data, rtol=1e-10, atol=1e-12)
    assert np.abs(with_decay.layers[0].token_mixer(x).data - plain.data).max() > 1e-2
    assert np.abs(with_decay(idx)[0].data - without(idx)[0].data).max() > 1e-2


class TorchTransNormerLM(torch.nn.Module):
    def __init__(self, decay):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, EMBED)
        self.layers = torch.nn.ModuleList([TorchTransNormerBlock(EMBED, HEADS, layer, LAYERS)
                                           for layer in range(LAYERS)])
        if not decay:
            for block in self.layers:
                block.token_mixer.slopes = torch.zeros(HEADS, dtype=torch.float64)
        self.head = torch.nn.Linear(EMBED, VOCAB, bias=False)

    def forward(self, idx, targets):
        x = self.embed(idx)
        for block in self.layers:
            x = block(x)
        logits = self.head(srms_norm(x))
        return TF.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


@pytest.mark.parametrize("form", ["blocked", "naive", "recurrent"])
@pytest.mark.parametrize("decay", [True, False])
def test_loss_and_gradients_match_torch(decay, form):
    torch.manual_seed(4)
    twin = TorchTransNormerLM(decay).double()
    model = make_model(decay)
    model.load_state_dict(twin.state_dict())
    idx, targets = tokens((2, 67), seed=5), tokens((2, 67), seed=6)
    want = twin(torch.from_numpy(idx), torch.from_numpy(targets))
    want.backward()
    _, loss = model(mg.tensor(idx), mg.tensor(targets), form=form)
    loss.backward()
    np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-12)
    torch_grads = dict(twin.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    assert names == list(torch_grads) and any("lrpe.theta" in n for n in names)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.data, torch_grads[name].grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=name)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match=r"expected token ids of shape \(B, T\)"):
        make_model()(mg.tensor(tokens((5,), seed=0)))
