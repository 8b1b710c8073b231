"""The Numba CPU sliding-window attention (tiled online softmax on the band) against the NumPy reference, and the
minigrad op `sliding_window_attention` against PyTorch's scaled_dot_product_attention with a band mask."""
import numpy as np
import pytest
import torch

from kernels.sliding_window_attention import cpu, reference
import minigrad
from minigrad.nn.sliding_window_attention import sliding_window_attention
from book.testing import assert_close, check_against_torch

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
CASES = [  # heads, T, S, D, window, padding
    ("MHA", 13, 13, 8, 1, None),
    ("MHA", 40, 40, 16, 5, None),
    ("GQA", 40, 40, 8, 17, "random"),
    ("MQA", 63, 63, 8, 33, "random"),
    ("DiffQKV", 40, 63, 16, 100, "random"),   # window >= T
    ("DiffQKV-v", 63, 40, 8, 9, None),        # queries past the last key see nothing
    ("GQA", 63, 63, 8, 4, "leading"),         # the first queries of batch 0 see no key
    ("MHA", 40, 13, 8, 6, "all"),             # no query of batch 0 sees a key
    ("MQA", 200, 200, 8, 70, "random"),       # several default-sized tiles, band edges inside tiles
]
BLOCKS = [(16, 8), (64, 64)]


def case_id(case):
    heads, T, S, D, window, padding = case
    return f"{heads}-T{T}-S{S}-D{D}-w{window}-{padding}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("blocks", BLOCKS, ids=lambda b: f"blocks{b[0]}x{b[1]}")
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cpu_kernels_match_the_reference(case, blocks, dtype, attention_inputs):
    heads, T, S, D, window, padding = case
    inputs = attention_inputs(heads=heads, T=T, S=S, D=D, padding=padding)
    mask, scale = inputs["key_padding_mask"], None if D == 8 else 0.3
    q, k, v, do = (inputs[n].astype(dtype) for n in ("q", "k", "v", "do"))
    want_o, want_lse = reference.forward(*(a.astype(np.float64) for a in (q, k, v)), window, mask, scale)
    want_grads = reference.backward(*(a.astype(np.float64) for a in (q, k, v, do)), window, mask, scale)
    o, lse = cpu.forward(q, k, v, window, mask, scale, *blocks)
    grads = cpu.backward(q, k, v, o, lse, do, window, mask, scale, *blocks)
    tol = TOLERANCES[dtype]
    assert o.dtype == lse.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_close("O", o, want_o, **tol)
    assert_close("L", lse, want_lse, **tol)
    for name, g, want in zip("qkv", grads, want_grads):
        assert g.shape == inputs[name].shape
        assert_close(f"d{name}", g, want, **tol)


def torch_band_sdpa(q, k, v, window, key_padding_mask=None):
    Hq, T, S = q.shape[1], q.shape[2], k.shape[2]
    k, v = k.repeat_interleave(Hq // k.shape[1], dim=1), v.repeat_interleave(Hq // v.shape[1], dim=1)
    gap = torch.arange(T)[:, None] - torch.arange(S)[None, :]
    seen = (gap >= 0) & (gap < window)
    if key_padding_mask is not None:
        seen = seen & key_padding_mask[:, None, None, :]
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=seen)


@pytest.mark.parametrize("heads, T, window, padding", [("MHA", 13, 4, None), ("GQA", 40, 9, "random"),
                                                       ("DiffQKV", 63, 16, "random"), ("MQA", 40, 64, None)])
def test_minigrad_op_matches_torch(heads, T, window, padding, attention_inputs):
    inputs = attention_inputs(heads=heads, T=T, D=16, Dv=8, padding=padding)
    args = [inputs["q"], inputs["k"], inputs["v"]] + ([inputs["key_padding_mask"]] if padding else [])

    def mg_fn(q, k, v, mask=None):
        return sliding_window_attention(q, k, v, window, key_padding_mask=mask)

    def torch_fn(q, k, v, mask=None):
        return torch_band_sdpa(q, k, v, window, mask)
    check_against_torch(mg_fn, torch_fn, args)


def test_window_covering_the_sequence_is_causal_attention(attention_inputs):
    inputs = attention_inputs(heads="GQA", T=40, D=8)
    q, k, v = (minigrad.tensor(inputs[n]) for n in "qkv")
    got = sliding_window_attention(q, k, v, window=40).data
    want = torch.nn.functional.scaled_dot_product_attention(
        *(torch.tensor(inputs[n]).repeat_interleave(4 // inputs[n].shape[1], dim=1) for n in "qkv"), is_causal=True)
    assert_close("O", got, want.numpy(), rtol=1e-10, atol=1e-12)
