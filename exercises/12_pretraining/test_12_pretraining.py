"""Self-checks for chapter 12: every answer is compared with a reference on the same inputs.

Run them with `make check CH=12`. Each test calls your function; one you have not written yet raises
ExerciseNotDone and the test fails with "not yet". The references: a PyTorch formulation of the repeated n-gram
fraction (torch.unique, scatter_reduce, max_pool1d); the datasketch package (MinHash signatures, the
candidates of MinHashLSH, the integrals of the banding curve) with the same hash values and permutations;
torch.topk and nn.MultiheadAttention for MP3's visible subset; a torch loop for TERA's time alteration; the
parameters of the PyTorch twin of the book's GPT and torch's FLOP counter; scipy.stats.linregress for the power law.
"""
import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from datasketch import MinHash, MinHashLSH
from datasketch.hashfunc import sha1_hash32
from datasketch.lsh import _false_negative_probability, _false_positive_probability

from book.exercises import assert_matches, load_exercises

ex = load_exercises("12_pretraining")


def torch_duplicate_ngram_char_fraction(words, n):
    """Word i is covered when an n-gram starting in [i - n + 1, i] occurs at a position after its first one."""
    lengths = torch.tensor([len(w) for w in words], dtype=torch.float64)
    if len(words) < n:
        return 0.0
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    ids = torch.tensor([vocab[w] for w in words])
    grams = ids.unfold(0, n, 1)                                                    # (G, n)
    _, group = torch.unique(grams, dim=0, return_inverse=True)                     # (G,)
    position = torch.arange(len(grams))
    first = torch.full((int(group.max()) + 1,), len(grams)).scatter_reduce(0, group, position, "amin")
    repeated = (position > first[group]).double()                                  # (G,)
    covered = F.max_pool1d(F.pad(repeated, (n - 1, n - 1))[None, None], n, stride=1)[0, 0][:len(words)]
    return float((covered * lengths).sum() / lengths.sum())


def random_words(seed, length, types):
    rng = np.random.default_rng(seed)
    return [f"{'abcdefg'[:1 + i % 7]}{i}" for i in rng.integers(0, types, length)]


def shingle_hashes(seed, m):
    strings = [f"shingle {seed} {i}" for i in range(m)]
    return np.array([sha1_hash32(s.encode()) for s in strings], dtype=np.uint32), strings


# ---- 12.1 repeated n-grams -------------------------------------------------------------------------

@pytest.mark.exercise("12.1")
def test_duplicate_ngram_fraction_small_cases():
    assert ex.duplicate_ngram_char_fraction("ab c ab c ab c d".split(), 2) == pytest.approx(6 / 10)
    assert ex.duplicate_ngram_char_fraction("to be or not to be".split(), 2) == pytest.approx(4 / 13)
    assert ex.duplicate_ngram_char_fraction("a b".split(), 3) == 0.0
    assert ex.duplicate_ngram_char_fraction("x x x x".split(), 1) == pytest.approx(3 / 4)


@pytest.mark.exercise("12.1")
@pytest.mark.parametrize("seed, length, types, n", [(0, 57, 5, 2), (1, 101, 8, 3), (2, 40, 3, 5), (3, 9, 2, 7)])
def test_duplicate_ngram_fraction_against_torch(seed, length, types, n):
    words = random_words(seed, length, types)
    got = ex.duplicate_ngram_char_fraction(words, n)
    assert got == pytest.approx(torch_duplicate_ngram_char_fraction(words, n), abs=1e-12), (n, got)


# ---- 12.2 MinHash ----------------------------------------------------------------------------------

@pytest.mark.exercise("12.2")
@pytest.mark.parametrize("m, k, seed", [(1, 5, 0), (17, 64, 1), (250, 129, 2)])
def test_minhash_signature_equals_datasketch(m, k, seed):
    hashes, strings = shingle_hashes(seed, m)
    reference = MinHash(num_perm=k, seed=seed)                     # scheme "affine32", datasketch's default
    for s in strings:
        reference.update(s.encode())
    a, b = reference.permutations
    assert_matches("signature", np.asarray(ex.minhash_signature(hashes, a, b)).astype(np.int64),
                   reference.hashvalues.astype(np.int64), rtol=0, atol=0)


@pytest.mark.exercise("12.2")
def test_minhash_agreement_estimates_jaccard():
    """Two sets with J = 100 / 300: over 1024 permutations the agreement is within 5 sigma of 1/3, and equals
    datasketch's estimate."""
    hashes, strings = shingle_hashes(9, 300)
    A, B = hashes[:200], hashes[100:]
    k = 1024
    ma, mb = MinHash(num_perm=k, seed=3), MinHash(num_perm=k, seed=3)
    for s in strings[:200]:
        ma.update(s.encode())
    for s in strings[100:]:
        mb.update(s.encode())
    a, b = ma.permutations
    agreement = np.mean(np.asarray(ex.minhash_signature(A, a, b)) == np.asarray(ex.minhash_signature(B, a, b)))
    assert agreement == pytest.approx(ma.jaccard(mb), abs=1e-12)
    assert abs(agreement - 1 / 3) < 5 * np.sqrt(2 / 9 / k)


# ---- 12.3 LSH banding ------------------------------------------------------------------------------

@pytest.mark.exercise("12.3")
@pytest.mark.parametrize("threshold, bands, rows", [(0.5, 20, 5), (0.8, 9, 13), (0.3, 37, 3)])
def test_candidate_probability_integrals_equal_datasketch(threshold, bands, rows):
    """The areas datasketch's MinHashLSH minimizes, computed from your curve."""
    below, above = np.linspace(0, threshold, 4001), np.linspace(threshold, 1, 4001)
    fp = np.trapezoid(ex.candidate_probability(below, bands, rows), below)
    fn = np.trapezoid(1 - ex.candidate_probability(above, bands, rows), above)
    assert fp == pytest.approx(_false_positive_probability(threshold, bands, rows), abs=1e-6)
    assert fn == pytest.approx(_false_negative_probability(threshold, bands, rows), abs=1e-6)
    assert ex.candidate_probability(0.0, bands, rows) == 0.0 and ex.candidate_probability(1.0, bands, rows) == 1.0


@pytest.mark.exercise("12.3")
@pytest.mark.parametrize("bands, rows", [(6, 3), (4, 5), (2, 4)])
def test_band_keys_give_datasketch_candidates(bands, rows):
    """Documents sharing key j for some j = the candidates MinHashLSH(params=(bands, rows)) returns."""
    k = bands * rows + 1                                               # one row left over, as b r <= k allows
    rng = np.random.default_rng(bands)
    pool = np.arange(600)
    base = [rng.choice(pool, 40, replace=False) for _ in range(8)]
    sets = base + [np.concatenate([s[:34], rng.choice(pool, 6)]) for s in base[:7]]
    minhashes = []
    for s in sets:
        m = MinHash(num_perm=k, seed=11)
        for item in np.unique(s):
            m.update(str(item).encode())
        minhashes.append(m)
    lsh = MinHashLSH(num_perm=k, params=(bands, rows))
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    theirs = {(i, j) for i, m in enumerate(minhashes) for j in lsh.query(m) if i < j}
    keys = [ex.band_keys(m.hashvalues, bands, rows) for m in minhashes]
    assert all(len(key) == bands for key in keys)
    ours = {(i, j) for i in range(len(keys)) for j in range(i + 1, len(keys))
            if any(x == y for x, y in zip(keys[i], keys[j]))}
    assert ours == theirs, f"pairs only yours: {sorted(ours - theirs)}; only datasketch's: {sorted(theirs - ours)}"
    assert len(theirs) >= 2


@pytest.mark.exercise("12.3")
def test_band_key_j_covers_band_j():
    """Two signatures equal only in rows 4..7: with rows = 4, key 1 agrees and every other key differs."""
    first = np.arange(20, dtype=np.uint32)
    second = first + np.uint32(100)
    second[4:8] = first[4:8]
    agree = [x == y for x, y in zip(ex.band_keys(first, 5, 4), ex.band_keys(second, 5, 4))]
    assert agree == [False, True, False, False, False], agree


# ---- 12.4 MP3's visible subset and attention mask ---------------------------------------------------------

def _torch_visible(u, attention_mask, eta):
    """torch.topk formulation: per row, the floor(eta n) real tokens of smallest u are masked."""
    u, real = torch.from_numpy(u), torch.from_numpy(attention_mask).bool()
    visible = real.clone()
    for b in range(len(u)):
        k = int(eta * int(real[b].sum()))
        if k:
            scores = torch.where(real[b], u[b], torch.tensor(2.0, dtype=u.dtype))
            visible[b, torch.topk(scores, k, largest=False).indices] = False
    return visible


@pytest.mark.exercise("12.4")
@pytest.mark.parametrize("eta", [0.0, 0.5, 0.75])
def test_mp3_visible_subset_matches_torch(eta):
    """Odd lengths and padding; the visible subset against torch.topk, the mask against its definition."""
    rng = np.random.default_rng(int(eta * 100))
    lengths = np.array([9, 5, 1, 7])
    attention_mask = (np.arange(9) < lengths[:, None]).astype(np.int64)
    u = rng.random((4, 9))
    visible, mask = ex.mp3_attention_mask(u, attention_mask, eta, 3)
    want = _torch_visible(u, attention_mask, eta)
    assert_matches("visible", np.asarray(visible).astype(int), want.int())
    assert np.asarray(visible).sum(1).tolist() == (lengths - np.floor(eta * lengths)).astype(int).tolist(), \
        "each row keeps n - floor(eta n) visible tokens"
    want_mask = (~want)[:, None, None, :].expand(4, 3, 9, 9).reshape(12, 9, 9)
    assert_matches("mask (B * H, T, T), batch-major, True = key hidden", np.asarray(mask).astype(int), want_mask.int())


@pytest.mark.exercise("12.4")
def test_mp3_mask_in_torch_attention_equals_attention_over_the_visible_keys():
    """Fed to nn.MultiheadAttention, the mask must give, for every query (masked ones too), attention over the
    visible tokens only: the same as calling the module with only those tokens as keys and values."""
    torch.manual_seed(0)
    B, T, E, H = 3, 8, 12, 3
    rng = np.random.default_rng(1)
    attention_mask = np.ones((B, T), dtype=np.int64)
    visible, mask = ex.mp3_attention_mask(rng.random((B, T)), attention_mask, 0.5, H)
    visible = np.asarray(visible)
    mha = torch.nn.MultiheadAttention(E, H, batch_first=True).double()
    x = torch.randn(B, T, E, dtype=torch.float64)
    out = mha(x, x, x, attn_mask=torch.from_numpy(np.asarray(mask)), need_weights=False)[0]
    for b in range(B):
        keys = x[b:b + 1, torch.from_numpy(visible[b])]
        want = mha(x[b:b + 1], keys, keys, need_weights=False)[0]
        assert_matches(f"row {b} attended over its visible tokens", out[b:b + 1].detach(), want.detach(),
                       rtol=1e-10, atol=1e-12)


# ---- 12.5 TERA's time alteration -----------------------------------------------------------------------

def _torch_time_alteration(x, starts, sources, action, span):
    x = torch.from_numpy(x)
    out, frames = x.clone(), torch.zeros(x.shape[:2], dtype=torch.bool)
    for b in range(x.shape[0]):
        for s, r in zip(starts[b].tolist(), sources[b].tolist()):
            if s >= 0:
                frames[b, s:s + span] = True
                if action[b] == 1:
                    out[b, s:s + span] = x[b, r:r + span]
                elif action[b] == 0:
                    out[b, s:s + span] = 0
    return out, frames


@pytest.mark.exercise("12.5")
def test_tera_time_alteration_by_hand():
    """Overlapping spans (the later one wins), each action, a row with fewer spans; x left untouched."""
    x = np.random.default_rng(0).standard_normal((3, 20, 4))
    copy = x.copy()
    starts = np.array([[2, 6], [10, -1], [0, 13]])
    sources = np.array([[12, 0], [1, -1], [5, 3]])
    action = np.array([1, 0, 2])
    altered, frames = ex.tera_time_alteration(x, starts, sources, action, 7)
    want, want_frames = _torch_time_alteration(x, starts, sources, action, 7)
    assert_matches("altered", np.asarray(altered), want)
    assert_matches("frames (kept spans count too)", np.asarray(frames).astype(int), want_frames.int())
    assert (x == copy).all(), "x was modified in place"


@pytest.mark.exercise("12.5")
@pytest.mark.parametrize("span", [1, 3, 7])
def test_tera_time_alteration_random_draws(span):
    rng = np.random.default_rng(span)
    B, T, D = 6, 31, 5
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    K = 4
    starts = np.stack([rng.permutation(T - span + 1)[:K] for _ in range(B)])
    sources = np.stack([rng.permutation(T - span + 1)[:K] for _ in range(B)])
    starts[0, 2:] = sources[0, 2:] = -1
    action = np.array([0, 1, 2, 1, 1, 0])
    altered, frames = ex.tera_time_alteration(x, starts, sources, action, span)
    want, want_frames = _torch_time_alteration(x, starts, sources, action, span)
    assert np.asarray(altered).dtype == np.float32, "altered keeps x's dtype"
    assert_matches("altered", np.asarray(altered), want)
    assert_matches("frames", np.asarray(frames).astype(int), want_frames.int())


# ---- 12.6 parameter count and training FLOPs -------------------------------------------------------

SHAPES = [(1, 4, 5, 3), (3, 21, 37, 11), (2, 64, 1024, 64)]      # (n_layer, n_embd, vocab_size, block_size)


def torch_gpt(n_layer, n_embd, vocab_size, block_size):
    from book.models.gpt import GPTConfig
    from book.torch_reference import GPT as TorchGPT
    heads = 3 if n_embd % 3 == 0 else 1
    return TorchGPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=heads,
                              n_embd=n_embd))


@pytest.mark.exercise("12.6")
@pytest.mark.parametrize("shape", SHAPES, ids=["tiny", "odd", "sweep-size"])
def test_parameter_count_equals_a_torch_models(shape):
    """Against the parameters of the PyTorch twin of book.models.gpt.GPT, counted tensor by tensor."""
    model = torch_gpt(*shape)
    embeddings = ("transformer.wte.", "transformer.wpe.", "lm_head.")
    want_total = sum(p.numel() for p in model.parameters())
    want_non_embedding = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(embeddings))
    non_embedding, total = ex.gpt_parameter_count(*shape)
    assert non_embedding == want_non_embedding, f"non-embedding: {non_embedding}, the model has {want_non_embedding}"
    assert total == want_total, f"total: {total}, the model has {want_total}"


@pytest.mark.exercise("12.6")
@pytest.mark.parametrize("shape", SHAPES[1:], ids=["odd", "sweep-size"])
def test_training_flops_equal_torchs_flop_counter(shape):
    """Against torch's FlopCounterMode on one forward and backward pass of the twin (it counts the matrix products;
    the twin's fused attention kernel is not among them)."""
    from torch.utils.flop_counter import FlopCounterMode

    n_layer, n_embd, vocab_size, block_size = shape
    model = torch_gpt(*shape)
    idx = torch.randint(0, vocab_size, (2, block_size), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(idx, idx)
        loss.backward()
    got = ex.gpt_training_flops(n_layer, n_embd, vocab_size, idx.numel())
    assert got == counter.get_total_flops(), f"{got:,} FLOPs, torch counts {counter.get_total_flops():,}"


# ---- 12.7 a power law in log space ---------------------------------------------------------------------

@pytest.mark.exercise("12.7")
def test_power_law_fit_against_linregress():
    """Exponent, coefficient and the exponent's standard error against scipy.stats.linregress and numpy.polyfit."""
    rng = np.random.default_rng(0)
    x = np.logspace(13, 17, 11)
    y = 9.1 * x ** -0.07 * np.exp(rng.normal(0, 0.02, x.shape))
    k, a, k_se = ex.fit_power_law(x, y)
    reference = scipy.stats.linregress(np.log(x), np.log(y))
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    assert k == pytest.approx(reference.slope, rel=1e-9) and k == pytest.approx(slope, rel=1e-9)
    assert a == pytest.approx(np.exp(intercept), rel=1e-9), f"coefficient {a}, expected {np.exp(intercept)}"
    assert k_se == pytest.approx(reference.stderr, rel=1e-9), f"standard error {k_se}, expected {reference.stderr}"


@pytest.mark.exercise("12.7")
def test_power_law_fit_recovers_known_exponents():
    """Noise-free data give the exponent exactly and a zero standard error; noisy data land within 3 errors."""
    x = np.array([1e3, 1e4, 1e5, 1e6])
    k, a, k_se = ex.fit_power_law(x, 2.5 * x ** 0.73)
    assert k == pytest.approx(0.73, rel=1e-9) and a == pytest.approx(2.5, rel=1e-9) and k_se < 1e-9
    rng = np.random.default_rng(1)
    for true_k in (-0.05, 0.5):
        x = np.logspace(10, 14, 20)
        k, _, k_se = ex.fit_power_law(x, 3.0 * x ** true_k * np.exp(rng.normal(0, 0.05, 20)))
        assert abs(k - true_k) < 3 * k_se, f"exponent {k:.4f} +- {k_se:.4f}, the data follow {true_k}"
