"""The CuPy backend: the same computations on a GPU agree with the CPU. Skipped, with the reason, without one."""
import pytest

import minigrad as mg
from minigrad import backend
from minigrad.backend import np
from book.models.gpt import GPT, GPTConfig

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.gpu_available(), reason=f"no usable GPU: {backend.gpu_status()}")]


@pytest.mark.parametrize("dtype", [mg.float32, mg.float64])
def test_ops_on_gpu_match_cpu(dtype):
    gen = mg.Generator(0)
    x = mg.randn(4, 5, 6, dtype=dtype, generator=gen)
    w = mg.randn(6, 3, dtype=dtype, generator=gen)

    def run(device):
        a, b = x.to(device).detach().requires_grad_(), w.to(device).detach().requires_grad_()
        out = ((a @ b).gelu().softmax(-1) * a[..., :3].tanh()).logsumexp(-1).sum()
        out.backward()
        return out.item(), backend.to_numpy(a.grad.data), backend.to_numpy(b.grad.data)

    cpu, gpu = run("cpu"), run("cuda")
    for c, g in zip(cpu, gpu):
        np.testing.assert_allclose(g, c, rtol=1e-4 if dtype == mg.float32 else 1e-10, atol=1e-5)


def test_gpt_training_step_on_gpu_matches_cpu():
    config = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    rng = np.random.default_rng(0)
    idx, targets = (rng.integers(0, 50, size=(2, 16)) for _ in range(2))
    grads = {}
    for device in ("cpu", "cuda"):
        mg.manual_seed(0)
        model = GPT(config).to(device)
        _, loss = model(mg.tensor(idx, device=device), mg.tensor(targets, device=device))
        loss.backward()
        grads[device] = {n: backend.to_numpy(p.grad.data) for n, p in model.named_parameters()}
    for name, g in grads["cpu"].items():
        np.testing.assert_allclose(grads["cuda"][name], g, rtol=1e-3, atol=1e-5, err_msg=name)
