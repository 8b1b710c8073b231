"""Generating text with a trained GPT: decoding rules and the loop, with or without a KV cache.

At each step the model gives logits z (one per vocabulary entry) for the next token; a decoding rule picks it:

    greedy          argmax_i z_i                                    (temperature = 0)
    temperature     sample from softmax(z / tau): tau < 1 sharpens the distribution, tau > 1 flattens it
    top-k           keep the k largest logits, set the others to -inf, then sample (Fan et al., 2018)
    top-p (nucleus) keep the smallest set of most likely tokens whose probability reaches p, then sample
                    (Holtzman et al., 2020): the set is small where the model is sure, large where it is not

The filters follow Hugging Face's TopKLogitsWarper and TopPLogitsWarper: ties with the k-th logit are kept;
top-p sorts ascending and removes the tokens whose cumulative probability is <= 1 - p, always keeping the
most likely one. A filtered token has probability exactly 0. Sampling inverts the cumulative distribution
at a uniform draw from the generator you pass, so a run can be repeated exactly.

With `use_cache=True` the loop feeds the model only the newest token, its keys and values appended to a
KVCache (book.models.gpt), instead of the whole sequence again. The tokens are the same as without the
cache. When the sequence outgrows the model's block_size, both keep the last block_size tokens as context;
the cache then cannot be extended (the positions shift), so it is rebuilt from that window at each step.
"""
from minigrad import backend
from minigrad.backend import np
from minigrad.tensor import Tensor, no_grad
from book.models.gpt import KVCache


def _array(x):
    return x.data if isinstance(x, Tensor) else x


def top_k_filter(logits, k):
    """Logits (..., V) with every entry below the k-th largest of its row set to -inf (k=None: unchanged)."""
    logits = _array(logits)
    V = logits.shape[-1]
    if k is None or k >= V:
        return logits
    if k < 1:
        raise ValueError(f"top_k_filter: k must be >= 1, got {k}")
    xp = backend.array_module(logits)
    kth = xp.partition(logits, V - k, axis=-1)[..., V - k:V - k + 1]       # (..., 1) the k-th largest
    return xp.where(logits < kth, -xp.inf, logits)


def softmax(logits):
    """Row softmax of an array (..., V), stable for -inf entries (not all -inf)."""
    xp = backend.array_module(logits)
    e = xp.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def top_p_filter(logits, p):
    """Logits (..., V) with the tokens outside the nucleus of probability p set to -inf (p=None or 1: unchanged).

    Sorted ascending, a token is removed when the cumulative probability up to and including it is <= 1 - p,
    i.e. when the more likely tokens already hold at least p; the most likely token always stays."""
    logits = _array(logits)
    if p is None or p >= 1.0:
        return logits
    if not 0.0 < p:
        raise ValueError(f"top_p_filter: p must be in (0, 1], got {p}")
    xp = backend.array_module(logits)
    order = xp.argsort(logits, axis=-1, kind="stable")                       # (..., V) ascending
    cumulative = xp.cumsum(softmax(xp.take_along_axis(logits, order, axis=-1)), axis=-1)
    remove_sorted = cumulative <= 1 - p
    remove_sorted[..., -1] = False                                           # keep the most likely token
    remove = xp.empty_like(remove_sorted)
    xp.put_along_axis(remove, order, remove_sorted, axis=-1)                 # back to vocabulary order
    return xp.where(remove, -xp.inf, logits)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token id per row of logits (B, V): greedy when temperature == 0, else filtered sampling.

    generator: a NumPy Generator (or minigrad.Generator); required when sampling."""
    logits = _array(logits)
    xp = backend.array_module(logits)
    if logits.ndim != 2:
        raise ValueError(f"sample_next: expected logits of shape (B, V), got {logits.shape}")
    if temperature < 0:
        raise ValueError(f"sample_next: temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(axis=-1)
    if generator is None:
        raise ValueError("sample_next: sampling needs a generator (np.random.default_rng(seed)); "
                         "use temperature=0 for greedy decoding")
    rng = getattr(generator, "rng", generator)
    probs = softmax(top_p_filter(top_k_filter(logits / temperature, top_k), top_p))    # (B, V)
    cdf = xp.cumsum(probs, axis=-1)                                                    # (B, V)
    u = xp.asarray(rng.random((logits.shape[0], 1))) * cdf[:, -1:]                    # (B, 1) in [0, total)
    return (cdf <= u).sum(axis=-1)                  # the first index whose cdf exceeds u: never a 0-prob token


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None, use_cache=True):
    """Extend idx (B, T0) by max_new_tokens tokens; returns (B, T0 + max_new_tokens) int64 (NumPy or CuPy).

    The model is put in eval mode; no graph is recorded."""
    tokens = _array(idx)
    xp = backend.array_module(tokens)
    tokens = xp.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        raise ValueError(f"generate: expected a prompt of shape (B, T0) with T0 >= 1, got {tokens.shape}")
    block = model.config.block_size
    model.eval()
    cache, feed = None, tokens[:, -block:]
    with no_grad():
        for _ in range(max_new_tokens):
            if not use_cache:
                logits, _ = model(Tensor(tokens[:, -block:]))
            else:
                if cache is None or cache.length + feed.shape[1] > block:
                    cache, feed = KVCache(model.config.n_layer), tokens[:, -block:]
                logits, _ = model(Tensor(feed), kv_cache=cache)
            next_id = sample_next(logits.data[:, -1, :], temperature, top_k, top_p, generator)   # (B,)
            feed = next_id[:, None].astype(np.int64)
            tokens = xp.concatenate([tokens, feed], axis=1)
    return tokens
