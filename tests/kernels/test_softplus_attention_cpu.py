"""The Numba CPU softplus attention (two tiled passes; LSSA and LSSAR) against the NumPy reference, and the
minigrad op `softplus_attention` against a PyTorch formulation through check_against_torch."""
import numpy as np
import pytest
import torch

from kernels.softplus_attention import cpu, reference
import minigrad
from minigrad.nn.softplus_attention import softplus_attention
from book.testing import assert_close, check_against_torch

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [  # heads, T, S, causal, padding, length_scaled, power
    ("MHA", 13, 13, True, None, True, None),
    ("GQA", 40, 40, False, "random", False, None),
    ("MQA", 63, 63, True, "random", True, 3),
    ("DiffQKV", 40, 63, False, None, True, 15),
    ("DiffQKV-v", 63, 40, True, None, True, 7),
    ("GQA", 63, 63, True, "leading", True, 3),            # the first queries of batch 0 see no key
    ("MHA", 40, 13, False, "all", True, None),            # no query of batch 0 sees a key
    ("MQA", 130, 200, True, "random", True, 3),           # several default-sized tiles, the last ones ragged
]
BLOCKS = [(16, 8), (64, 64)]


def case_id(case):
    heads, T, S, causal, padding, length_scaled, power = case
    return (f"{heads}-T{T}-S{S}-{'causal' if causal else 'full'}-{padding}-{'logn' if length_scaled else 'fixed'}-"
            f"{'LSSA' if power is None else f'LSSAR{power}'}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("blocks", BLOCKS, ids=lambda b: f"blocks{b[0]}x{b[1]}")
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cpu_kernels_match_the_reference(case, blocks, dtype, attention_inputs):
    heads, T, S, causal, padding, length_scaled, power = case
    inputs = attention_inputs(heads=heads, T=T, S=S, D=8, Dv=5, padding=padding)
    options = (causal, inputs["key_padding_mask"], None, length_scaled, power)
    q, k, v, do = (inputs[n].astype(dtype) for n in ("q", "k", "v", "do"))
    want_o = reference.forward(*(a.astype(np.float64) for a in (q, k, v)), *options)
    want_grads = reference.backward(*(a.astype(np.float64) for a in (q, k, v, do)), *options)
    o, stats = cpu.forward(q, k, v, *options, *blocks)
    grads = cpu.backward(q, k, v, o, stats, do, *options, *blocks)
    tol = TOLERANCES[dtype]
    assert o.dtype == stats.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, want_o, **tol)
    for name, g, want in zip("qkv", grads, want_grads):
        assert g.shape == inputs[name].shape
        assert_close(f"d{name}", g, want, **tol)


def test_stats_are_the_row_sums(attention_inputs):
    """stats[0] = Z = sum_j softplus(x_ij), stats[2] = sum_j W_ij (1 for LSSA), stats[1] = u_max (0 for LSSA)."""
    inputs = attention_inputs(heads="MHA", T=13, padding="leading")
    q, k, v, mask = (inputs[n] for n in ("q", "k", "v", "key_padding_mask"))
    _, lssa = cpu.forward(q, k, v, True, mask)
    _, lssar = cpu.forward(q, k, v, True, mask, power=3)
    seen = reference.visible(2, 13, 13, True, mask)
    n = seen.sum(axis=-1)                                                          # (B, 1, T)
    x = 8 ** -0.5 * np.log(np.maximum(n, 1))[..., None] * (q @ k.swapaxes(-1, -2))
    z = np.where(seen, np.logaddexp(0, x), 0).sum(axis=-1)
    n = np.broadcast_to(n, z.shape)
    assert_close("Z", lssa[0], z, rtol=1e-12, atol=0)
    assert_close("Z", lssar[0], z, rtol=1e-12, atol=0)
    assert (lssa[1] == 0).all() and (abs(lssa[2][n > 0] - 1) < 1e-12).all() and (lssa[2][n == 0] == 0).all()
    assert (lssar[1] >= 0).all() and (lssar[2][n > 0] >= 1 - 1e-12).all()     # the largest (u / u_max)^p is 1


# ---- the minigrad op against PyTorch -----------------------------------------------------------------------

def torch_softplus_attention(q, k, v, causal, mask, power):
    """LSSA / LSSAR in PyTorch ops (the definition: u^p, uniform rows keep A)."""
    B, Hq, T, D = q.shape
    S = k.shape[2]
    k, v = k.repeat_interleave(Hq // k.shape[1], dim=1), v.repeat_interleave(Hq // v.shape[1], dim=1)
    seen = (torch.ones(T, S, dtype=torch.bool).tril() if causal else torch.ones(T, S, dtype=torch.bool))
    seen = seen.expand(B, 1, T, S) if mask is None else seen & mask[:, None, None, :]
    n = seen.sum(dim=-1, keepdim=True).to(q.dtype)
    x = D ** -0.5 * torch.log(n.clamp(min=1)) * (q @ k.transpose(-1, -2))
    p = torch.where(seen, torch.nn.functional.softplus(x), 0)
    z = p.sum(dim=-1, keepdim=True)
    a = p / torch.where(z == 0, 1, z)
    if power is None:
        return a @ v
    u = torch.relu(n * a - 1)
    total = (u ** power).sum(dim=-1, keepdim=True)
    return torch.where(u.amax(dim=-1, keepdim=True) <= 0, a, u ** power / torch.where(total == 0, 1, total)) @ v


@pytest.mark.parametrize("heads, T, causal, padding, power", [
    ("MHA", 13, True, None, None), ("GQA", 40, False, "random", None), ("DiffQKV", 63, True, "random", 3),
    ("MQA", 40, True, "leading", 7)])
def test_minigrad_op_matches_torch(heads, T, causal, padding, power, attention_inputs):
    inputs = attention_inputs(heads=heads, T=T, D=16, Dv=8, padding=padding)
    args = [inputs["q"], inputs["k"], inputs["v"]] + ([inputs["key_padding_mask"]] if padding else [])

    def mg_fn(q, k, v, mask=None):
        return softplus_attention(q, k, v, causal, key_padding_mask=mask, power=power)

    def torch_fn(q, k, v, mask=None):
        return torch_softplus_attention(q, k, v, causal, mask, power)
    tolerances = None if power is None else {"float32": dict(rtol=1e-3, atol=2e-4)}
    check_against_torch(mg_fn, torch_fn, args, tolerances=tolerances)


def test_op_errors_name_the_op(attention_inputs):
    inputs = attention_inputs(heads="GQA", T=13)
    q, k, v = (minigrad.tensor(inputs[n]) for n in "qkv")
    with pytest.raises(ValueError, match="softplus_attention cpu forward: power"):
        softplus_attention(q, k, v, power=0)
    with pytest.raises(TypeError, match="softplus_attention: query, key and value must be Tensors"):
        softplus_attention(q, inputs["k"], v)
