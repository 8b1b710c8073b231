"""book.models.gpt.GPT against its PyTorch twin: logits, loss and every parameter's gradient."""
import pytest
import torch

import minigrad as mg
from minigrad.backend import np
from book.models.gpt import GPT, GPTConfig
from book.testing import TOLERANCES, assert_close
from book.torch_reference import GPT as TorchGPT
from book.torch_reference import torch_state_dict

CONFIG = GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=3, n_embd=24)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bias", [True, False])
def test_gpt_matches_torch(dtype, bias):
    config = GPTConfig(**{**CONFIG.__dict__, "bias": bias})
    mg.manual_seed(0)
    model = GPT(config)
    model.to(getattr(mg, dtype))
    twin = TorchGPT(config).to(getattr(torch, dtype))
    twin.load_state_dict(torch_state_dict(model))
    rng = np.random.default_rng(1)
    idx = rng.integers(0, config.vocab_size, size=(3, 11))      # T=11 < block_size: an odd length
    targets = rng.integers(0, config.vocab_size, size=(3, 11))

    logits, loss = model(mg.tensor(idx), mg.tensor(targets))
    t_logits, t_loss = twin(torch.from_numpy(idx), torch.from_numpy(targets))
    tol = TOLERANCES[dtype]
    assert_close(f"[{dtype}] logits", logits.data, t_logits.detach().numpy(), **tol)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)

    g = rng.standard_normal(logits.shape).astype(dtype)  # a random upstream gradient on the logits, plus the loss
    (loss + (logits * mg.tensor(g)).sum()).backward()
    (t_loss + (t_logits * torch.from_numpy(g)).sum()).backward()
    torch_params = dict(twin.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    assert sorted(names) == sorted(torch_params)
    for name, p in model.named_parameters():
        assert p.grad.dtype == p.dtype, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, torch_params[name].grad.numpy(), **tol)


def test_gpt_rejects_long_sequences():
    model = GPT(CONFIG)
    with pytest.raises(ValueError, match="sequence length 17 exceeds block_size 16"):
        model(mg.zeros(1, 17, dtype=mg.int64))
