"""Causal linear attention, from Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention
(Katharopoulos et al., 2020, arXiv:2006.16236), as BASED uses it (Simple linear attention language models balance
the recall-throughput tradeoff, Arora et al., 2024, arXiv:2402.18668): attention in O(T) time.

Replace the softmax kernel e^(q.k) by a dot product of features, phi(q).phi(k). The sum over keys then factors:

    o_i = sum_{j<=i} (phi(q_i) . phi(k_j)) v_j / (phi(q_i) . sum_{j<=i} phi(k_j) + eps)
        = phi(q_i) S_i / (phi(q_i) . z_i + eps),     S_i = sum_{j<=i} phi(k_j) v_j^T (F, Dv),  z_i = sum_{j<=i} phi(k_j)

The kernels take the features, fq = phi(Q) and fk = phi(K), as their inputs: the feature map (elu + 1, BASED's
2nd-order Taylor map, or a learned one) is applied by the caller (minigrad/nn/linear_attention.py), so its
gradient flows through ordinary autograd, and one kernel serves every map. Three forms of the same function:

| form | where | cost |
|---|---|---|
| quadratic: O = (tril(fq fk^T) V) / rowsum(tril(fq fk^T)) | `reference.forward` | O(T^2 (F + Dv)) |
| recurrent: S += fk_t v_t^T, z += fk_t, o_t = fq_t S / (fq_t . z) | `reference.recurrent_step` | O(F Dv) a token |
| chunked (chunks of C): O_c = fq_c S_prev + tril(fq_c fk_c^T) V_c | `cpu.py`, `cuda.py` | O(T C (F+Dv) + T F Dv) |

The chunked form computes the same sums as the quadratic one: the intra-chunk part is the quadratic form on a
C x C tile, the inter-chunk part reads the state S of all earlier chunks (in the recurrent form's state).

The normalizer. The denominator is linear attention itself with a column of ones appended to V:
[num, den] = causal_product(fq, fk, [V, 1]). The kernels compute that product once and divide afterwards;
`normalize=False` drops the denominator (fla's and BASED's un-normalized variants: o_i = fq_i S_i). `eps` (1e-12,
as BASED) only guards a query that sees no key (all features zero, e.g. padded keys): it then gets o = 0. With
positive feature products (elu + 1, and the Taylor map, whose phi(q).phi(k) > 0 for all q, k: both maps are
defined in minigrad/nn/linear_attention.py) the denominator is otherwise positive. A feature map with negative
values can make it vanish: normalize=False there.

Backward. The gradient of a causal product is causal products again, with the roles of the inputs exchanged and
time reversed for the sums over later positions (i >= j); with r = 1 / (den + eps), V' = [V, 1] and
dO' = [r dO, -r rowsum(dO * O)] (the gradients of the numerator and of the denominator):

    dfq_i = sum_{j<=i} (dO'_i . V'_j) fk_j        = causal_product(dO', V', fk)
    dfk_j = sum_{i>=j} (dO'_i . V'_j) fq_i        = reversed causal_product(V', dO', fq)
    dV_j  = sum_{i>=j} (fq_i . fk_j) dO'_i        = reversed causal_product(fk, fq, dO')[..., :Dv]

so the backward is three calls of the forward's kernel. The kernel has an optional per-head decay
lambda_h^(i-j) on the pair (i, j): Lightning Attention (kernels/lightning_attention) is this kernel with decay.

Layout and API (cpu and cuda; the reference has the same names, its backward takes neither o nor den):

    o, den = forward(fq, fk, v, causal=True, normalize=True, eps=1e-12)   # den (B, Hq, T), None if not normalize
    dfq, dfk, dv = backward(fq, fk, v, o, den, do, causal=True, normalize=True, eps=1e-12)

Shapes: fq (B, Hq, T, F), fk (B, Hk, T, F), v (B, Hv, T, Dv) -> o (B, Hq, T, Dv). Query head h reads key head
h // (Hq // Hk) and value head h // (Hq // Hv) (grouped heads, as kernels/flash_attention). `causal=False` is
o_i = fq_i (fk^T V') / ...: two matrix products, no chunks needed. A padded key is a key whose features are zero.
"""
from kernels.common import array_module, check_feature_inputs, repeat_heads, sum_head_groups

EPS = 1e-12


def check_chunk(op, chunk):
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"{op}: chunk must be a positive int, got {chunk!r}")



# ---- shared by cpu.py and cuda.py: they differ only in the causal product they pass in ----------------

def reverse_time(x):
    """(B, H, T, E) with the positions in reverse order, contiguous."""
    return array_module(x).ascontiguousarray(x[:, :, ::-1])


def reversed_product(product, a, b, c, slope=None):
    """out_j = sum_{i>=j} lambda^(i-j) (a_j . b_i) c_i: the causal product of the time-reversed sequences."""
    return reverse_time(product(reverse_time(a), reverse_time(b), reverse_time(c), slope))


def product_backward(product, a, b, c, dout, slope=None):
    """(da, db, dc) of out = product(a, b, c, slope), out_i = sum_{j<=i} lambda^(i-j) (a_i . b_j) c_j,
    all with a's heads (repeat shared heads first):

        da_i = sum_{j<=i} lambda^(i-j) (dout_i . c_j) b_j     (causal)
        db_j = sum_{i>=j} lambda^(i-j) (dout_i . c_j) a_i     (reversed)
        dc_j = sum_{i>=j} lambda^(i-j) (a_i . b_j) dout_i     (reversed)
    """
    return (product(dout, c, b, slope), reversed_product(product, c, dout, a, slope),
            reversed_product(product, b, a, dout, slope))


def with_ones(v):
    """[v, 1]: (B, H, T, Dv) -> (B, H, T, Dv + 1); the last column of the product is then the denominator."""
    xp = array_module(v)
    return xp.concatenate([v, xp.ones(v.shape[:-1] + (1,), v.dtype)], axis=-1)


def attention_forward(op, product, fq, fk, v, causal, normalize, eps):
    """(o, den) from a causal product (see the module doc)."""
    check_feature_inputs(op, fq, fk, v)
    xp, Hq = array_module(fq), fq.shape[1]
    values = with_ones(v) if normalize else v
    if causal:
        out = product(fq, fk, values)
    else:
        out = fq @ (repeat_heads(fk, Hq).swapaxes(-1, -2) @ repeat_heads(values, Hq))  # (T, F) (F, Dv')
    if not normalize:
        return out, None
    den = xp.ascontiguousarray(out[..., -1])                                           # (B, Hq, T)
    return out[..., :-1] / (den + eps)[..., None], den


def attention_backward(op, product, fq, fk, v, o, den, do, causal, normalize, eps):
    """(dfq, dfk, dv) from the forward's o, den and the upstream gradient do."""
    check_feature_inputs(op, fq, fk, v, do)
    if normalize and (den is None or tuple(den.shape) != tuple(o.shape[:-1])):
        raise ValueError(f"{op}: normalize=True needs the forward's den of shape {tuple(o.shape[:-1])}, got "
                         f"{None if den is None else tuple(den.shape)}")
    xp, Hq, Hk, Hv, Dv = array_module(fq), fq.shape[1], fk.shape[1], v.shape[1], v.shape[3]
    fk, v = repeat_heads(fk, Hq), repeat_heads(v, Hq)
    if normalize:                                           # o = num / (den + eps): d num, d den
        r = 1 / (den + eps)                                                            # (B, Hq, T)
        dout = xp.concatenate([do * r[..., None], (-(do * o).sum(axis=-1) * r)[..., None]], axis=-1)
        values = with_ones(v)                                                          # (B, Hq, T, Dv + 1)
    else:
        dout, values = do, v
    if causal:
        dfq, dfk, dvalues = product_backward(product, fq, fk, values, dout)
    else:
        dfq = dout @ (values.swapaxes(-1, -2) @ fk)                                   # (T, Dv') (Dv', F)
        dfk = values @ (dout.swapaxes(-1, -2) @ fq)
        dvalues = fk @ (fq.swapaxes(-1, -2) @ dout)
    return dfq, sum_head_groups(dfk, Hk), sum_head_groups(xp.ascontiguousarray(dvalues[..., :Dv]), Hv)
