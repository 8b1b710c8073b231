"""Self-checks for chapter 03: every answer is compared with a reference on the same inputs.

Run them with `make check CH=03`. Each test calls your function; one you have not written yet raises
ExerciseNotDone and the test fails with "not yet". References: PyTorch (cross-entropy and its gradient,
torch.optim.AdamW, torch's learning-rate schedulers, clip_grad_norm_, scaled_dot_product_attention),
Hugging Face's TopK/TopPLogitsWarper, and for BPE a worked example and minigrad's trainer. Everything is
float64 and shapes are odd on purpose.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the hub

import math  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper  # noqa: E402

from book.exercises import assert_matches, load_exercises  # noqa: E402
from book.tokenizers.bpe import count_words, train_merges  # noqa: E402

ex = load_exercises("03_language_modeling")


def rand(shape, seed, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


# ---- 03.1 BPE ---------------------------------------------------------------------------------

@pytest.mark.exercise("03.1")
@pytest.mark.parametrize("ids, pair, want", [
    ([1, 2, 3, 1, 2], (1, 2), [9, 3, 9]),
    ([7, 7, 7], (7, 7), [9, 7]),                  # left to right, no overlap
    ([7, 7, 7, 7], (7, 7), [9, 9]),
    ([1, 2], (2, 1), [1, 2]),
    ([], (1, 2), []),
    ([5], (5, 5), [5]),
])
def test_merge(ids, pair, want):
    original = list(ids)
    assert ex.merge(ids, pair, 9) == want
    assert ids == original, "merge changed its input list"


@pytest.mark.exercise("03.1")
def test_bpe_step_worked_example():
    """Wikipedia's example: aaabdaaabac -> ZabdZabac (Z = aa) -> ZYdZYac (Y = ab) -> XdXac (X = ZY)."""
    a, b, c, d = map(ord, "abcd")
    words = {(a, a, a, b, d, a, a, a, b, a, c): 1}
    best, words = ex.bpe_step(words, 256)
    assert best == (a, a) and words == {(256, a, b, d, 256, a, b, a, c): 1}
    best, words = ex.bpe_step(words, 257)
    assert best == (a, b) and words == {(256, 257, d, 256, 257, a, c): 1}
    best, words = ex.bpe_step(words, 258)
    assert best == (256, 257) and words == {(258, d, 258, a, c): 1}


@pytest.mark.exercise("03.1")
def test_bpe_step_counts_frequencies_and_stops():
    words = {(1, 2): 1, (3, 4): 5, (1, 2, 1, 2): 2}    # (1, 2) occurs 1 + 4 = 5 times, (3, 4) 5: tie -> (1, 2)
    best, words = ex.bpe_step(words, 10)
    assert best == (1, 2) and words == {(10,): 1, (3, 4): 5, (10, 10): 2}
    assert ex.bpe_step({(1,): 3}, 10) == (None, {(1,): 3})


@pytest.mark.exercise("03.1")
def test_bpe_steps_learn_the_librarys_merges():
    text = ("the cat sat on the mat; the rat ate the hat, that hat that the cat had. " * 3
            + "then there, thither, thus: the theatre's thirty-three thrones")
    words = {tuple(w.encode("utf-8")): f for w, f in count_words(text).items()}
    want = train_merges(words, 40)
    got = []
    for k in range(40):
        best, words = ex.bpe_step(words, 256 + k)
        got.append(best)
    assert got == want


# ---- 03.2 cross-entropy -----------------------------------------------------------------------

@pytest.mark.exercise("03.2")
@pytest.mark.parametrize("N, V, scale", [(1, 2, 1.0), (7, 11, 3.0), (64, 65, 1.0), (5, 9, 1000.0)])
def test_cross_entropy_and_gradient(N, V, scale):
    logits = rand((N, V), N * V, scale)
    targets = np.random.default_rng(N).integers(0, V, N)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)      # no overflow at scale 1000
        loss, grad = ex.cross_entropy(logits, targets)
    z = torch.tensor(logits, requires_grad=True)
    want = F.cross_entropy(z, torch.from_numpy(targets))
    want.backward()
    assert_matches("loss", loss, want)
    assert_matches("dlogits", grad, z.grad)


# ---- 03.3 AdamW -------------------------------------------------------------------------------

@pytest.mark.exercise("03.3")
@pytest.mark.parametrize("lr, betas, eps, weight_decay", [(1e-3, (0.9, 0.999), 1e-8, 0.01),
                                                          (3e-2, (0.8, 0.95), 1e-6, 0.1),
                                                          (1e-1, (0.9, 0.99), 1e-8, 0.0)])
def test_adamw_steps_match_torch(lr, betas, eps, weight_decay):
    param = rand((5, 3), 1)
    p = torch.nn.Parameter(torch.tensor(param))
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    m, v = np.zeros_like(param), np.zeros_like(param)
    for step in range(1, 6):
        grad = rand((5, 3), 10 + step, scale=step)
        p.grad = torch.tensor(grad)
        opt.step()
        inputs = (param, m, v)
        copies = [a.copy() for a in inputs]
        param, m, v = ex.adamw_step(param, grad, m, v, step, lr, betas, eps, weight_decay)
        assert all(np.array_equal(a, c) for a, c in zip(inputs, copies)), "adamw_step changed its inputs"
        assert_matches(f"param after step {step}", param, p)
        assert_matches(f"exp_avg after step {step}", m, opt.state[p]["exp_avg"])
        assert_matches(f"exp_avg_sq after step {step}", v, opt.state[p]["exp_avg_sq"])


# ---- 03.4 the schedule ------------------------------------------------------------------------

@pytest.mark.exercise("03.4")
@pytest.mark.filterwarnings("ignore::UserWarning")  # SequentialLR's internal step(epoch) deprecation notice
@pytest.mark.parametrize("warmup, total, min_lr", [(4, 15, 0.0), (10, 100, 1e-4), (1, 7, 2e-4)])
def test_warmup_cosine_matches_torch_schedulers(warmup, total, min_lr):
    max_lr = 1e-3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    S = torch.optim.lr_scheduler
    ramp = S.LinearLR(opt, start_factor=1e-12, end_factor=1.0, total_iters=warmup)     # from (almost) 0
    cosine = S.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr)
    sched = S.SequentialLR(opt, [ramp, cosine], milestones=[warmup])
    want = []
    for _ in range(total + 1):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    got = [ex.warmup_cosine_lr(s, max_lr, min_lr, warmup, total) for s in range(total + 1)]
    assert_matches("learning rates", got, want, rtol=1e-9, atol=1e-14)
    assert ex.warmup_cosine_lr(total + 5, max_lr, min_lr, warmup, total) == pytest.approx(min_lr)


# ---- 03.5 clipping ----------------------------------------------------------------------------

@pytest.mark.exercise("03.5")
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    shapes = [(3, 4), (4,), (2, 3, 2), ()]
    grads = [rand(s, i, scale=0.7) for i, s in enumerate(shapes)]
    params = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in shapes]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    want_total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    clipped, total = ex.clip_grad_norm(grads, max_norm)
    assert_matches("total norm", total, want_total)
    for i, (c, p) in enumerate(zip(clipped, params)):
        assert_matches(f"clipped gradient {i}", c, p.grad)


# ---- 03.6 top-k and top-p ---------------------------------------------------------------------

@pytest.mark.exercise("03.6")
@pytest.mark.parametrize("k", [1, 3, 10, 31, 50])
def test_top_k_matches_transformers(k):
    logits = rand((4, 31), k, scale=2.0)
    want = TopKLogitsWarper(top_k=k, filter_value=-math.inf)(None, torch.tensor(logits))
    got = ex.top_k_filter(logits, k)
    assert_matches("top-k logits", got, want, rtol=0, atol=0)
    batched = ex.top_k_filter(logits.reshape(2, 2, 31), k)
    assert_matches("top-k logits, (2, 2, V)", batched, want.reshape(2, 2, 31), rtol=0, atol=0)


@pytest.mark.exercise("03.6")
@pytest.mark.parametrize("p", [0.01, 0.25, 0.5, 0.8, 0.95, 0.999])
def test_top_p_matches_transformers(p):
    logits = rand((6, 40), int(p * 1000), scale=2.5)
    want = TopPLogitsWarper(top_p=p, filter_value=-math.inf)(None, torch.tensor(logits))
    got = ex.top_p_filter(logits, p)
    assert_matches("top-p logits", got, want, rtol=0, atol=0)


# ---- 03.7 the KV cache ------------------------------------------------------------------------

@pytest.mark.exercise("03.7")
@pytest.mark.parametrize("B, H, D, T", [(1, 1, 4, 1), (2, 3, 5, 9)])
def test_attention_with_cache_equals_full_causal_attention(B, H, D, T):
    """Feeding tokens one at a time through the cache gives each row of torch's causal attention."""
    q, k, v = rand((B, H, T, D), 1), rand((B, H, T, D), 2), rand((B, H, T, D), 3)
    want = F.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v), is_causal=True)
    k_cache, v_cache = np.zeros((B, H, 0, D)), np.zeros((B, H, 0, D))
    for t in range(T):
        out, k_cache, v_cache = ex.attend_with_cache(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1],
                                                     k_cache, v_cache)
        assert k_cache.shape == v_cache.shape == (B, H, t + 1, D)
        assert_matches(f"output at position {t}", out, want[:, :, t:t + 1])
    assert_matches("the keys cached", k_cache, k, rtol=0, atol=0)
    assert_matches("the values cached", v_cache, v, rtol=0, atol=0)
