"""book.objectives.meap: per-row mask draws (statistics; unlike the official code's one shared pattern from 51),
their application (hand-worked), and MEAP's next-token loss of minigrad's GPT against its PyTorch twin fed by a
PyTorch formulation of the same masks: loss and every parameter's gradient, float64 and float32, padded rows."""
import pytest
import torch
import torch.nn.functional as TF

import minigrad as mg
from minigrad.backend import np
from book.models.gpt import GPT, GPTConfig
from book.objectives.meap import apply_meap_mask, draw_meap_mask, meap_loss
from book.objectives.mlm import IGNORE_INDEX
from book.testing import TOLERANCES, assert_close
from book.torch_reference import GPT as TorchGPT
from book.torch_reference import torch_state_dict

VOCAB = 29                      # 28 text tokens and the added [MASK]
MASK_ID = 28


def test_each_row_gets_its_own_mask_of_int_r_L_positions():
    rng = np.random.default_rng(0)
    B, T = 400, 40
    lengths = rng.integers(1, T + 1, size=B)
    mask = draw_meap_mask(B, T, rng, ratio=0.15, lengths=lengths)
    assert mask.dtype == bool and mask.shape == (B, T)
    assert (mask.sum(axis=1) == np.maximum(1, (0.15 * lengths).astype(int))).all()
    assert not (mask & (np.arange(T) >= lengths[:, None])).any()              # never past a row's length
    full = draw_meap_mask(B, T, rng)                                             # every row of length T
    assert (full.sum(axis=1) == 6).all()
    # rows differ: the official code writes one pattern into every row
    assert len({row.tobytes() for row in full}) > 0.99 * B
    # positions are uniform, the last one included
    freq = full.mean(axis=0)
    assert np.abs(freq - 6 / T).max() < 5 * np.sqrt(6 / T * (1 - 6 / T) / B)
    # far more than the official 51 patterns over a run
    patterns = {draw_meap_mask(1, T, rng)[0].tobytes() for _ in range(300)}
    assert len(patterns) > 290


def test_draw_meap_mask_checks_its_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"draw_meap_mask: lengths must be \(2,\) integers in \[1, 5\]"):
        draw_meap_mask(2, 5, rng, lengths=np.array([3, 6]))
    with pytest.raises(ValueError, match=r"draw_meap_mask: ratio must be in \[0, 1\), got 1.5"):
        draw_meap_mask(2, 5, rng, ratio=1.5)


def test_apply_meap_mask_by_hand():
    tokens = np.array([[5, 6, 7, 8, 9, 10],
                       [11, 12, 13, 0, 0, 0]])                                   # row 1: 3 real tokens, then padding
    mask = np.array([[0, 1, 0, 0, 1],
                     [1, 0, 0, 0, 0]], dtype=bool)
    inputs, targets = apply_meap_mask(tokens, mask, MASK_ID, lengths=np.array([5, 2]))
    assert inputs.tolist() == [[5, MASK_ID, 7, 8, MASK_ID], [MASK_ID, 12, 13, 0, 0]]
    assert targets.tolist() == [[6, 7, 8, 9, 10], [12, 13, -100, -100, -100]]  # the originals, masked or not
    with pytest.raises(ValueError, match="apply_meap_mask: the mask covers positions past a row's length"):
        apply_meap_mask(tokens, np.ones((2, 5), dtype=bool), MASK_ID, lengths=np.array([5, 2]))
    with pytest.raises(ValueError, match=r"apply_meap_mask: mask must be a bool array \(B, T\) = \(2, 5\)"):
        apply_meap_mask(tokens, mask[:, :4], MASK_ID)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_meap_loss_and_every_gradient_match_torch(dtype):
    config = GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=3, n_embd=24)
    mg.manual_seed(0)
    model = GPT(config).to(getattr(mg, dtype))
    twin = TorchGPT(config).to(getattr(torch, dtype))
    twin.load_state_dict(torch_state_dict(model))
    rng = np.random.default_rng(1)
    B, T = 3, 11                                                                 # odd length
    lengths = np.array([11, 7, 3])                                               # input positions with a target
    tokens = rng.integers(0, MASK_ID, size=(B, T + 1))
    tokens[np.arange(T + 1)[None] > lengths[:, None]] = 0                        # padding after the last real token
    mask = draw_meap_mask(B, T, rng, ratio=0.25, lengths=lengths)

    inputs, targets = apply_meap_mask(tokens, mask, MASK_ID, lengths)
    logits, _ = model(mg.tensor(inputs))
    loss = meap_loss(logits, targets)

    t_tokens, t_mask = torch.from_numpy(tokens), torch.from_numpy(mask)
    t_inputs = torch.where(t_mask, MASK_ID, t_tokens[:, :-1])
    t_targets = torch.where(torch.arange(T)[None] < torch.from_numpy(lengths)[:, None], t_tokens[:, 1:], -100)
    t_logits, _ = twin(t_inputs)
    t_loss = TF.cross_entropy(t_logits.reshape(-1, VOCAB), t_targets.reshape(-1), ignore_index=-100)
    assert inputs.tolist() == t_inputs.tolist() and targets.tolist() == t_targets.tolist()
    assert (targets[mask] != MASK_ID).all() and (targets != IGNORE_INDEX).sum() == lengths.sum()
    tol = TOLERANCES[dtype]
    assert_close(f"[{dtype}] logits", logits.data, t_logits.detach().numpy(), **tol)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)
    loss.backward()
    t_loss.backward()
    params = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert p.grad.dtype == p.dtype, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, params[name].grad.numpy(), **tol)


def test_meap_loss_checks_shapes():
    with pytest.raises(ValueError, match=r"meap_loss: logits of shape \(2, 5, 7\) and labels of shape \(2, 4\)"):
        meap_loss(mg.zeros(2, 5, 7), np.zeros((2, 4), dtype=np.int64))
