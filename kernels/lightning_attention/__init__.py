"""Lightning Attention, the attention of TransNormerLLM, from Scaling TransNormer to 175 Billion Parameters (Qin et
al., 2023, arXiv:2307.14995), in its blocked form from Lightning Attention-2: A Free Lunch for Handling Unlimited
Sequence Lengths in Large Language Models (Qin et al., 2024, arXiv:2401.04658): linear attention with a per-head
exponential decay.

    O_t = sum_{s<=t} lambda_h^(t-s) (q_t . k_s) v_s,      lambda_h = e^(-slope_h) in (0, 1]

No softmax, no 1/sqrt(d), no denominator (TransNormerLLM normalizes the output with SRMSNorm instead). Per head,
in matrix form O = (Q K^T * M) V with the decay mask M_ts = lambda^(t-s) for s <= t, else 0. Three forms:

| form | where |
|---|---|
| naive: the (T, T) masked decay matrix | `reference.forward` |
| recurrent: kv_t = lambda kv_{t-1} + k_t^T v_t (D, Dv), o_t = q_t kv_t | `reference.recurrent_step` (decoding) |
| blocked (Lightning Attention-2), block of C positions, rows a = 0 .. n-1: | `cpu.py`, `cuda.py` |
|   intra: O_i = ((Q_i K_i^T) * D) V_i, D_ab = lambda^(a-b) for a >= b |  |
|   inter: O_i += lambda^(a+1) Q_i kv;  kv <- lambda^n kv + (K_i * lambda^(n-1-b))^T V_i |  |

The blocked form is the causal product of kernels/linear_attention with decay (that module's cpu/cuda kernels take
a per-head `slope`); every decay weight is lambda to a power >= 0, so nothing overflows.

Backward: dQ, dK, dV are three such products (kernels/linear_attention `product_backward`). The decay, when it is
learned, gets its gradient from them without another pass. With G_t = -slope t, the pair (t, s) carries
e^(G_t - G_s), so dL/dG_t = q_t . dq_t - k_t . dk_t (the first term counts t as a query, the second as a key), and

    dL/dslope_h = -sum_{b, t} t (q_t . dq_t - k_t . dk_t)

(k and dk per query head, before grouped heads are summed).

Layout and API (cpu, cuda and reference alike):

    o = forward(q, k, v, slope)                       # q (B, Hq, T, D), k (B, Hk, T, D), v (B, Hv, T, Dv)
    dq, dk, dv, dslope = backward(q, k, v, do, slope)  # slope (Hq,) >= 0; slope 0 is plain causal linear attention

Query head h reads key head h // (Hq // Hk) and value head h // (Hq // Hv), and decays with slope[h].
`transnormer_slopes(H, layer, num_layers)` gives TransNormerLLM's fixed slopes (ALiBi's, scaled per layer).
"""
import math

from kernels.common import array_module, check_feature_inputs, repeat_heads, sum_head_groups
from kernels.linear_attention import product_backward


def transnormer_slopes(num_heads, layer=0, num_layers=1):
    """TransNormerLLM's decay rates: ALiBi's head slopes 2^(-8 (h+1) / H) (H a power of two; otherwise the
    nearest power's slopes, then every other slope of twice as many heads), times 1 - layer / (L - 1) + 1e-5, so
    lower layers decay faster. Returns a list of num_heads floats; lambda_h = e^(-slope_h)."""
    def power_of_two(n):
        return [2 ** (-8 * (h + 1) / n) for h in range(n)]

    def alibi(n):
        if math.log2(n).is_integer():
            return power_of_two(n)
        below = 2 ** math.floor(math.log2(n))
        return power_of_two(below) + alibi(2 * below)[0::2][:n - below]

    if num_heads < 1 or not 0 <= layer < num_layers:
        raise ValueError(f"transnormer_slopes: need num_heads >= 1 and 0 <= layer < num_layers, got "
                         f"{num_heads}, {layer}, {num_layers}")
    scale = 1 - layer / (num_layers - 1) + 1e-5 if num_layers > 1 else 1.0
    return [s * scale for s in alibi(num_heads)]


def check_slope(op, q, slope):
    """slope: (Hq,) real, >= 0, on the same device as q."""
    if tuple(slope.shape) != (q.shape[1],):
        raise ValueError(f"{op}: slope must have shape (Hq,) = {(q.shape[1],)}, one decay per query head; got "
                         f"{tuple(slope.shape)}")
    if array_module(slope) is not array_module(q):
        raise TypeError(f"{op}: slope and q must be on the same device")
    if bool((slope < 0).any()):
        raise ValueError(f"{op}: slopes must be >= 0 (lambda = e^-slope <= 1); got {slope}")


def lightning_forward(op, product, q, k, v, slope):
    check_feature_inputs(op, q, k, v)
    check_slope(op, q, slope)
    return product(q, k, v, slope)


def lightning_backward(op, product, q, k, v, do, slope):
    """(dq, dk, dv, dslope) from three causal products; see the module doc."""
    check_feature_inputs(op, q, k, v, do)
    check_slope(op, q, slope)
    xp, Hq = array_module(q), q.shape[1]
    k_heads, v_heads = repeat_heads(k, Hq), repeat_heads(v, Hq)
    dq, dk, dv = product_backward(product, q, k_heads, v_heads, do, slope)
    t = xp.arange(q.shape[2], dtype=q.dtype)
    dslope = -(((q * dq).sum(axis=-1) - (k_heads * dk).sum(axis=-1)) @ t).sum(axis=0)   # (B, Hq, T) @ (T,)
    return dq, sum_head_groups(dk, k.shape[1]), sum_head_groups(dv, v.shape[1]), dslope.astype(q.dtype)
