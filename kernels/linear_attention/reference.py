"""Linear attention by its definition, in NumPy: the reference the chunked kernels are tested against.

    A = fq fk^T  (B, Hq, T, T), lower-triangular when causal;   num = A V,   den = rowsum(A)
    O = num / (den + eps)        (or O = num when not normalized)

Backward through the full matrix A (not the kernels' exchange of roles, so the two are independent):

    dnum = dO / (den + eps),   dden = -rowsum(dO * O) / (den + eps)
    dA = dnum V^T + dden 1^T  (masked),   dfq = dA fk,   dfk = dA^T fq,   dV = A^T dnum

Also the recurrent form, one token at a time (what a decoder runs): a state S (F, Dv) and a normalizer z (F) per
head replace the whole past, so a step costs O(F Dv) whatever the position. `recurrent_forward` runs it over a
sequence; the tests check quadratic == chunked == recurrent.

The two feature maps of the book, in NumPy (minigrad/nn/linear_attention.py has them as differentiable ops):
    elu_features(x) = elu(x) + 1 > 0
    taylor_features(x) = [1, x / d^(1/4), vec(x x^T) / (sqrt(2) sqrt(d))]      (BASED; 1 + d + d^2 features)
so that taylor_features(q) . taylor_features(k) = 1 + q.k / sqrt(d) + (q.k)^2 / (2 d), the 2nd-order Taylor
expansion of e^(q.k / sqrt(d)).
"""
import math

import numpy as np

from kernels.common import array_module, check_feature_inputs, repeat_heads, sum_head_groups
from kernels.linear_attention import EPS


def elu_features(x):
    """elu(x) + 1: x + 1 for x > 0, e^x otherwise."""
    return np.where(x > 0, x + 1, np.exp(np.minimum(x, 0)))


def taylor_features(x):
    """(..., d) -> (..., 1 + d + d^2): BASED's 2nd-order Taylor feature map (see the module doc)."""
    d = x.shape[-1]
    outer = (x[..., :, None] * x[..., None, :]).reshape(x.shape[:-1] + (d * d,))
    return np.concatenate([np.ones(x.shape[:-1] + (1,), x.dtype), x / d ** 0.25,
                           outer / (math.sqrt(2) * math.sqrt(d))], axis=-1).astype(x.dtype, copy=False)


def _scores(fq, fk, causal):
    """A = fq fk^T, masked to j <= i when causal: (B, Hq, T, T)."""
    a = fq @ repeat_heads(fk, fq.shape[1]).swapaxes(-1, -2)
    return np.tril(a) if causal else a


def forward(fq, fk, v, causal=True, normalize=True, eps=EPS):
    """(O (B, Hq, T, Dv), den (B, Hq, T) or None) by the definition."""
    check_feature_inputs("linear_attention reference forward", fq, fk, v)
    a = _scores(fq, fk, causal)
    num = a @ repeat_heads(v, fq.shape[1])                                        # (B, Hq, T, Dv)
    if not normalize:
        return num, None
    den = a.sum(axis=-1)                                                          # (B, Hq, T)
    return num / (den + eps)[..., None], den


def backward(fq, fk, v, do, causal=True, normalize=True, eps=EPS):
    """(dfq, dfk, dV) from the upstream gradient dO (B, Hq, T, Dv), through the full matrix A."""
    check_feature_inputs("linear_attention reference backward", fq, fk, v, do)
    Hq = fq.shape[1]
    a = _scores(fq, fk, causal)                                                   # (B, Hq, T, T)
    values = repeat_heads(v, Hq)
    if normalize:
        r = 1 / (a.sum(axis=-1) + eps)                                            # (B, Hq, T)
        o = (a @ values) * r[..., None]
        dnum = do * r[..., None]
        da = dnum @ values.swapaxes(-1, -2) - ((do * o).sum(axis=-1) * r)[..., None]
    else:
        dnum = do
        da = do @ values.swapaxes(-1, -2)
    if causal:
        da = np.tril(da)
    dfq = da @ repeat_heads(fk, Hq)
    dfk = da.swapaxes(-1, -2) @ fq
    dv = a.swapaxes(-1, -2) @ dnum
    return dfq, sum_head_groups(dfk, fk.shape[1]), sum_head_groups(dv, v.shape[1])


def recurrent_step(fq, fk, v, state=None, normalizer=None, normalize=True, eps=EPS):
    """One decoding step: (o (B, Hq, Dv), state (B, Hq, F, Dv), normalizer (B, Hq, F) or None).

    fq (B, Hq, F), fk (B, Hk, F), v (B, Hv, Dv): the new token's features and value. state and normalizer
    (None at the first token) hold sum_j fk_j v_j^T and sum_j fk_j over the tokens so far:

        S <- S + fk v^T,   z <- z + fk,   o = fq S / (fq . z + eps)
    NumPy or CuPy arrays.
    """
    xp = array_module(fq)
    B, Hq, F = fq.shape
    fk, v = repeat_heads(fk, Hq), repeat_heads(v, Hq)
    if state is None:
        state = xp.zeros((B, Hq, F, v.shape[-1]), fq.dtype)
        normalizer = xp.zeros((B, Hq, F), fq.dtype) if normalize else None
    state = state + fk[..., :, None] * v[..., None, :]
    o = (fq[..., None, :] @ state)[..., 0, :]                                    # (B, Hq, Dv)
    if not normalize:
        return o, state, None
    normalizer = normalizer + fk
    return o / ((fq * normalizer).sum(axis=-1) + eps)[..., None], state, normalizer


def recurrent_forward(fq, fk, v, normalize=True, eps=EPS):
    """The causal forward's O, one recurrent_step per position (the decoder's view of the same function)."""
    check_feature_inputs("linear_attention reference recurrent_forward", fq, fk, v)
    state = normalizer = None
    out = []
    for t in range(fq.shape[2]):
        o, state, normalizer = recurrent_step(fq[:, :, t], fk[:, :, t], v[:, :, t], state, normalizer, normalize,
                                              eps)
        out.append(o)
    return np.stack(out, axis=2)
