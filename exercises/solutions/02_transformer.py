"""Chapter 02 exercises: the pieces of a transformer, and of a real pretrained one, on plain NumPy arrays.

Each function stands alone: it needs NumPy (and the two helpers below) and nothing from minigrad. The
self-checks in test_02_transformer.py compare every answer with PyTorch, or with Hugging Face
transformers' own code, on the same inputs: float64, odd shapes, masks, random upstream gradients.

Conventions (read each docstring for the details):
- positions are integers 0, 1, 2, ...; a sequence is laid out (..., T, D), time before channels;
- weights are stored as PyTorch stores them: a linear layer computes x @ W.T + b with W of shape (out, in);
- masks follow PyTorch: `key_padding_mask` / `memory_key_padding_mask` True = PADDING (ignored);
  an `attention_mask` of a tokenizer is 1 = token, 0 = padding.
"""
import math

import numpy as np

from book.exercises import ExerciseNotDone  # noqa: F401  (the reader's copy raises it)


# ---------------------------------------------------------------------------------------------
# Helpers you may use (they are not exercises)
# ---------------------------------------------------------------------------------------------

def softmax(x, axis=-1):
    """The stable softmax; a row that is entirely -inf gives NaN, so mask so that every row keeps a key."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_erf = np.vectorize(math.erf, otypes=[float])


def gelu(x):
    """The exact GELU, x * Phi(x) with Phi the standard normal CDF (PyTorch's F.gelu, approximate='none')."""
    return 0.5 * x * (1.0 + _erf(np.asarray(x) / math.sqrt(2.0)))


# ---------------------------------------------------------------------------------------------
# Positions: sinusoidal encodings, RoPE, ALiBi
# ---------------------------------------------------------------------------------------------

def sinusoidal_encoding(num_positions, d_model, base=10000.0):
    """Exercise 02.1: the Transformer's sinusoidal position encodings (Vaswani et al., 2017, section 3.5).

        PE[pos, 2i]     = sin(pos / base^(2i / d_model))
        PE[pos, 2i + 1] = cos(pos / base^(2i / d_model))

    Columns 2i and 2i + 1 share one frequency: column j uses i = j // 2. returns (num_positions, d_model)
    float64, pos = 0 .. num_positions - 1.
    An odd d_model is allowed: the last column (j = d_model - 1, even) is then a sine without its cosine
    partner, with the same formula (i = (d_model - 1) // 2, divided by the same d_model).
    """
    # BEGIN SOLUTION 02.1 (about 4 lines; see 01_transformer.ipynb, section 1.1)
    pos = np.arange(num_positions, dtype=np.float64)[:, None]      # (P, 1)
    j = np.arange(d_model)                                         # (d,)
    angle = pos / base ** (2 * (j // 2) / d_model)                 # (P, d)
    return np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    # END SOLUTION


def apply_rope(x, positions, base=10000.0):
    """Exercise 02.2: rotary position embedding, RoPE (Su et al., 2021), in the split-halves layout.

    x: (..., T, D) queries or keys of one head, D even; positions: (T,) the position of each row.
    Frequencies theta_i = base^(-2i / D), i = 0 .. D/2 - 1. Channel i is paired with channel i + D/2
    (the "rotate_half" layout of GPT-NeoX and of LLaMA in Hugging Face transformers; the RoFormer paper
    pairs neighbours 2i, 2i+1 instead, which is the same rotation on permuted channels). Each pair
    (a, b) = (x[..., i], x[..., i + D/2]) at position p turns by the angle p * theta_i:

        out[..., i]       = a cos(p theta_i) - b sin(p theta_i)
        out[..., i + D/2] = b cos(p theta_i) + a sin(p theta_i)

    i.e. out = x * cos + rotate_half(x) * sin, with rotate_half(x) = concat(-x[..., D/2:], x[..., :D/2])
    and cos, sin of the angles repeated twice along the channels. Raise ValueError if D is odd.
    Then <apply_rope(q, [m]), apply_rope(k, [n])> depends on m - n only: the score sees relative positions.
    """
    # BEGIN SOLUTION 02.2 (about 7 lines; see 01_transformer.ipynb, section 1.3)
    D = x.shape[-1]
    if D % 2:
        raise ValueError(f"apply_rope: the head dimension must be even, got {D}")
    theta = base ** (-np.arange(D // 2) * 2.0 / D)                 # (D/2,)
    angle = np.asarray(positions, dtype=np.float64)[:, None] * theta   # (T, D/2)
    cos, sin = np.tile(np.cos(angle), 2), np.tile(np.sin(angle), 2)    # (T, D)
    rotated = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], axis=-1)
    return x * cos + rotated * sin
    # END SOLUTION


def alibi_slopes(num_heads):
    """Exercise 02.3 (part 1): ALiBi's head slopes (Press et al., 2022, "Train short, test long").

    For n heads, n a power of 2: the geometric sequence m_h = 2^(-8h/n), h = 1 .. n
    (n = 8: 1/2, 1/4, ..., 1/256). For other n: with n2 the largest power of 2 below n, the n2 slopes of
    n2 heads, followed by the slopes at the odd places (1st, 3rd, 5th, ...) of the 2*n2 heads' sequence,
    as many as needed (n - n2). returns (n,) float64.
    """
    # BEGIN SOLUTION 02.3 (about 5 lines; see 01_transformer.ipynb, section 1.4)
    def power_of_2(n):
        return 2.0 ** (-8.0 * np.arange(1, n + 1) / n)

    n2 = 2 ** int(math.floor(math.log2(num_heads)))
    return np.concatenate([power_of_2(n2), power_of_2(2 * n2)[0::2][:num_heads - n2]])
    # END SOLUTION


def alibi_bias(num_heads, L, S):
    """Exercise 02.3 (part 2): the additive ALiBi bias for causal attention, (num_heads, L, S).

    The L queries are the LAST L of the S positions (L <= S; as when decoding with a cache): query i sits
    at position i + S - L, key j at position j. With m_h your alibi_slopes:
        bias[h, i, j] = -m_h * (position of query i - j)      if key j is not in the query's future,
        bias[h, i, j] = -inf                                  if it is (the causal mask, folded in).
    Attention then uses softmax(q k^T / sqrt(d) + bias): no position embeddings, just a penalty that
    grows linearly with the distance.
    """
    # BEGIN SOLUTION 02.3 (about 4 lines; see 01_transformer.ipynb, section 1.4)
    distance = (np.arange(L)[:, None] + S - L) - np.arange(S)[None, :]     # (L, S) query pos - key pos
    bias = -alibi_slopes(num_heads)[:, None, None] * distance               # (H, L, S)
    return np.where(distance >= 0, bias, -np.inf)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Norms: RMSNorm, forward and backward
# ---------------------------------------------------------------------------------------------

def rms_norm(x, weight, eps=1e-6):
    """Exercise 02.4 (part 1): RMSNorm (Zhang & Sennrich, 2019) over the last dimension.

        y = x / sqrt(mean(x^2) + eps) * weight        (no mean subtracted, no bias)

    x (..., D), weight (D,). Equal to torch.nn.functional.rms_norm(x, (D,), weight, eps).
    """
    # BEGIN SOLUTION 02.4 (about 2 lines; see 01_transformer.ipynb, section 3)
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * weight
    # END SOLUTION


def rms_norm_backward(x, weight, g, eps=1e-6):
    """Exercise 02.4 (part 2): the gradients of y = rms_norm(x, weight, eps), given g = dL/dy (x's shape).

    With r = 1 / sqrt(mean(x^2) + eps) (one per row) and x_hat = x r:
        dweight = sum of g * x_hat over every leading dim            (D,)
        dx = r * (g w - x_hat * mean(g w * x_hat))                   over the last dim, per row
    returns (dx, dweight).
    """
    # BEGIN SOLUTION 02.4 (about 5 lines; see 01_transformer.ipynb, section 3)
    r = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
    x_hat = x * r                                                  # (..., D)
    g_hat = g * weight                                             # dL/dx_hat
    dx = r * (g_hat - x_hat * (g_hat * x_hat).mean(axis=-1, keepdims=True))
    return dx, (g * x_hat).reshape(-1, x.shape[-1]).sum(axis=0)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Blocks: a pre-LN encoder block, cross-attention
# ---------------------------------------------------------------------------------------------

def pre_ln_block(x, params, num_heads, causal=False, eps=1e-5):
    """Exercise 02.5: a pre-LN transformer block, as torch.nn.TransformerEncoderLayer(norm_first=True,
    activation="gelu", dropout=0, batch_first=True) computes it.

        h   = x + SelfAttention(LN_1(x))
        out = h + W_2 gelu(W_1 LN_2(h) + b_1) + b_2

    x (B, T, C). params: a dict of arrays named as that PyTorch layer's state_dict:
        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"      (C,)   LayerNorm(eps) over C
        "self_attn.in_proj_weight" (3C, C), "self_attn.in_proj_bias" (3C,): rows [0:C] project the queries,
            [C:2C] the keys, [2C:3C] the values (y @ W.T + b)
        "self_attn.out_proj.weight" (C, C), "self_attn.out_proj.bias" (C,)
        "linear1.weight" (F, C), "linear1.bias" (F,), "linear2.weight" (C, F), "linear2.bias" (C,)
    Self-attention: num_heads heads of C / num_heads channels (head h = channels h*D .. (h+1)*D - 1),
    scale 1/sqrt(D); causal=True lets position t look only at positions <= t. Use the helpers softmax
    and gelu above. returns (B, T, C).
    """
    # BEGIN SOLUTION 02.5 (about 16 lines; see 01_transformer.ipynb, sections 4 and 5)
    def layer_norm(y, name):
        mean = y.mean(axis=-1, keepdims=True)
        var = ((y - mean) ** 2).mean(axis=-1, keepdims=True)
        return (y - mean) / np.sqrt(var + eps) * params[name + ".weight"] + params[name + ".bias"]

    B, T, C = x.shape
    D = C // num_heads
    qkv = layer_norm(x, "norm1") @ params["self_attn.in_proj_weight"].T + params["self_attn.in_proj_bias"]
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, num_heads, D).transpose(0, 2, 1, 3)
               for i in range(3))                                  # (B, H, T, D) each
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D)              # (B, H, T, T)
    if causal:
        scores = np.where(np.tri(T, dtype=bool), scores, -np.inf)
    context = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
    h = x + context @ params["self_attn.out_proj.weight"].T + params["self_attn.out_proj.bias"]
    inner = gelu(layer_norm(h, "norm2") @ params["linear1.weight"].T + params["linear1.bias"])   # (B, T, F)
    return h + inner @ params["linear2.weight"].T + params["linear2.bias"]
    # END SOLUTION


def cross_attention(x, memory, num_heads, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias,
                    out_proj_weight, out_proj_bias, memory_key_padding_mask=None):
    """Exercise 02.6: encoder-decoder (cross) attention: the decoder's states ask, the encoder's answer.

    x (B, L, C): the decoder's states, they give the QUERIES; memory (B, S, Cm): the encoder's outputs,
    they give the KEYS and VALUES (Cm may differ from C). As torch.nn.MultiheadAttention(C, num_heads,
    kdim=Cm, vdim=Cm, batch_first=True)(x, memory, memory, key_padding_mask=memory_key_padding_mask,
    average_attn_weights=False):
        q = x @ q_proj_weight.T + b_q          q_proj_weight (C, C)
        k = memory @ k_proj_weight.T + b_k     k_proj_weight (C, Cm)
        v = memory @ v_proj_weight.T + b_v     v_proj_weight (C, Cm)
    with in_proj_bias (3C,) = [b_q, b_k, b_v]; heads of D = C / num_heads channels, scale 1/sqrt(D);
    the heads merged and projected by out_proj_weight (C, C), out_proj_bias (C,).
    memory_key_padding_mask: None or bool (B, S), True = this memory position is PADDING: no query may
    look at it (every sequence keeps at least one real position).
    returns (out (B, L, C), weights (B, H, L, S)), the weights of every head (exactly 0 on padding).
    """
    # BEGIN SOLUTION 02.6 (about 10 lines; see 01_transformer.ipynb, section 6)
    B, L, C = x.shape
    S, D = memory.shape[1], C // num_heads
    b_q, b_k, b_v = in_proj_bias[:C], in_proj_bias[C:2 * C], in_proj_bias[2 * C:]
    heads = lambda y, n: y.reshape(B, n, num_heads, D).transpose(0, 2, 1, 3)   # (B, n, C) -> (B, H, n, D)
    q = heads(x @ q_proj_weight.T + b_q, L)                        # (B, H, L, D)
    k = heads(memory @ k_proj_weight.T + b_k, S)                   # (B, H, S, D)
    v = heads(memory @ v_proj_weight.T + b_v, S)                   # (B, H, S, D)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D)              # (B, H, L, S)
    if memory_key_padding_mask is not None:
        scores = np.where(memory_key_padding_mask[:, None, None, :], -np.inf, scores)
    weights = softmax(scores)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(B, L, C) @ out_proj_weight.T + out_proj_bias
    return out, weights
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Real weights: WordPiece and sentence embeddings (02_real_weights.ipynb)
# ---------------------------------------------------------------------------------------------

def wordpiece(word, vocab, unk_token="[UNK]", max_input_chars_per_word=100):
    """Exercise 02.7: split one word into WordPiece tokens, greedy longest-match-first (BERT's tokenizer).

    word: a str without whitespace (already lower-cased and split off its punctuation by the basic
    tokenizer). vocab: any container of tokens (a set, or a dict token -> id): `piece in vocab`.
    - the first piece is the LONGEST prefix of the word that is in vocab;
    - every next piece is the longest continuation, written "##" + the characters, that is in vocab,
      starting where the previous piece ended; until the word is used up;
    - if at some point no piece matches at all, the whole word is [unk_token] (one token), even if some
      pieces had matched before; a word of more than max_input_chars_per_word characters is [unk_token].
    returns a list of str: "unaffable" -> ["un", "##aff", "##able"] with a vocab holding those pieces.
    """
    # BEGIN SOLUTION 02.7 (about 12 lines; see 02_real_weights.ipynb, section 2)
    if len(word) > max_input_chars_per_word:
        return [unk_token]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):                    # the longest candidate first
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return [unk_token]
        pieces.append(piece)
        start = end
    return pieces
    # END SOLUTION


def mean_pooling(hidden, attention_mask):
    """Exercise 02.8 (part 1): the average of the token vectors over the real tokens.

        u_b = sum_t m_bt h_bt / max(sum_t m_bt, 1e-9)

    hidden (B, T, C): the encoder's last hidden states; attention_mask (B, T): 1 (or True) = a token,
    0 = padding. Padding positions may hold anything: they must not change the result. A row with no
    token at all gives a zero vector (the 1e-9 clamp, as in sentence-transformers), without a warning.
    returns (B, C).
    """
    # BEGIN SOLUTION 02.8 (about 3 lines; see 02_real_weights.ipynb, section 5)
    m = np.asarray(attention_mask, dtype=hidden.dtype)[:, :, None]        # (B, T, 1)
    summed = np.where(m > 0, hidden, 0.0).sum(axis=1)                     # (B, C): padding never enters
    return summed / np.maximum(m.sum(axis=1), 1e-9)
    # END SOLUTION


def l2_normalize(x, eps=1e-12):
    """Exercise 02.8 (part 2): x / max(||x||_2, eps) along the last dimension, as
    torch.nn.functional.normalize(x, p=2, dim=-1, eps=eps). A zero vector stays zero. returns x's shape.
    """
    # BEGIN SOLUTION 02.8 (one line; see 02_real_weights.ipynb, section 5)
    return x / np.maximum(np.sqrt((x * x).sum(axis=-1, keepdims=True)), eps)
    # END SOLUTION


def sentence_embedding(hidden, attention_mask):
    """Exercise 02.8 (part 3): a sentence-transformers embedding: l2_normalize(mean_pooling(hidden, mask)).

    The rows have length 1 (or are 0 for a row without tokens), so the cosine similarity of two sentences
    is the dot product of their embeddings. returns (B, C).
    """
    # BEGIN SOLUTION 02.8 (one line; see 02_real_weights.ipynb, section 5)
    return l2_normalize(mean_pooling(hidden, attention_mask))
    # END SOLUTION
