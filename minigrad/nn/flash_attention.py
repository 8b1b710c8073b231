"""FlashAttention (Dao et al., 2022, arXiv:2205.14135; FlashAttention-2, Dao, 2023, arXiv:2307.08691) as a
minigrad op: exact softmax attention, the function of `scaled_dot_product_attention`, without the (T, S) score
matrix (the equations and the tiled algorithm are in kernels/flash_attention/__init__.py).

The forward and backward are the tiled kernels of kernels/flash_attention/, chosen by where the data lives:
NumPy arrays run the Numba CPU kernels (float32 or float64), CuPy arrays the Numba CUDA kernels. The forward
keeps only O and the per-row logsumexp L; the backward recomputes the probabilities tile by tile from L.

Beyond `scaled_dot_product_attention`: query heads may share key heads and (independently) value heads
(GQA, MQA, DiffQKV), and a per-batch key padding mask drops padded keys. A query with no visible key gets
output 0 and zero gradients.
"""
from kernels.common import check_inputs
from minigrad.tensor import Tensor, record


def _kernels(device):
    if device == "cpu":
        from kernels.flash_attention import cpu
        return cpu
    from kernels.flash_attention import cuda
    return cuda


def flash_attention(query, key, value, causal=False, key_padding_mask=None, scale=None):
    """query (B, Hq, T, D), key (B, Hk, S, D), value (B, Hv, S, Dv) -> (B, Hq, T, Dv).

    Hq must be a multiple of Hk and of Hv: query head h reads key head h // (Hq // Hk) and value head
    h // (Hq // Hv). causal: query i sees keys j <= i (as PyTorch's is_causal). key_padding_mask: bool (B, S),
    True = a real key (a Tensor or an array on the data's device). scale: 1 / sqrt(D) by default.
    """
    tensors = (query, key, value)
    if not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(f"flash_attention: query, key and value must be Tensors, got "
                        f"{[type(t).__name__ for t in tensors]}")
    devices = {t.device for t in tensors}
    mask = key_padding_mask.data if isinstance(key_padding_mask, Tensor) else key_padding_mask
    if mask is not None:
        from minigrad.backend import device_of
        devices.add(device_of(mask))
    if len(devices) != 1:
        raise ValueError(f"flash_attention: query, key, value and key_padding_mask must be on one device, got "
                         f"{sorted(devices)}")
    q, k, v = (t.data for t in tensors)
    check_inputs("flash_attention", q, k, v, mask)
    kernels = _kernels(devices.pop())
    out, lse = kernels.forward(q, k, v, causal, mask, scale)                  # (B, Hq, T, Dv), (B, Hq, T)

    def backward(grad):
        return kernels.backward(q, k, v, out, lse, grad, causal, mask, scale)
    return record(out, tensors, backward, "flash_attention")
