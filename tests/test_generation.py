"""Decoding (book.generation) and the GPT's KV cache, against PyTorch and Hugging Face.

- top-k / top-p filters equal transformers' TopKLogitsWarper / TopPLogitsWarper on the same logits;
- sampling draws each token with its filtered softmax probability (a frequency test) and never a filtered one;
- the KV cache: logits computed position by position (or in chunks) from the cache equal the logits of one
  forward pass over the whole sequence, in float64 to 1e-12 and in float32 closely, and the torch twin's;
- greedy generation equals a greedy loop over the torch twin; cached and uncached generation give the same
  tokens, also past block_size.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the hub

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad.backend import np  # noqa: E402
from book.generation import generate, sample_next, softmax, top_k_filter, top_p_filter  # noqa: E402
from book.models.gpt import GPT, GPTConfig, KVCache  # noqa: E402
from book.testing import assert_close  # noqa: E402
from book.torch_reference import GPT as TorchGPT  # noqa: E402
from book.torch_reference import torch_state_dict  # noqa: E402

CONFIG = GPTConfig(vocab_size=29, block_size=24, n_layer=2, n_head=3, n_embd=24)


def random_logits(shape, seed, scale=3.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


# ---- filters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 5, 17, 40])
@pytest.mark.parametrize("shape", [(4, 40), (2, 3, 40)])
def test_top_k_matches_transformers(k, shape):
    logits = random_logits(shape, seed=k)
    want = TopKLogitsWarper(top_k=k, filter_value=-float("inf"))(None, torch.from_numpy(logits.reshape(-1, 40)))
    got = top_k_filter(logits, k)
    assert np.array_equal(got.reshape(-1, 40), want.numpy())
    assert ((got > -np.inf).sum(-1) == min(k, 40)).all()


def test_top_k_keeps_ties_with_the_kth():
    logits = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert np.array_equal(top_k_filter(logits, 2), [[-np.inf, 3.0, 3.0, -np.inf, 3.0]])


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_top_p_matches_transformers(p, scale):
    logits = random_logits((6, 50), seed=int(p * 100), scale=scale)
    want = TopPLogitsWarper(top_p=p, filter_value=-float("inf"))(None, torch.from_numpy(logits))
    got = top_p_filter(logits, p)
    assert np.array_equal(got, want.numpy())
    kept = got > -np.inf
    probs = softmax(logits)
    assert kept.any(-1).all()
    # the nucleus: what is kept reaches p, and dropping its least likely token would not
    assert ((probs * kept).sum(-1) >= p - 1e-12).all()
    least = np.where(kept, probs, np.inf).min(-1)
    assert ((probs * kept).sum(-1) - least < p + 1e-12).all()


def test_filters_leave_logits_alone_when_off():
    logits = random_logits((2, 7), seed=0)
    assert top_k_filter(logits, None) is logits and top_p_filter(logits, 1.0) is logits


def test_filter_errors():
    with pytest.raises(ValueError, match="top_k_filter: k must be >= 1"):
        top_k_filter(random_logits((1, 5), 0), 0)
    with pytest.raises(ValueError, match=r"top_p_filter: p must be in \(0, 1\]"):
        top_p_filter(random_logits((1, 5), 0), 0.0)
    with pytest.raises(ValueError, match="sampling needs a generator"):
        sample_next(random_logits((1, 5), 0), temperature=1.0)


# ---- sampling ---------------------------------------------------------------------------------

def test_greedy_is_torch_argmax():
    logits = random_logits((8, 30), seed=3)
    assert np.array_equal(sample_next(logits, temperature=0), torch.from_numpy(logits).argmax(-1).numpy())


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, None, None), (0.7, None, None), (1.3, 4, None),
                                                       (1.0, None, 0.8), (0.9, 6, 0.9)])
def test_sampling_frequencies_match_the_filtered_softmax(temperature, top_k, top_p):
    """200k draws over 8 tokens: each frequency within 5 standard errors of torch's filtered softmax."""
    logits = random_logits((1, 8), seed=11, scale=1.5)
    t = torch.from_numpy(logits) / temperature
    if top_k:
        t = TopKLogitsWarper(top_k=top_k)(None, t)
    if top_p:
        t = TopPLogitsWarper(top_p=top_p)(None, t)
    want = torch.softmax(t, -1).numpy()[0]
    n = 200_000
    draws = sample_next(np.repeat(logits, n, axis=0), temperature, top_k, top_p, np.random.default_rng(0))
    freq = np.bincount(draws, minlength=8) / n
    assert (freq[want == 0] == 0).all(), "a filtered token was drawn"
    stderr = np.sqrt(want * (1 - want) / n)
    assert (np.abs(freq - want) <= 5 * stderr + 1e-12).all(), (freq, want)


def test_sampling_repeats_with_the_same_seed():
    logits = random_logits((5, 20), seed=1)
    a = sample_next(logits, 1.0, 5, 0.9, np.random.default_rng(7))
    b = sample_next(logits, 1.0, 5, 0.9, mg.Generator(7))
    assert np.array_equal(a, b)


# ---- the KV cache -----------------------------------------------------------------------------

def models(dtype, seed=0):
    mg.manual_seed(seed)
    model = GPT(CONFIG).to(getattr(mg, dtype)).eval()
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():          # non-trivial LayerNorms and biases
        if p.ndim == 1:
            p.data[...] += (0.1 * rng.standard_normal(p.shape)).astype(dtype)
    twin = TorchGPT(CONFIG).to(getattr(torch, dtype)).eval()
    twin.load_state_dict(torch_state_dict(model))
    return model, twin


CHUNKINGS = {"one at a time": [1] * 19, "prefill then single": [7] + [1] * 12, "chunks": [5, 3, 1, 6, 4]}
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("chunks", list(CHUNKINGS.values()), ids=list(CHUNKINGS))
def test_cached_logits_equal_uncached_logits(dtype, chunks):
    model, twin = models(dtype)
    T = sum(chunks)
    idx = np.random.default_rng(1).integers(0, CONFIG.vocab_size, size=(3, T))
    with mg.no_grad():
        full, _ = model(mg.tensor(idx))                                  # (B, T, V) in one pass
        cache, pieces, start = KVCache(CONFIG.n_layer), [], 0
        for n in chunks:
            logits, _ = model(mg.tensor(idx[:, start:start + n]), kv_cache=cache)
            pieces.append(logits.data)
            start += n
            assert cache.length == start
    cached = np.concatenate(pieces, axis=1)
    assert_close(f"[{dtype}] cached vs uncached logits", cached, full.data, **TOL[dtype])
    with torch.no_grad():
        want = twin(torch.from_numpy(idx))[0].numpy()
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    assert_close(f"[{dtype}] cached logits vs torch", cached, want, **tol)


def test_cache_overflow_and_mismatch_errors():
    model, _ = models("float64")
    cache = KVCache(CONFIG.n_layer)
    with mg.no_grad():
        model(mg.zeros(1, 20, dtype=mg.int64), kv_cache=cache)
        with pytest.raises(ValueError, match="20 cached positions \\+ 5 new ones exceeds block_size 24"):
            model(mg.zeros(1, 5, dtype=mg.int64), kv_cache=cache)
        with pytest.raises(ValueError, match="do not extend cached keys"):
            model(mg.zeros(2, 1, dtype=mg.int64), kv_cache=cache)
        with pytest.raises(ValueError, match="KVCache has 3 layers, the model 2"):
            model(mg.zeros(1, 1, dtype=mg.int64), kv_cache=KVCache(3))


# ---- generation -------------------------------------------------------------------------------

def torch_greedy(twin, idx, steps):
    tokens = torch.from_numpy(idx)
    with torch.no_grad():
        for _ in range(steps):
            logits, _ = twin(tokens[:, -CONFIG.block_size:])
            tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens.numpy()


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no cache"])
def test_greedy_generation_equals_torch_and_is_deterministic(use_cache):
    model, twin = models("float64")
    prompt = np.random.default_rng(2).integers(0, CONFIG.vocab_size, size=(2, 5))
    steps = 30                                                           # past block_size 24: the window slides
    got = generate(model, prompt, steps, temperature=0, use_cache=use_cache)
    assert got.shape == (2, 5 + steps) and np.array_equal(got[:, :5], prompt)
    assert np.array_equal(got, torch_greedy(twin, prompt, steps))
    assert np.array_equal(got, generate(model, prompt, steps, temperature=0, use_cache=use_cache))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("settings", [dict(temperature=0), dict(temperature=1.0),
                                      dict(temperature=0.8, top_k=5), dict(temperature=1.2, top_p=0.9)], ids=str)
def test_cached_generation_gives_the_same_tokens(dtype, settings):
    model, _ = models(dtype, seed=3)
    prompt = np.random.default_rng(4).integers(0, CONFIG.vocab_size, size=(3, 4))
    runs = [generate(model, prompt, 40, generator=np.random.default_rng(5), use_cache=c, **settings)
            for c in (True, False)]
    assert np.array_equal(*runs)


def test_generate_rejects_an_empty_prompt():
    model, _ = models("float64")
    with pytest.raises(ValueError, match="expected a prompt of shape"):
        generate(model, np.zeros((2, 0), dtype=np.int64), 3, temperature=0)
