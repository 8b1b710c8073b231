"""book.models.nse and book.models.seq2seq_attention against PyTorch twins written here from the same equations,
the plain way: padded rows carried over with per-row Python branches, the memory rewritten row by row, the pointer
scattered onto the vocabulary with scatter_add_ (the library multiplies by a one-hot matrix). torch's state_dict loads
into the minigrad model; one NSE step (every output, and the gradient of every input and parameter under a random
upstream gradient) and whole teacher-forced summarizers (log-probs, loss, every parameter's gradient) must agree,
float64 tightly and float32 realistically, on odd sizes with padding; greedy decodes must be the same tokens, and
sampled summaries (the same uniform draws) the same tokens with the same log-probabilities and gradients.
The synthetic documents are checked for what the chapter relies on: the summary is the cued sentences."""
import pytest
import torch

import minigrad as mg
from minigrad.backend import np
from book.data.highlight_documents import BOS, CUE, EOS, PAD, STOP, highlight_documents, ids_to_text
from book.experiments.summarization import (ARMS, count_parameters, hidden_for_budget, make_summarizer,
                                            self_critical_loss)
from book.metrics.rouge import rouge_scores
from book.models.nse import NSECell, NSEState, masked_softmax, summarization_nll
from book.testing import TOLERANCES, assert_close

VOCAB, HIDDEN = 13, 7


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The twins' tensors are tiny: torch's worker threads only add overhead (10x on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TorchAdditiveAttention(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.W, self.U, self.v = (torch.nn.Linear(d, d, bias=False), torch.nn.Linear(d, d, bias=False),
                                  torch.nn.Linear(d, 1, bias=False))

    def forward(self, query, keys, mask):
        scores = self.v(torch.tanh(self.W(query)[:, None] + self.U(keys)))[..., 0]
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


class TorchNSECell(torch.nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.read = torch.nn.LSTMCell(d, d)
        self.attend = torch.nn.ModuleList([TorchAdditiveAttention(d) for _ in range(k)])
        self.compose = torch.nn.Linear((1 + k) * d, d)
        self.write = torch.nn.LSTMCell(d, d)

    def forward(self, x, read_state, write_state, memories, masks, keep=None):
        r, rc = self.read(x, read_state)
        z = [attend(r, M, mask) for attend, M, mask in zip(self.attend, memories, masks)]
        m = [torch.einsum("bn,bnd->bd", zk, M) for zk, M in zip(z, memories)]
        h, hc = self.write(torch.relu(self.compose(torch.cat([r, *m], dim=-1))), write_state)
        new_memories = []
        for zk, M in zip(z, memories):
            rows = []
            for b in range(len(x)):
                erase = torch.outer(zk[b], torch.ones_like(h[b]))      # z 1^T
                rows.append(M[b] * (1 - erase) + torch.outer(zk[b], h[b]) if keep is None or keep[b] else M[b])
            new_memories.append(torch.stack(rows))
        states = [r, rc, h, hc]
        if keep is not None:
            old = [*read_state, *write_state]
            states = [torch.stack([s[b] if keep[b] else o[b] for b in range(len(x))]) for s, o in zip(states, old)]
        return (r, m, h, z), (tuple(states[:2]), tuple(states[2:]), new_memories)


class TorchPointerGenerator(torch.nn.Module):
    def __init__(self, d, k, vocab):
        super().__init__()
        self.vocab = torch.nn.Linear((1 + k) * d, vocab)
        self.gate = torch.nn.Linear((2 + k) * d, 1)

    def forward(self, h, m, read, pointer, src):
        p_gen = torch.sigmoid(self.gate(torch.cat([*m, h, read], dim=-1)))
        p_copy = torch.zeros(len(h), self.vocab.out_features, dtype=h.dtype).scatter_add_(1, src, pointer)
        return torch.log(p_gen * torch.softmax(self.vocab(torch.cat([h, *m], dim=-1)), -1) + (1 - p_gen) * p_copy)


class TorchSummarizer(torch.nn.Module):
    """arm: "NSE", "hierarchical NSE" or "seq2seq + attention", from the module docstrings' equations."""

    def __init__(self, arm, vocab, d):
        super().__init__()
        self.arm, self.d, k = arm, d, 2 if arm == "hierarchical NSE" else 1
        self.embedding = torch.nn.Embedding(vocab, d, padding_idx=PAD)
        if arm == "seq2seq + attention":
            self.encoder, self.decoder = torch.nn.LSTMCell(d, d), torch.nn.LSTMCell(d, d)
            self.attend = TorchAdditiveAttention(d)
        else:
            self.encoder, self.decoder = TorchNSECell(d, k), TorchNSECell(d, k)
        self.output = TorchPointerGenerator(d, k, vocab)

    def encode(self, src, sentence_ids):
        B, S = src.shape
        e = self.embedding(src)
        mask = src != PAD
        zero = torch.zeros(B, self.d, dtype=e.dtype)
        if self.arm == "seq2seq + attention":
            h, c, outs = zero, zero, []
            for t in range(S):
                h2, c2 = self.encoder(e[:, t], (h, c))
                h = torch.stack([h2[b] if mask[b, t] else h[b] for b in range(B)])
                c = torch.stack([c2[b] if mask[b, t] else c[b] for b in range(B)])
                outs.append(h)
            return (h, c), (torch.stack(outs, 1), mask)
        memories, dec_masks = [e], [mask]
        if self.arm == "hierarchical NSE":
            N = int(sentence_ids.max()) + 1
            doc = torch.stack([torch.stack([e[b][sentence_ids[b] == n].mean(0) if (sentence_ids[b] == n).any()
                                            else torch.zeros(self.d, dtype=e.dtype) for n in range(N)])
                               for b in range(B)])
            memories.append(doc)
            dec_masks.append(torch.stack([torch.tensor([(sentence_ids[b] == n).any() for n in range(N)])
                                          for b in range(B)]))
        read, write = (zero, zero), (zero, zero)
        for t in range(S):
            masks = [mask]
            if self.arm == "hierarchical NSE":
                same = torch.stack([(sentence_ids[b] == sentence_ids[b, t]) & mask[b] if mask[b, t] else mask[b]
                                    for b in range(B)])
                masks = [same, dec_masks[1]]
            _, (read, write, memories) = self.encoder(e[:, t], read, write, memories, masks, keep=mask[:, t])
        return (read, write, memories), dec_masks

    def step(self, y, state, context, src):
        x = self.embedding(y)
        if self.arm == "seq2seq + attention":
            encoded, mask = context
            h, c = self.decoder(x, state)
            z = self.attend(h, encoded, mask)
            return self.output(h, [torch.einsum("bs,bsd->bd", z, encoded)], x, z, src), (h, c)
        read, write, memories = state
        (r, m, h, z), state = self.decoder(x, read, write, memories, context)
        return self.output(h, m, r, z[0], src), state

    def forward(self, src, sentence_ids, tgt_in):
        state, context = self.encode(src, sentence_ids)
        out = []
        for t in range(tgt_in.shape[1]):
            log_probs, state = self.step(tgt_in[:, t], state, context, src)
            out.append(log_probs)
        return torch.stack(out, 1)

    def greedy(self, src, sentence_ids, max_len):
        with torch.no_grad():
            state, context = self.encode(src, sentence_ids)
            y, out = torch.full((len(src),), BOS), []
            for _ in range(max_len):
                log_probs, state = self.step(y, state, context, src)
                y = log_probs.argmax(-1)
                out.append(y)
        return torch.stack(out, 1)

    def sample(self, src, sentence_ids, uniforms):
        """Inverse-CDF sampling with the given draws; -> ids (PAD after EOS), summed log-probs up to EOS."""
        state, context = self.encode(src, sentence_ids)
        y, out, total = torch.full((len(src),), BOS), [], 0
        alive = torch.ones(len(src), dtype=torch.bool)
        for t in range(uniforms.shape[1]):
            log_probs, state = self.step(y, state, context, src)
            cdf = torch.cumsum(log_probs.detach().double().exp(), -1)
            drawn = torch.searchsorted(cdf / cdf[:, -1:], uniforms[:, t:t + 1].contiguous(), right=True)[:, 0].clamp(max=VOCAB - 1)
            total = total + torch.where(alive, log_probs[torch.arange(len(src)), drawn], 0)
            y = torch.where(alive, drawn, PAD)
            out.append(y)
            alive = alive & (y != EOS)
        return torch.stack(out, 1), total


def _models(arm, dtype, seed=0):
    torch.manual_seed(seed)
    ref = TorchSummarizer(arm, VOCAB, HIDDEN).double()
    ours = make_summarizer(arm, VOCAB, HIDDEN)
    ours.load_state_dict(ref.state_dict())
    ours.to(np.dtype(dtype))
    return ours, ref.to(getattr(torch, dtype))


def _batch(seed=0):
    """Documents of 2, 4 (with the topic sentence) and 1 sentences (padded), summaries of different lengths (padded)."""
    rng = np.random.default_rng(seed)
    parts = [highlight_documents(rng, 1, n, VOCAB, sentence_length=(1, 2), num_highlights=1, cue=cue)
             for n, cue in ((2, "marker"), (3, "topic"), (1, "marker"))]
    pad = lambda arrays, fill: np.stack([np.pad(a[0], (0, max(len(x[0]) for x in arrays) - len(a[0])),  # noqa: E731
                                                constant_values=fill) for a in arrays])
    return (pad([p.src for p in parts], PAD), pad([p.sentence_ids for p in parts], -1),
            pad([p.tgt_in for p in parts], PAD), pad([p.targets for p in parts], PAD))


@pytest.mark.parametrize("arm", ARMS)
def test_parameter_names_match_torch(arm):
    ours, ref = _models(arm, "float64")
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("k", [1, 2])
def test_one_nse_step_outputs_and_every_gradient_match_torch(k, dtype):
    B, D, sizes = 3, 5, (6, 4)[:k]
    rng = np.random.default_rng(k)
    tol = TOLERANCES[dtype]
    torch.manual_seed(k)
    ref = TorchNSECell(D, k).to(getattr(torch, dtype))
    ours = NSECell(D, D, k, dtype=np.dtype(dtype))
    ours.load_state_dict({name: v.double() for name, v in ref.state_dict().items()})
    ours.to(np.dtype(dtype))
    arrays = [rng.standard_normal((B, D)).astype(dtype) for _ in range(5)]  # x, read (h, c), write (h, c)
    arrays += [rng.standard_normal((B, n, D)).astype(dtype) for n in sizes]
    masks = [np.arange(n) < np.array([n, n - 2, 1])[:, None] for n in sizes]  # padded slots, one row with one slot
    keep = np.array([True, False, True])                                       # row 1: a padded time step
    mg_in = [mg.tensor(a, requires_grad=True) for a in arrays]
    t_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    step, state = ours(mg_in[0], NSEState(tuple(mg_in[1:3]), tuple(mg_in[3:5]), mg_in[5:]), masks, keep=keep)
    (r, m, h, z), (t_read, t_write, t_memories) = ref(t_in[0], tuple(t_in[1:3]), tuple(t_in[3:5]), t_in[5:],
                                                      [torch.from_numpy(a) for a in masks], keep=torch.from_numpy(keep))
    mg_out = [step.read, *step.retrieved, step.written, *step.attention, *state.read, *state.write, *state.memories]
    t_out = [r, *m, h, *z, *t_read, *t_write, *t_memories]
    for i, (a, b) in enumerate(zip(mg_out, t_out)):
        assert a.dtype == np.dtype(dtype), i
        assert_close(f"[{dtype}] output {i}", a.data, b.detach().numpy(), **tol)
    for zk, mask in zip(step.attention, masks):
        assert np.all(zk.data[~mask] == 0)
    upstream = [np.random.default_rng(10 + i).standard_normal(a.shape).astype(dtype) for i, a in enumerate(mg_out)]
    sum(((a * mg.tensor(u)).sum() for a, u in zip(mg_out, upstream)), mg.tensor(np.zeros((), dtype))).backward()
    torch.autograd.backward(t_out, [torch.from_numpy(u) for u in upstream])  # the same vector-Jacobian product
    for i, (a, b) in enumerate(zip(mg_in, t_in)):
        assert_close(f"[{dtype}] grad of input {i}", a.grad.data, b.grad.numpy(), **tol)
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, tp.grad.numpy(), **tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arm", ARMS)
def test_unrolled_summarizer_log_probs_loss_and_gradients_match_torch(arm, dtype):
    ours, ref = _models(arm, dtype)
    src, sentence_ids, tgt_in, targets = _batch()
    tol = TOLERANCES[dtype]
    log_probs = ours(src, sentence_ids, tgt_in)
    t_log_probs = ref(*(torch.from_numpy(a) for a in (src, sentence_ids, tgt_in)))
    assert log_probs.shape == (3, tgt_in.shape[1], VOCAB) and log_probs.dtype == np.dtype(dtype)
    assert_close(f"[{dtype}] log-probs", log_probs.data, t_log_probs.detach().numpy(), **tol)
    upstream = np.random.default_rng(1).standard_normal(log_probs.shape).astype(dtype)  # not .sum(): no cancelling
    log_probs.backward(mg.tensor(upstream))
    t_log_probs.backward(torch.from_numpy(upstream))
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert p.grad is not None and p.grad.dtype == p.dtype, name
        assert_close(f"[{dtype}] grad of {name} (random upstream)", p.grad.data, tp.grad.numpy(), **tol)

    ours.zero_grad()
    ref.zero_grad()
    loss = summarization_nll(ours(src, sentence_ids, tgt_in), targets)
    t_loss = torch.nn.functional.nll_loss(ref(*(torch.from_numpy(a) for a in (src, sentence_ids, tgt_in)))
                                          .reshape(-1, VOCAB), torch.from_numpy(targets).reshape(-1), ignore_index=PAD)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)
    loss.backward()
    t_loss.backward()
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_close(f"[{dtype}] grad of {name} (loss)", p.grad.data, tp.grad.numpy(), **tol)


@pytest.mark.parametrize("arm", ARMS)
def test_greedy_decoding_matches_torch(arm):
    ours, ref = _models(arm, "float64", seed=3)
    src, sentence_ids, _, _ = _batch(seed=4)
    got = ours.greedy_decode(src, sentence_ids, max_len=6)
    want = ref.greedy(torch.from_numpy(src), torch.from_numpy(sentence_ids), 6).numpy()
    for row, want_row in zip(got, want):
        end = list(row).index(EOS) + 1 if EOS in row else len(row)
        assert row[:end].tolist() == want_row[:end].tolist() and np.all(row[end:] == PAD)


@pytest.mark.parametrize("arm", ["seq2seq + attention", "hierarchical NSE"])
def test_sampled_summaries_and_their_log_prob_gradients_match_torch(arm):
    """Self-critical training's sample: the same draws give the same ids, the same summed log-probs (up to each
    row's EOS), and the same gradient of every parameter under a random upstream gradient."""
    ours, ref = _models(arm, "float64", seed=5)
    src, sentence_ids, _, _ = _batch(seed=6)
    uniforms = np.random.default_rng(7).random((3, 9))
    ids, log_p = ours.sample_decode(src, sentence_ids, uniforms)
    t_ids, t_log_p = ref.sample(torch.from_numpy(src), torch.from_numpy(sentence_ids), torch.from_numpy(uniforms))
    assert np.array_equal(ids, t_ids.numpy()) and log_p.shape == (3,)
    assert_close("summed log-probs", log_p.data, t_log_p.detach().numpy(), **TOLERANCES["float64"])
    upstream = np.array([0.7, -1.3, 0.4])
    log_p.backward(mg.tensor(upstream))
    t_log_p.backward(torch.from_numpy(upstream))
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_close(f"grad of {name}", p.grad.data, tp.grad.numpy(), **TOLERANCES["float64"])


def test_self_critical_loss_reinforces_only_samples_that_beat_greedy():
    """-(R(sample) - R(greedy)) log P(sample), averaged: recomputed from its parts (ROUGE-L of book.metrics.rouge, which
    tests/test_rouge.py checks against the rouge-score package)."""
    model = make_summarizer("NSE", VOCAB, HIDDEN, seed=1)
    batch = highlight_documents(np.random.default_rng(8), 4, 2, VOCAB, sentence_length=(1, 2), num_highlights=1)
    uniforms = np.random.default_rng(9).random((4, 8))
    loss, r_sample, r_greedy = self_critical_loss(model, batch, uniforms)
    sampled, log_p = model.sample_decode(batch.src, batch.sentence_ids, uniforms)
    greedy = model.greedy_decode(batch.src, batch.sentence_ids, 8)
    for targets, decoded, rewards in ((batch.targets, sampled, r_sample), (batch.targets, greedy, r_greedy)):
        want = [rouge_scores(ids_to_text(t), ids_to_text(d))["rougeL"].fmeasure for t, d in zip(targets, decoded)]
        assert np.allclose(rewards, want)
    assert np.isclose(loss.item(), -np.mean((r_sample - r_greedy) * log_p.data), rtol=1e-5)


def test_highlighted_sentences_are_the_summary():
    batch = highlight_documents(np.random.default_rng(0), 20, (3, 7), 30, num_highlights=2)
    for src, sentence_ids, tgt_in, targets, keys in zip(batch.src, batch.sentence_ids, batch.tgt_in, batch.targets,
                                                         batch.highlighted):
        sentences = [src[sentence_ids == n] for n in range(sentence_ids.max() + 1)]
        assert 3 <= len(sentences) <= 7 and all(s[-1] == STOP for s in sentences)
        assert [n for n, s in enumerate(sentences) if s[0] == CUE] == keys and np.sum(src == CUE) == 2
        summary = np.concatenate([sentences[n][1:] for n in keys])
        assert targets[:len(summary) + 1].tolist() == summary.tolist() + [EOS] and np.all(targets[len(summary) + 1:] == PAD)
        assert tgt_in[0] == BOS and tgt_in[1:len(summary) + 1].tolist() == summary.tolist()
        assert np.all(sentence_ids[src == PAD] == -1)
    again = highlight_documents(np.random.default_rng(0), 20, (3, 7), 30, num_highlights=2)
    assert np.array_equal(again.src, batch.src)
    assert ids_to_text([CUE, 7, STOP, EOS, 9]) == "key w7 ."


def test_equal_parameter_budgets_and_bad_input_raise():
    budget = count_parameters(make_summarizer("NSE", 40, 24))
    for arm in ARMS:
        assert abs(count_parameters(make_summarizer(arm, 40, hidden_for_budget(arm, 40, budget))) / budget - 1) < 0.1
    with pytest.raises(ValueError, match="highlight_documents: expected"):
        highlight_documents(np.random.default_rng(0), 2, 1, 30, num_highlights=2)
    with pytest.raises(ValueError, match="make_summarizer: unknown arm"):
        make_summarizer("transformer", 30, 8)
    with pytest.raises(ValueError, match="masked_softmax: every row"):
        masked_softmax(mg.zeros((2, 3)), np.array([[True, False, False], [False, False, False]]))
    cell = NSECell(4, 4)
    with pytest.raises(ValueError, match=r"NSECell: expected memories \(B=2, N, 4\)"):
        cell(mg.zeros((2, 4)), NSEState((mg.zeros((2, 4)),) * 2, (mg.zeros((2, 4)),) * 2, [mg.zeros((3, 5, 4))]),
             [np.ones((3, 5), bool)])
    model = make_summarizer("NSE", 30, 8)
    with pytest.raises(ValueError, match="NSESummarizer: every document needs at least one word"):
        model(np.zeros((2, 3), np.int64), -np.ones((2, 3), np.int64), np.ones((2, 2), np.int64))
