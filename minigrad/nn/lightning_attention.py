"""Lightning Attention as a minigrad op: causal linear attention with a per-head exponential decay, from Scaling
TransNormer to 175 Billion Parameters (TransNormerLLM; Qin et al., 2023, arXiv:2307.14995) and Lightning
Attention-2 (Qin et al., 2024, arXiv:2401.04658).

The equations (naive, recurrent and blocked forms, and the slope's gradient) are in
kernels/lightning_attention/__init__.py. No softmax, no feature map, no denominator: TransNormerLLM applies SiLU to
q and k before this op and SRMSNorm to its output. The op's forward and backward are the blocked kernels of
kernels/lightning_attention (intra-block decay matrix, inter-block decayed KV state): NumPy data runs the Numba CPU
kernel, CuPy data the CUDA kernels. The slopes may be fixed (TransNormerLLM's, `transnormer_slopes`) or learned: a
Tensor that requires grad gets dL/dslope from the same three products as dq and dk.
"""
from kernels.lightning_attention import transnormer_slopes  # noqa: F401  (re-exported)
from minigrad.nn.linear_attention import _masked_keys, attention_kernels
from minigrad.tensor import Tensor, record


def lightning_attention(query, key, value, slope, key_padding_mask=None):
    """query (B, Hq, T, D), key (B, Hk, T, D), value (B, Hv, T, Dv), slope (Hq,) >= 0 -> (B, Hq, T, Dv).

    slope: a Tensor (learned when it requires grad; the data's dtype and device) or a list / array of fixed
    slopes. slope 0 is causal linear attention without decay or denominator. key_padding_mask: bool (B, T),
    True = a real key (padded keys are zeroed). Grouped heads as flash_attention.
    """
    op = "lightning_attention"
    kernels, mask = attention_kernels(op, "lightning_attention", (query, key, value), key_padding_mask)
    if not isinstance(slope, Tensor):
        slope = Tensor(slope, dtype=query.dtype, device=query.device)
    if slope.dtype != query.dtype:
        raise TypeError(f"{op}: slope has dtype {slope.dtype}, the data {query.dtype}; convert with .float() or "
                        f".double()")
    key = _masked_keys(op, key, mask)
    q, k, v, s = query.data, key.data, value.data, slope.data
    out = kernels.forward(q, k, v, s)

    def backward(grad):
        return kernels.backward(q, k, v, grad, s)
    return record(out, (query, key, value, slope), backward, op)
