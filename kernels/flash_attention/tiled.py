"""FlashAttention's algorithm in plain NumPy: the tiled online softmax, forward and backward, with no Numba.

The middle rung of the folder's ladder, definition (reference.py) -> algorithm (this file) -> engineering (cpu.py,
cuda.py): the loops of chapters/07_efficient_attention/01_flash_attention.ipynb ("The tiled forward", "The
backward, from L alone"), with the library's layout: batches, grouped heads, a key padding mask, a scale.

Forward. Cut the queries into tiles Q_i of `block_q` rows and the keys and values into tiles K_j, V_j of `block_k`
rows. For one query tile, walk over the key tiles keeping, per query row, a running max m, a running sum l and an
unnormalized output acc, starting from m = -inf, l = 0, acc = 0:

    X = scale Q_i K_j^T  (masked entries -inf)          m' = max(m, rowmax X)
    P = e^(X - m'),   alpha = e^(m - m')                l' = alpha l + rowsum P
    acc' = alpha acc + P V_j                            m = m'

After the last key tile, O_i = acc / l and L_i = m + log l (the row's logsumexp): only O and L are stored, and the
only scores ever held are one block_q x block_k tile. alpha rescales what was summed under the old max. With
`causal`, a key tile lying wholly after the query tile's last row is skipped.

Backward. P is recomputed tile by tile from L, exactly, with no running max; and the softmax Jacobian's row term
needs no whole row, since sum_k P_ik dP_ik = dO_i . O_i =: D_i:

    D = rowsum(dO * O)                                   (one pass, before the tiles)
    P = e^(scale Q_i K_j^T - L_i)      dV_j += P^T dO_i      dP = dO_i V_j^T      dS = P * (dP - D_i)
    dQ_i += scale dS K_j               dK_j += scale dS^T Q_i

The key tile is the outer loop (dK_j, dV_j accumulate while the query tiles stream by, as on a GPU).

A query that sees no key (all its keys padded, or masked) keeps m = -inf and l = 0: it gets O = 0, L = -inf and
zero gradients. The exponent is then shifted by 0 instead of m (e^(-inf - 0) = 0), so no -inf - (-inf) = NaN
appears. Keys and values shared by several query heads are repeated to Hq heads (repeat_heads) and their gradients
summed back (sum_head_groups), as in reference.py. Arithmetic is in the inputs' dtype (float32 or float64).

    o, lse = forward(q, k, v, causal=False, key_padding_mask=None, scale=None, block_q=16, block_k=16)
    dq, dk, dv = backward(q, k, v, o, lse, do, causal=False, key_padding_mask=None, scale=None, block_q=16, block_k=16)
"""
import numpy as np

from kernels.common import check_inputs, default_scale, repeat_heads, sum_head_groups

BLOCK_Q, BLOCK_K = 16, 16  # the notebook's tiles (cpu.py calls them block_m, block_n and uses 64)


def _check_blocks(op, block_q, block_k):
    for name, block in (("block_q", block_q), ("block_k", block_k)):
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ValueError(f"{op}: {name} must be a positive int, got {block!r}")


def _visible(rows, cols, causal, key_padding_mask):
    """(B or 1, 1, len(rows), len(cols)) bool: may query i (in rows) see key j (in cols)."""
    seen = np.ones((1, 1, rows.stop - rows.start, cols.stop - cols.start), dtype=bool)
    if causal:
        seen = seen & (np.arange(cols.start, cols.stop)[None, :] <= np.arange(rows.start, rows.stop)[:, None])
    if key_padding_mask is not None:
        seen = seen & key_padding_mask[:, None, None, cols]
    return seen


def _skipped(rows, cols, causal):
    """True when every key of the tile comes after every query of the tile (causal): the whole tile is masked."""
    return causal and cols.start > rows.stop - 1


def _finite(x):
    """x with -inf replaced by 0: the shift of a row that sees no key yet (then e^(-inf - 0) = 0)."""
    return np.where(x == -np.inf, 0, x).astype(x.dtype, copy=False)


def forward(q, k, v, causal=False, key_padding_mask=None, scale=None, block_q=BLOCK_Q, block_k=BLOCK_K):
    """(O (B, Hq, T, Dv), L (B, Hq, T)) by the online softmax over key tiles; see the module doc."""
    op = "flash_attention tiled forward"
    check_inputs(op, q, k, v, key_padding_mask)
    _check_blocks(op, block_q, block_k)
    scale = default_scale(q, scale)
    (B, Hq, T, _), S = q.shape, k.shape[2]
    k, v = repeat_heads(k, Hq), repeat_heads(v, Hq)                    # (B, Hq, S, D), (B, Hq, S, Dv)
    Dv = v.shape[3]
    out, lse = np.empty((B, Hq, T, Dv), q.dtype), np.empty((B, Hq, T), q.dtype)
    for i0 in range(0, T, block_q):
        rows = slice(i0, min(i0 + block_q, T))
        n_rows = rows.stop - rows.start
        m = np.full((B, Hq, n_rows), -np.inf, q.dtype)               # (B, Hq, Bq): running max
        l = np.zeros((B, Hq, n_rows), q.dtype)                        # (B, Hq, Bq): running sum
        acc = np.zeros((B, Hq, n_rows, Dv), q.dtype)                  # (B, Hq, Bq, Dv): unnormalized output
        for j0 in range(0, S, block_k):
            cols = slice(j0, min(j0 + block_k, S))
            if _skipped(rows, cols, causal):
                break                                                 # so is every later key tile
            x = scale * (q[:, :, rows] @ k[:, :, cols].swapaxes(-1, -2))   # (B, Hq, Bq, Bk): the only scores held
            x = np.where(_visible(rows, cols, causal, key_padding_mask), x, -np.inf)
            m_new = np.maximum(m, x.max(axis=-1))                     # (B, Hq, Bq)
            shift = _finite(m_new)
            alpha = np.exp(m - shift)                                 # rescales what was summed before
            p = np.exp(x - shift[..., None])                          # (B, Hq, Bq, Bk); masked: 0
            l = alpha * l + p.sum(axis=-1)
            acc = alpha[..., None] * acc + p @ v[:, :, cols]          # (B, Hq, Bq, Dv)
            m = m_new
        seen = l > 0                                                  # the row sees at least one key
        safe_l = np.where(seen, l, 1).astype(q.dtype, copy=False)
        out[:, :, rows] = acc / safe_l[..., None]                     # acc = 0 where nothing is seen
        lse[:, :, rows] = np.where(seen, m + np.log(safe_l), -np.inf)
    return out, lse


def backward(q, k, v, o, lse, do, causal=False, key_padding_mask=None, scale=None, block_q=BLOCK_Q, block_k=BLOCK_K):
    """(dQ, dK, dV) from the forward's O and L and the upstream gradient dO (B, Hq, T, Dv); see the module doc."""
    op = "flash_attention tiled backward"
    check_inputs(op, q, k, v, key_padding_mask, do)
    _check_blocks(op, block_q, block_k)
    scale = default_scale(q, scale)
    (B, Hq, T, D), S = q.shape, k.shape[2]
    heads_k, heads_v = k.shape[1], v.shape[1]
    k, v = repeat_heads(k, Hq), repeat_heads(v, Hq)                    # (B, Hq, S, D), (B, Hq, S, Dv)
    delta = (do * o).sum(axis=-1)                                      # (B, Hq, T): D_i = dO_i . O_i
    shift = _finite(lse)                                               # (B, Hq, T): L, 0 where a row sees nothing
    dq = np.zeros_like(q)                                              # (B, Hq, T, D)
    dk, dv = np.zeros_like(k), np.zeros_like(v)                        # (B, Hq, S, D), (B, Hq, S, Dv), per query head
    for j0 in range(0, S, block_k):
        cols = slice(j0, min(j0 + block_k, S))
        for i0 in range(0, T, block_q):
            rows = slice(i0, min(i0 + block_q, T))
            if _skipped(rows, cols, causal):
                continue
            x = scale * (q[:, :, rows] @ k[:, :, cols].swapaxes(-1, -2))   # (B, Hq, Bq, Bk)
            x = np.where(_visible(rows, cols, causal, key_padding_mask), x, -np.inf)
            p = np.exp(x - shift[:, :, rows, None])                   # exact probabilities, from L; masked: 0
            dv[:, :, cols] += p.swapaxes(-1, -2) @ do[:, :, rows]     # P^T dO_i
            dp = do[:, :, rows] @ v[:, :, cols].swapaxes(-1, -2)      # (B, Hq, Bq, Bk): dO_i V_j^T
            ds = p * (dp - delta[:, :, rows, None])                   # P * (dP - D)
            dq[:, :, rows] += scale * (ds @ k[:, :, cols])
            dk[:, :, cols] += scale * (ds.swapaxes(-1, -2) @ q[:, :, rows])
    return dq, sum_head_groups(dk, heads_k), sum_head_groups(dv, heads_v)
