"""Shared pieces of the attention kernels' tests: random inputs (head mappings, ragged lengths, key padding) and
the PyTorch autograd formulation that each NumPy reference is checked against."""
import numpy as np
import pytest
import torch

# (Hq, Hk, Hv): query heads read key head h // (Hq // Hk) and value head h // (Hq // Hv)
HEADS = {"MHA": (2, 2, 2), "GQA": (4, 2, 2), "MQA": (4, 1, 1), "DiffQKV": (4, 2, 1), "DiffQKV-v": (4, 1, 2)}


def _padding(rng, B, S, kind):
    """bool (B, S), True = a real key. 'random': about 30% padded; 'leading': batch 0 pads its first 5 keys (with
    causal, its first 5 queries see nothing); 'all': batch 0 pads every key (all its queries see nothing)."""
    if kind is None:
        return None
    keep = rng.random((B, S)) > 0.3
    keep[:, -1] = True
    if kind == "leading":
        keep[0, :5] = False
    elif kind == "all":
        keep[0] = False
    return keep


def _inputs(B=2, heads="MHA", T=13, S=None, D=8, Dv=None, padding=None, seed=0):
    """float64 q (B, Hq, T, D), k (B, Hk, S, D), v (B, Hv, S, Dv), an upstream gradient do (B, Hq, T, Dv) and a
    key padding mask (or None), as a dict of keyword arguments."""
    Hq, Hk, Hv = HEADS[heads]
    S, Dv = S or T, Dv or D
    rng = np.random.default_rng(seed)
    return dict(q=rng.standard_normal((B, Hq, T, D)), k=rng.standard_normal((B, Hk, S, D)),
                v=rng.standard_normal((B, Hv, S, Dv)), do=rng.standard_normal((B, Hq, T, Dv)),
                key_padding_mask=_padding(rng, B, S, padding))


def _torch_attention(q, k, v, causal=False, key_padding_mask=None, scale=None):
    """(O, L) in PyTorch ops, so that autograd gives the gradients. A query that sees no key: O = 0, L = -inf."""
    B, Hq, T, D = q.shape
    S = k.shape[2]
    k = k.repeat_interleave(Hq // k.shape[1], dim=1)
    v = v.repeat_interleave(Hq // v.shape[1], dim=1)
    scale = D ** -0.5 if scale is None else scale
    seen = torch.ones(B, 1, T, S, dtype=torch.bool)
    if causal:
        seen = seen & torch.ones(T, S, dtype=torch.bool).tril()
    if key_padding_mask is not None:
        seen = seen & torch.as_tensor(key_padding_mask)[:, None, None, :]
    scores = (scale * q @ k.transpose(-1, -2)).masked_fill(~seen, -torch.inf)     # (B, Hq, T, S)
    lse = torch.logsumexp(scores, dim=-1)
    any_seen = seen.any(dim=-1, keepdim=True)
    p = torch.softmax(scores.masked_fill(~any_seen, 0.0), dim=-1) * any_seen       # no NaN rows
    return p @ v, lse


@pytest.fixture(scope="session")
def attention_inputs():
    return _inputs


@pytest.fixture(scope="session")
def torch_attention():
    return _torch_attention
