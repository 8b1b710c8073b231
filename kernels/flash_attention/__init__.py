"""FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness (Dao et al., 2022, arXiv:2205.14135)
and FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning (Dao, 2023, arXiv:2307.08691):
exact softmax attention in O(T) memory.

    O = softmax(scale * Q K^T + M) V,     L = logsumexp(scale * Q K^T + M)   (per query row)

Four implementations of the same function, one per module, each with `forward` and `backward`, read in this
order: the definition (reference.py) -> the algorithm (tiled.py) -> the engineering (cpu.py, cuda.py).

| module | what it is | arrays |
|---|---|---|
| `reference.py` | the definition: the whole (T, S) score matrix, plain softmax and its Jacobian | NumPy |
| `tiled.py` | the algorithm: the online softmax over key tiles in plain NumPy loops (chapter 07's derivation) | NumPy |
| `cpu.py` | the tiled algorithm, Numba `njit(parallel=True)`, BLAS on tiles | NumPy, float32 / float64 |
| `cuda.py` | the tiled algorithm, Numba CUDA, kernels built by factories | CuPy / Numba device arrays |

    o, lse = forward(q, k, v, causal=False, key_padding_mask=None, scale=None)
    dq, dk, dv = backward(q, k, v, o, lse, do, causal=False, key_padding_mask=None, scale=None)  # tiled, cpu, cuda
    dq, dk, dv = backward(q, k, v, do, causal=False, key_padding_mask=None, scale=None)          # reference

Shapes: q (B, Hq, T, D), k (B, Hk, S, D), v (B, Hv, S, Dv); o (B, Hq, T, Dv), lse (B, Hq, T).
- Heads: Hq must be a multiple of Hk and of Hv. Query head h reads key head h // (Hq // Hk) and value head
  h // (Hq // Hv): Hk = Hv = Hq is multi-head attention, Hk = Hv < Hq grouped-query (GQA), Hk = Hv = 1
  multi-query (MQA), Hk != Hv the DiffQKV layouts.
- `causal`: query i sees keys j <= i (top-left aligned, as PyTorch's `is_causal`).
- `key_padding_mask`: bool (B, S), True = the key is real. Padded keys are seen by no query.
- A query that sees no key at all gets o = 0, lse = -inf and zero gradients (never NaN).
- `scale` defaults to 1 / sqrt(D).

The same layout (reference / cpu / cuda, `forward` and `backward`, `check_inputs`) is the template for the other
attention variants in kernels/; the helpers they share (`check_inputs`, `default_scale`, `repeat_heads`,
`sum_head_groups`, ...) are in kernels/common.
"""
