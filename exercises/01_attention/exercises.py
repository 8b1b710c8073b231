# Your exercises for chapter 01_attention: replace each `raise ExerciseNotDone(...)` with your code,
# then run `make check CH=01`. Generated from exercises/solutions/01_attention.py by
# `python -m book.exercises`; this copy is yours to edit.
"""Chapter 01 exercises: attention, written on plain NumPy arrays.

Each function stands alone: it needs NumPy and nothing from minigrad (a later exercise may call an
earlier one of yours, as its docstring says). The self-checks in test_01_attention.py compare every
answer with PyTorch on the same inputs: float64, odd shapes, masks, random upstream gradients.

Mask conventions (PyTorch's, and they differ, so read each docstring):
- `F.scaled_dot_product_attention(attn_mask=bool)`: True = this query MAY look at this key;
- `nn.MultiheadAttention(key_padding_mask=bool)`: True = this key is padding and is IGNORED.
"""
import numpy as np

from book.exercises import ExerciseNotDone  # noqa: F401  (the reader's copy raises it)


# ---------------------------------------------------------------------------------------------
# Sections 2 and 3: scaled dot-product attention and masks
# ---------------------------------------------------------------------------------------------

def attention_weights(q, k, mask=None, scale=None):
    """Exercise 01.1 (part 1): the attention weights P = softmax(Q K^T * scale, masked) over the keys.

    q: (..., L, E) queries; k: (..., S, E) keys, with the same leading dims as q.
    mask: None, or a bool array broadcastable to (..., L, S); True = query i may look at key j
          (PyTorch's boolean attn_mask). A masked score is -inf before the softmax, so its weight is 0.
    scale: None means 1 / sqrt(E).
    returns P: (..., L, S), each row sums to 1 over its allowed keys. A row with no allowed key at all
    is all zeros (as in PyTorch's F.scaled_dot_product_attention), never NaN, and no NumPy warning:
    its max is -inf, and exp(-inf - (-inf)) would be NaN, so shift such a row by 0 instead.
    """
    raise ExerciseNotDone("01.1", "attention_weights", "about 9 lines; see sections 2 and 3")


def scaled_dot_product_attention(q, k, v, mask=None, scale=None):
    """Exercise 01.1 (part 2): Attention(Q, K, V) = softmax(Q K^T * scale, masked) V.

    q: (..., L, E), k: (..., S, E), v: (..., S, Ev), all with the same leading dims; mask and scale as
    in attention_weights (use yours). returns (..., L, Ev); a query with no allowed key gets 0.
    Equal to torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).
    """
    raise ExerciseNotDone("01.1", "scaled_dot_product_attention", "one line; see section 2")


def causal_mask(L, S, offset=0):
    """Exercise 01.2: the boolean causal mask for L queries and S keys, True = may look.

    mask[i, j] = (j <= i + offset), shape (L, S).
    - offset=0 is PyTorch's `is_causal=True` (and torch.nn.attention.bias.causal_upper_left): the mask
      is aligned to the TOP-LEFT corner, query i sees keys 0..i, whatever S is. With L < S that means
      the queries are treated as the FIRST L positions of the sequence.
    - offset=S-L aligns it to the BOTTOM-RIGHT corner (torch.nn.attention.bias.causal_lower_right):
      the L queries are the LAST L positions, as when decoding with a cache of S - L earlier keys; the
      last query then sees every key.
    With L == S both are the usual lower-triangular mask.
    """
    raise ExerciseNotDone("01.2", "causal_mask", "about 2 lines; see section 3")


def softmax_backward(p, g, dim=-1):
    """Exercise 01.3: the backward of p = softmax(x, dim), computed from the output p alone.

    dp_i/dx_j = p_i (delta_ij - p_j), so dL/dx_j = p_j (g_j - sum_i g_i p_i).
    p, g = dL/dp: the same shape; returns dL/dx of that shape. (No exp, no log: one pass.)
    """
    raise ExerciseNotDone("01.3", "softmax_backward", "one line; see section 2")


def attention_backward(q, k, v, g, mask=None, scale=None):
    """Exercise 01.4: the gradients of O = scaled_dot_product_attention(q, k, v, mask, scale).

    q (..., L, E), k (..., S, E), v (..., S, Ev), g = dL/dO (..., L, Ev); mask and scale as in 01.1.
    With P the weights (your attention_weights) and O = P V:
        dV = P^T g,   dP = g V^T,   dS = scale * softmax_backward(P, dP),   dQ = dS K,   dK = dS^T Q
    (S the unscaled scores Q K^T; masked entries have P = 0, so they get no gradient).
    returns (dq, dk, dv) with the shapes of q, k, v. A fully masked query row gets dq = 0 and gives
    nothing to dk, dv.
    """
    raise ExerciseNotDone("01.4", "attention_backward", "about 7 lines; see section 2")


# ---------------------------------------------------------------------------------------------
# Section 4: multi-head attention
# ---------------------------------------------------------------------------------------------

def split_heads(x, num_heads):
    """Exercise 01.5 (part 1): (B, T, C) -> (B, H, T, D) with H = num_heads, D = C // H.

    Head h gets the channels h*D .. (h+1)*D - 1 of every position (PyTorch's nn.MultiheadAttention
    layout): out[b, h, t, :] == x[b, t, h*D:(h+1)*D]. Raise ValueError if H does not divide C.
    """
    raise ExerciseNotDone("01.5", "split_heads", "about 4 lines; see section 4")


def merge_heads(x):
    """Exercise 01.5 (part 2): the inverse of split_heads, (B, H, T, D) -> (B, T, H * D).

    out[b, t, h*D:(h+1)*D] == x[b, h, t, :]; merge_heads(split_heads(x, H)) == x.
    """
    raise ExerciseNotDone("01.5", "merge_heads", "about 2 lines; see section 4")


def multihead_attention(query, key, value, num_heads, in_proj_weight, in_proj_bias, out_proj_weight,
                        out_proj_bias, key_padding_mask=None):
    """Exercise 01.6: the forward of torch.nn.MultiheadAttention(C, num_heads, batch_first=True).

    query (B, L, C), key (B, S, C), value (B, S, C).
    in_proj_weight (3C, C), in_proj_bias (3C,): the rows [0:C], [C:2C], [2C:3C] project query, key and
    value (x @ W.T + b, like nn.Linear). out_proj_weight (C, C), out_proj_bias (C,).
    key_padding_mask: None or bool (B, S), True = this key is PADDING and is ignored (the opposite of
    attn_mask's convention); every sequence keeps at least one key.
    Split into heads (your split_heads), attend per head with scale 1/sqrt(D) (your attention_weights),
    merge (your merge_heads), project out.
    returns (out (B, L, C), weights (B, L, S)): the weights averaged over the heads, as PyTorch's
    need_weights=True, average_attn_weights=True.
    """
    raise ExerciseNotDone("01.6", "multihead_attention", "about 9 lines; see section 4")


# ---------------------------------------------------------------------------------------------
# Attention as a pointer, and low-rank heads (Pointer Networks; LAMA)
# ---------------------------------------------------------------------------------------------

def pointer_log_probs(enc, dec, W1, W2, v, chosen):
    """Exercise 01.7: one decoding step of a Pointer Network (Vinyals et al., 2015).

        u_j = v^T tanh(W1 e_j + W2 d),   log p(pointer = j) = log_softmax_j(u) over the input positions

    enc: (B, n, E) encoder states e_j; dec: (B, Dd) the decoder state d of this step;
    W1: (A, E), W2: (A, Dd), v: (A,) (A = the attention's hidden size).
    chosen: bool (B, n), True = position j was already pointed to in this sequence: it must not be
    chosen again, so its score is -inf before the softmax (at least one position per row is free).
    returns (B, n) log-probabilities: exactly -inf at the chosen positions, and exp of each row sums to 1.
    """
    raise ExerciseNotDone("01.7", "pointer_log_probs", "about 5 lines; see 02_pointer_networks.ipynb, section 2")


def lama_attention(H, mask, P, Q):
    """Exercise 01.8: LAMA's low-rank multi-head attention (Mehta et al., 2019).

    H: (B, n, d) the token states h_i; mask: bool (B, n), True = a real token (False = padding; every
    sequence has at least one real token); P, Q: (d, m), one column per head k.
        c = the mean of h_i over the REAL tokens                        (B, d), the global context
        score[k, i] = tanh((p_k^T c) (q_k^T h_i))                      a rank-1 bilinear form c^T p_k q_k^T h_i
        A[k, :] = softmax over i of score[k, :], padding set to -inf   (B, m, n)
        M = A H                                                         (B, m, d), one summary per head
    returns (A, M).
    """
    raise ExerciseNotDone("01.8", "lama_attention", "about 7 lines; see 03_low_rank_heads.ipynb, sections 2 and 3")
