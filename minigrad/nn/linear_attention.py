"""Causal linear attention, from Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention
(Katharopoulos et al., 2020, arXiv:2006.16236), and the Taylor feature map of BASED, from Simple linear attention
language models balance the recall-throughput tradeoff (Arora et al., 2024, arXiv:2402.18668).

Linear attention's equations (quadratic, recurrent and chunked forms, and their backward) are in
kernels/linear_attention/__init__.py; the feature maps, which the kernels take as given, are defined here.
`linear_attention` applies the feature map phi as ordinary minigrad ops (so a learned map gets its gradient from
autograd) and the rest is one op whose forward and backward are the chunked kernels of kernels/linear_attention:
NumPy data runs the Numba CPU kernel, CuPy data the Numba CUDA kernels. Feature maps:

    elu_feature_map(x)    = elu(x) + 1 > 0                                     (Katharopoulos et al.)
    taylor_feature_map(x) = [1, x / d^(1/4), vec(x x^T) / (sqrt(2) sqrt(d))]   (BASED; 1 + d + d^2 features)

so that taylor_feature_map(q) . taylor_feature_map(k) = 1 + x + x^2 / 2 = ((1 + x)^2 + 1) / 2 > 0, x = q.k / sqrt(d),
the 2nd-order Taylor expansion of e^x. `linear_attention_step` is the recurrent form for decoding: a state of
(F x Dv, F) per head instead of a growing KV cache.
"""
import importlib
import math

from minigrad import backend
from minigrad.tensor import Tensor, record

EPS = 1e-12


def elu_feature_map(x):
    """elu(x) + 1: x + 1 for x > 0, e^x otherwise (positive, so the denominator is)."""
    xp = backend.array_module(x.data)
    out = xp.where(x.data > 0, x.data + 1, xp.exp(xp.minimum(x.data, 0))).astype(x.dtype, copy=False)
    return record(out, (x,), lambda g: (g * xp.where(x.data > 0, 1, out).astype(g.dtype, copy=False),),
                  "elu_feature_map")


def taylor_feature_map(x):
    """(..., d) -> (..., 1 + d + d^2): [1, x / d^(1/4), vec(x x^T) / (sqrt(2) sqrt(d))].

    Backward: dx = g_1 / d^(1/4) + (G + G^T) x / (sqrt(2) sqrt(d)), with G the (d, d) block of g for x x^T.
    """
    xp = backend.array_module(x.data)
    d = x.shape[-1]
    r1, r2 = x.dtype.type(d ** -0.25), x.dtype.type(1 / (math.sqrt(2) * math.sqrt(d)))
    outer = x.data[..., :, None] * x.data[..., None, :]                          # (..., d, d)
    out = xp.concatenate([xp.ones(x.shape[:-1] + (1,), x.dtype), x.data * r1,
                          outer.reshape(x.shape[:-1] + (d * d,)) * r2], axis=-1)

    def backward(g):
        block = g[..., 1 + d:].reshape(x.shape[:-1] + (d, d))                  # (..., d, d)
        sym = block + block.swapaxes(-1, -2)
        return (g[..., 1:1 + d] * r1 + (sym @ x.data[..., :, None])[..., 0] * r2,)
    return record(out, (x,), backward, "taylor_feature_map")


FEATURE_MAPS = {"elu": elu_feature_map, "taylor": taylor_feature_map, "identity": lambda x: x}


def attention_kernels(op, package, tensors, key_padding_mask=None):
    """(the cpu or cuda module of kernels/<package>, the mask as an array or None) for Tensors on one device."""
    if not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(f"{op}: query, key and value must be Tensors, got {[type(t).__name__ for t in tensors]}")
    mask = key_padding_mask.data if isinstance(key_padding_mask, Tensor) else key_padding_mask
    devices = {t.device for t in tensors} | ({backend.device_of(mask)} if mask is not None else set())
    if len(devices) != 1:
        raise ValueError(f"{op}: query, key, value and key_padding_mask must be on one device, got {sorted(devices)}")
    return importlib.import_module(f"kernels.{package}.{'cpu' if devices.pop() == 'cpu' else 'cuda'}"), mask


def _feature_map(op, feature_map):
    if callable(feature_map):
        return feature_map
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"{op}: feature_map must be one of {sorted(FEATURE_MAPS)} or a function of a Tensor, got "
                         f"{feature_map!r}")
    return FEATURE_MAPS[feature_map]


def _masked_keys(op, features, mask):
    """Padded keys (mask False) get zero features: no query sees them, in the numerator or the denominator."""
    if mask is None:
        return features
    B, T = features.shape[0], features.shape[2]
    if tuple(mask.shape) != (B, T) or str(mask.dtype) != "bool":
        raise ValueError(f"{op}: key_padding_mask must be bool of shape (B, T) = {(B, T)}, got {mask.dtype} "
                         f"{tuple(mask.shape)}")
    return features * Tensor(mask[:, None, :, None].astype(features.dtype))


def linear_attention(query, key, value, feature_map="elu", causal=True, normalize=True, eps=EPS,
                     key_padding_mask=None):
    """query (B, Hq, T, D), key (B, Hk, T, D), value (B, Hv, T, Dv) -> (B, Hq, T, Dv).

    feature_map: "elu" (elu + 1), "taylor" (BASED), "identity" (query and key are already features) or a function
    of a Tensor (..., D) -> (..., F), e.g. a small learned network. causal: query i sees keys j <= i (False: all
    keys). normalize: divide by the denominator (False: o_i = phi(q_i) S_i, as fla's and BASED's un-normalized
    variants). key_padding_mask: bool (B, T), True = a real key. Grouped heads as flash_attention: query head h reads
    key head h // (Hq // Hk) and value head h // (Hq // Hv).
    """
    op = "linear_attention"
    kernels, mask = attention_kernels(op, "linear_attention", (query, key, value), key_padding_mask)
    phi = _feature_map(op, feature_map)
    return _linear_attention_kernel(phi(query), _masked_keys(op, phi(key), mask), value, kernels, causal, normalize,
                                    eps)


def _linear_attention_kernel(fq, fk, value, kernels, causal, normalize, eps):
    """The chunked kernels on features: one op, forward and backward."""
    out, den = kernels.forward(fq.data, fk.data, value.data, causal, normalize, eps)

    def backward(grad):
        return kernels.backward(fq.data, fk.data, value.data, out, den, grad, causal, normalize, eps)
    return record(out, (fq, fk, value), backward, "linear_attention")


def _repeat_heads(x, heads):
    """(B, H, E) -> (B, heads, E): head h reads head h // (heads // H)."""
    B, H, E = x.shape
    return x if H == heads else x.unsqueeze(2).expand(B, H, heads // H, E).reshape(B, heads, E)


def linear_attention_step(query, key, value, state=None, feature_map="elu", normalize=True, eps=EPS):
    """One decoding step of causal linear attention: (output (B, Hq, Dv), new state).

    query (B, Hq, D), key (B, Hk, D), value (B, Hv, Dv): the new token. state: None at the first token, then what
    the previous step returned, (S (B, Hq, F, Dv), z (B, Hq, F)) = (sum_j phi(k_j) v_j^T, sum_j phi(k_j)), updated
    by the recurrent form in kernels/linear_attention/__init__.py.

    The state's size does not grow with the sequence (a KV cache does). Built from minigrad ops: differentiable.
    """
    phi = _feature_map("linear_attention_step", feature_map)
    Hq = query.shape[1]
    fq, fk, v = phi(query), _repeat_heads(phi(key), Hq), _repeat_heads(value, Hq)
    outer = fk.unsqueeze(-1) * v.unsqueeze(-2)                                   # (B, Hq, F, Dv)
    s, z = (outer, fk) if state is None else (state[0] + outer, state[1] + fk)
    o = (fq.unsqueeze(-2) @ s).squeeze(-2)                                       # (B, Hq, Dv)
    if normalize:
        o = o / ((fq * z).sum(dim=-1, keepdim=True) + eps)
    return o, (s, z)
