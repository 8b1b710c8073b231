"""Chapter 07 exercises: efficient attention, written on plain NumPy arrays.

Each function stands alone: it needs NumPy and nothing from minigrad or kernels/. The self-checks in
test_07_efficient_attention.py compare every answer with a PyTorch formulation of the same quantity (softmax
attention, logsumexp, autograd, softplus...) on float64 inputs with odd shapes and random upstream gradients.

Notation (as in the notebook): one head, queries q (T, D), keys k (S, D), values v (S, Dv), scale s = 1 / sqrt(D).
A "softmax state" for a query row and a set of keys is (m, l, o): the largest score m, the sum of the shifted
exponentials l = sum_j e^(x_j - m), and an output; together they are everything that set of keys contributes.
"""
import numpy as np

from book.exercises import ExerciseNotDone  # noqa: F401  (the reader's copy raises it)


# ---------------------------------------------------------------------------------------------
# Sections 1-3: online softmax and FlashAttention (notebook 01_flash_attention)
# ---------------------------------------------------------------------------------------------

def merge_softmax_states(m1, l1, o1, m2, l2, o2):
    """Exercise 07.1: merge the softmax states of two disjoint sets of keys into the state of their union.

    m1, l1: (T,) the row max and the sum of e^(x - m1) over the first set; o1: (T, Dv) the first set's own
    attention output, normalized (softmax over the first set only, times its values). Same for the second set.
    returns (m, l, o) for the union: m = max(m1, m2), l = sum over both sets of e^(x - m), and o the attention
    output over all the keys. Both sets are non-empty (m1, m2 finite). m + log(l) is then the logsumexp of the row.
    """
    # BEGIN SOLUTION 07.1 (about 5 lines; see 01_flash_attention, section 1)
    m = np.maximum(m1, m2)
    a1, a2 = l1 * np.exp(m1 - m), l2 * np.exp(m2 - m)            # each set's sum, rescaled to the new max
    l = a1 + a2
    o = (a1[:, None] * o1 + a2[:, None] * o2) / l[:, None]        # (T, Dv)
    return m, l, o
    # END SOLUTION


def flash_forward_tile(q, k, v, m, l, acc, scale):
    """Exercise 07.2: one step of the FlashAttention forward: a query tile meets one key/value tile.

    q: (Bq, D) the query tile; k: (Bk, D), v: (Bk, Dv) the key and value tile; scale: a float.
    m, l: (Bq,) the running max and sum so far; acc: (Bq, Dv) the running UNNORMALIZED output
    sum_j e^(x_j - m) v_j so far. Before the first tile m = -inf, l = 0, acc = 0 (and no warning must come
    from that: e^(-inf - finite) is a clean 0). returns the new (m, l, acc) after this tile's scores
    x = scale * q k^T. After the last tile, O = acc / l and the stored logsumexp is m + log(l).
    """
    # BEGIN SOLUTION 07.2 (about 6 lines; see 01_flash_attention, section 2)
    x = scale * (q @ k.T)                                          # (Bq, Bk)
    m_new = np.maximum(m, x.max(axis=1))
    alpha = np.exp(m - m_new)                                      # rescales what was summed under the old max
    p = np.exp(x - m_new[:, None])                                 # (Bq, Bk)
    return m_new, alpha * l + p.sum(axis=1), alpha[:, None] * acc + p @ v
    # END SOLUTION


def flash_backward_tile(q, k, v, do, lse, delta, scale):
    """Exercise 07.3: the FlashAttention backward for one (query tile, key tile) pair.

    q: (Bq, D), do: (Bq, Dv), lse: (Bq,) the stored logsumexp L of each query row (over ALL keys),
    delta: (Bq,) D_i = rowsum(dO * O) over the row's full output; k: (Bk, D), v: (Bk, Dv); scale a float.
    returns (dq, dk, dv): this pair's contributions, (Bq, D), (Bk, D), (Bk, Dv). Summed over all key tiles (dq)
    and all query tiles (dk, dv) they are the full gradients. Recompute P = e^(scale q k^T - L) from L;
    use dS = P * (dP - D) instead of the softmax Jacobian's rowsum(dP * P) (which needs the whole row).
    """
    # BEGIN SOLUTION 07.3 (about 6 lines; see 01_flash_attention, section 3)
    p = np.exp(scale * (q @ k.T) - lse[:, None])                   # (Bq, Bk): the exact probabilities
    dv = p.T @ do                                                  # (Bk, Dv)
    dp = do @ v.T                                                  # (Bq, Bk)
    ds = p * (dp - delta[:, None])
    return scale * (ds @ k), scale * (ds.T @ q), dv
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Linear attention: BASED's Taylor features, chunked causal linear attention, Lightning's decay
# ---------------------------------------------------------------------------------------------

def based_feature_map(x):
    """Exercise 07.4: BASED's second-order Taylor feature map of e^(q.k / sqrt(d)).

    x: (..., d). returns phi(x): (..., 1 + d + d*d) such that, for any q and k,
        phi(q) . phi(k) = 1 + q.k / sqrt(d) + (q.k)^2 / (2 d).
    (The three blocks: a constant, x scaled, and the flattened outer product x x^T scaled.)
    """
    # BEGIN SOLUTION 07.4 (about 4 lines; see the docstring of minigrad/nn/linear_attention.py)
    d = x.shape[-1]
    outer = (x[..., :, None] * x[..., None, :]).reshape(x.shape[:-1] + (d * d,))
    ones = np.ones(x.shape[:-1] + (1,), dtype=x.dtype)
    return np.concatenate([ones, x / d ** 0.25, outer / np.sqrt(2 * d)], axis=-1)
    # END SOLUTION


def causal_linear_attention_chunk(q, k, v, state):
    """Exercise 07.5: one chunk of causal linear attention (features already applied, no normalization).

    The whole-sequence definition: o_i = sum_{j <= i} (q_i . k_j) v_j. Chunk by chunk, with
    state = sum over all EARLIER chunks of k_j^T v_j (D, Dv):
    q, k: (C, D), v: (C, Dv) this chunk's rows. returns (o, new_state): o (C, Dv) = the inter-chunk part
    q @ state plus the intra-chunk part (masked q k^T, j <= i inside the chunk) @ v; new_state = state + k^T v.
    """
    # BEGIN SOLUTION 07.5 (about 3 lines; see the docstring of kernels/linear_attention)
    scores = np.tril(q @ k.T)                                      # (C, C), j <= i
    return q @ state + scores @ v, state + k.T @ v
    # END SOLUTION


def decay_mask(n, lam):
    """Exercise 07.6: Lightning attention's decay mask M[i, j] = lam^(i - j) for j <= i, 0 for j > i.

    n: the chunk length; lam: a float in (0, 1], or an array of per-head decays (shape H).
    returns lam.shape + (n, n) (just (n, n) for a float). No NumPy warning, no inf or NaN anywhere
    (lam^(i - j) with i - j < 0 overflows for small lam: do not compute it).
    """
    # BEGIN SOLUTION 07.6 (about 4 lines; see the docstring of kernels/lightning_attention)
    lam = np.asarray(lam, dtype=np.float64)
    gap = np.arange(n)[:, None] - np.arange(n)[None, :]            # (n, n): i - j
    below = gap >= 0
    return np.where(below, lam[..., None, None] ** np.where(below, gap, 0), 0.0)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Sparse and normalized attention: routing, LSSA, shared key/value heads
# ---------------------------------------------------------------------------------------------

def kmeans_assign_update(x, centroids, decay):
    """Exercise 07.7: the Routing Transformer's k-means step: assign, then move the centroids by EMA.

    x: (N, D) the vectors to route; centroids: (C, D); decay: a float in [0, 1).
    returns (assign, new_centroids): assign (N,) int, the index of the nearest centroid in Euclidean distance
    (ties to the lower index); new_centroids (C, D): for a centroid with members,
    decay * centroid + (1 - decay) * (mean of its members); a centroid with no member is unchanged.
    """
    # BEGIN SOLUTION 07.7 (about 8 lines; see the docstring of book/efficient_attention/routing.py)
    distances = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=-1)   # (N, C)
    assign = distances.argmin(axis=1)
    sums = np.zeros_like(centroids)
    np.add.at(sums, assign, x)
    counts = np.bincount(assign, minlength=len(centroids))
    means = sums / np.maximum(counts, 1)[:, None]
    moved = decay * centroids + (1 - decay) * means
    return assign, np.where(counts[:, None] > 0, moved, centroids)
    # END SOLUTION


def lssa_weights(q, k, causal, scale=None):
    """Exercise 07.8: LSSA's attention weights (softplus attention with a length scale; kernels/softplus_attention).

    q: (T, D), k: (S, D); causal: query i sees keys j <= i (top-left aligned), else every key.
    n_i = the number of keys query i sees (min(i + 1, S) causal, S otherwise); s_i = scale * log(n_i), scale
    1 / sqrt(D) by default; x_ij = s_i q_i . k_j; P_ij = softplus(x_ij) = log(1 + e^x_ij) where visible, 0 where
    not; returns A (T, S) = P / rowsum(P). softplus must not overflow for large x (no warning at x = 1000).
    """
    # BEGIN SOLUTION 07.8 (about 7 lines; see the docstring of kernels/softplus_attention)
    T, S = q.shape[0], k.shape[0]
    scale = 1.0 / np.sqrt(q.shape[1]) if scale is None else scale
    seen = np.tri(T, S, dtype=bool) if causal else np.ones((T, S), dtype=bool)
    n = seen.sum(axis=1)                                           # (T,), at least 1
    x = (scale * np.log(n))[:, None] * (q @ k.T)                   # (T, S)
    p = np.where(seen, np.logaddexp(0.0, x), 0.0)
    return p / p.sum(axis=1, keepdims=True)
    # END SOLUTION


def head_index(num_query_heads, num_heads):
    """Exercise 07.9 (part 1): which key (or value) head each query head reads, for GQA, MQA and DiffQKV.

    returns an int array (num_query_heads,): query head h reads head h // (num_query_heads // num_heads).
    num_heads == num_query_heads is multi-head attention, 1 < num_heads < num_query_heads grouped-query (GQA),
    num_heads == 1 multi-query (MQA). Raise ValueError unless num_heads divides num_query_heads.
    """
    # BEGIN SOLUTION 07.9 (about 3 lines; see the head mapping in the docstring of kernels/flash_attention)
    if num_heads < 1 or num_query_heads % num_heads:
        raise ValueError(f"head_index: {num_query_heads} query heads cannot share {num_heads} heads evenly")
    return np.arange(num_query_heads) // (num_query_heads // num_heads)
    # END SOLUTION


def grouped_attention(q, k, v):
    """Exercise 07.9 (part 2): softmax attention with shared heads, key and value heads counted separately.

    q: (Hq, T, D), k: (Hk, S, D), v: (Hv, S, Dv), Hk and Hv dividing Hq (Hk != Hv is a DiffQKV layout).
    returns (Hq, T, Dv): query head h attends with key head head_index(Hq, Hk)[h] and value head
    head_index(Hq, Hv)[h] (use your part 1), scale 1 / sqrt(D), no mask.
    """
    # BEGIN SOLUTION 07.9 (about 5 lines; see the head mapping in the docstring of kernels/flash_attention)
    Hq = q.shape[0]
    keys, values = k[head_index(Hq, k.shape[0])], v[head_index(Hq, v.shape[0])]
    x = q @ keys.swapaxes(-1, -2) / np.sqrt(q.shape[-1])           # (Hq, T, S)
    p = np.exp(x - x.max(axis=-1, keepdims=True))
    return (p / p.sum(axis=-1, keepdims=True)) @ values
    # END SOLUTION


def sum_head_gradients(grad, num_heads):
    """Exercise 07.9 (part 3): the backward of k[head_index(Hq, num_heads)].

    grad: (Hq, S, E), the gradient with respect to the keys as each query head read them. returns
    (num_heads, S, E): each shared head's gradient, the sum over the query heads that read it.
    """
    # BEGIN SOLUTION 07.9 (about 2 lines; see the head mapping in the docstring of kernels/flash_attention)
    Hq, S, E = grad.shape
    return grad.reshape(num_heads, Hq // num_heads, S, E).sum(axis=1)
    # END SOLUTION
