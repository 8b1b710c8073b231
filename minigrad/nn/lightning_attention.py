"""Lightning Attention (TransNormerLLM, Qin et al.): causal linear attention with a per-head exponential decay.

    O_t = sum_{s<=t} lambda_h^(t-s) (q_t . k_s) v_s,      lambda_h = e^(-slope_h)

No softmax, no feature map, no denominator: TransNormerLLM applies SiLU to q and k before this op and SRMSNorm to
its output. The op's forward and backward are the blocked kernels of kernels/lightning_attention (intra-block
decay matrix, inter-block decayed KV state): NumPy data runs the Numba CPU kernel, CuPy data the CUDA kernels.
The slopes may be fixed (TransNormerLLM's, `transnormer_slopes`) or learned: a Tensor that requires grad gets
dL/dslope from the same three products as dq and dk.
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
