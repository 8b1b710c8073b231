"""LAMA and the baseline poolers and text classifier against torch twins written here with torch.nn.

Each twin has the minigrad module's parameter names; the torch state_dict is loaded into the minigrad module,
then outputs and the gradients of the inputs and of every parameter are compared under random upstream
gradients (float64 tightly, float32 realistically). The classifier's twin runs torch.nn.GRU on a packed
sequence (pack_padded_sequence), the reference for what pads must (not) do.
"""
import math

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import minigrad as mg
from minigrad import nn
from minigrad.backend import np
from book.data.keyword_task import PAD, KeywordTask
from book.models.lama import LAMA
from book.models.text_classifiers import (POOLERS, AdditiveAttention, MeanPooling, StructuredSelfAttention,
                                              TextClassifier, TextClassifierConfig, attention_penalty, gru_scan,
                                              packed_bidirectional_gru)
from book.testing import TOLERANCES, assert_close, check_against_torch, random_array

B, N, D, HEADS, ATT = 3, 7, 10, 3, 5
LENGTHS = [7, 4, 1]  # a full row, a padded row, a single token


def _mask(lengths=LENGTHS, n=N):
    return np.arange(n)[None, :] < np.array(lengths)[:, None]  # (B, n) True on real tokens


# ---- torch twins -------------------------------------------------------------------------------

def _zero_pads(hidden, mask):
    return hidden * mask[:, :, None].to(hidden.dtype)


def _softmax_over_tokens(scores, mask):  # scores (B, heads, n)
    return torch.softmax(scores.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)


class TorchMeanPooling(torch.nn.Module):
    def forward(self, hidden, mask):
        weights = mask.to(hidden.dtype) / mask.sum(1, keepdim=True)                      # (B, n)
        return torch.einsum("bn,bnd->bd", weights, _zero_pads(hidden, mask)), weights[:, None, :]


class TorchAdditiveAttention(torch.nn.Module):
    def __init__(self, d, a):
        super().__init__()
        self.proj, self.v = torch.nn.Linear(d, a), torch.nn.Linear(a, 1, bias=False)

    def forward(self, hidden, mask):
        e = self.v(torch.tanh(self.proj(hidden))).squeeze(-1)                             # (B, n)
        a = _softmax_over_tokens(e[:, None, :], mask)                                     # (B, 1, n)
        return torch.einsum("bn,bnd->bd", a[:, 0], _zero_pads(hidden, mask)), a


class TorchStructuredSelfAttention(torch.nn.Module):
    def __init__(self, d, a, r):
        super().__init__()
        self.ws1, self.ws2 = torch.nn.Linear(d, a, bias=False), torch.nn.Linear(a, r, bias=False)

    def forward(self, hidden, mask):
        scores = self.ws2.weight @ torch.tanh(self.ws1.weight @ hidden.transpose(1, 2))  # (B, r, n), as in the paper
        A = _softmax_over_tokens(scores, mask)
        return (A @ _zero_pads(hidden, mask)).flatten(1), A


class TorchLAMA(torch.nn.Module):
    """Head by head, as the paper writes it: s_ki = tanh((p_k . c)(q_k . h_i))."""

    def __init__(self, d, m, normalize_heads=False):
        super().__init__()
        self.weight_p = torch.nn.Parameter(torch.randn(m, d) / math.sqrt(d))
        self.weight_q = torch.nn.Parameter(torch.randn(m, d) / math.sqrt(d))
        self.normalize_heads = normalize_heads

    def forward(self, hidden, mask):
        h = _zero_pads(hidden, mask)
        c = h.sum(1) / mask.sum(1, keepdim=True)                                          # (B, d)
        s = torch.stack([torch.tanh((c @ p)[:, None] * (h @ q)) for p, q in zip(self.weight_p, self.weight_q)], 1)
        if self.normalize_heads:
            s = torch.nn.functional.normalize(s, p=2.0, dim=1)
        A = _softmax_over_tokens(s, mask)                                                 # (B, m, n)
        return (A @ h).flatten(1), A


def _penalty(A):
    eye = torch.eye(A.shape[1], dtype=A.dtype)
    return ((A @ A.transpose(1, 2) - eye) ** 2).sum((1, 2)).mean()


def torch_pooler(cfg):
    d = 2 * cfg.hidden_size
    return {"mean": lambda: TorchMeanPooling(), "additive": lambda: TorchAdditiveAttention(d, cfg.attention_dim),
            "structured": lambda: TorchStructuredSelfAttention(d, cfg.attention_dim, cfg.num_heads),
            "lama": lambda: TorchLAMA(d, cfg.num_heads, cfg.normalize_heads)}[cfg.pooler]()


class TorchTextClassifier(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embedding = torch.nn.Embedding(cfg.vocab_size, cfg.embedding_dim, padding_idx=cfg.padding_idx)
        self.encoder = torch.nn.GRU(cfg.embedding_dim, cfg.hidden_size, batch_first=True, bidirectional=True)
        self.pooler = torch_pooler(cfg)
        features = 2 * cfg.hidden_size * (cfg.num_heads if cfg.pooler in ("structured", "lama") else 1)
        self.classifier = torch.nn.Sequential(torch.nn.Linear(features, cfg.mlp_hidden), torch.nn.ReLU(),
                                              torch.nn.Linear(cfg.mlp_hidden, cfg.num_classes))

    def forward(self, tokens, targets):
        mask = tokens != self.cfg.padding_idx
        packed = pack_padded_sequence(self.embedding(tokens), mask.sum(1), batch_first=True, enforce_sorted=False)
        hidden, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=tokens.shape[1])
        pooled, A = self.pooler(hidden, mask)
        logits = self.classifier(pooled)
        loss = torch.nn.functional.cross_entropy(logits, targets)
        return logits, loss + self.cfg.penalization_coef * _penalty(A) if self.cfg.penalization_coef else loss


# ---- poolers -----------------------------------------------------------------------------------

POOLER_CASES = {
    "mean": (lambda: MeanPooling(D), lambda: TorchMeanPooling()),
    "additive": (lambda: AdditiveAttention(D, ATT), lambda: TorchAdditiveAttention(D, ATT)),
    "structured": (lambda: StructuredSelfAttention(D, ATT, HEADS), lambda: TorchStructuredSelfAttention(D, ATT, HEADS)),
    "lama": (lambda: LAMA(D, HEADS), lambda: TorchLAMA(D, HEADS)),
    "lama-l2": (lambda: LAMA(D, HEADS, normalize_heads=True), lambda: TorchLAMA(D, HEADS, normalize_heads=True)),
}


@pytest.mark.parametrize("case", list(POOLER_CASES))
def test_pooler_outputs_attention_and_gradients_match_torch(case):
    make_ours, make_twin = POOLER_CASES[case]
    torch.manual_seed(0)
    twin, ours = make_twin().double(), make_ours().double()
    names = [n for n, _ in twin.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == names
    ours.load_state_dict(twin.state_dict())
    params = [p.detach().numpy().copy() for p in twin.parameters()]

    def call(module, functional_call, hidden, mask, *weights):
        module.to(hidden.dtype)
        return functional_call(module, dict(zip(names, weights)), (hidden, mask))

    hidden = random_array((B, N, D), seed=1)
    hidden[~_mask()] = 100.0  # pad contents must not matter
    check_against_torch(lambda *a: call(ours, nn.utils.functional_call, *a),
                        lambda *a: call(twin, torch.func.functional_call, *a),
                        [hidden, _mask(), *params], seed=2)


@pytest.mark.parametrize("pooler", ["mean", "additive", "structured", "lama"])
def test_pads_get_zero_attention_and_change_nothing(pooler):
    module = {"mean": MeanPooling(D), "additive": AdditiveAttention(D, ATT), "lama": LAMA(D, HEADS),
              "structured": StructuredSelfAttention(D, ATT, HEADS)}[pooler].double()
    mask = _mask()
    h1 = random_array((B, N, D), seed=3)
    h2 = np.where(mask[:, :, None], h1, np.nan)                  # same tokens, pads full of NaN ...
    h2[1, -1] = np.inf                                            # ... and inf
    x1, x2 = mg.tensor(h1, requires_grad=True), mg.tensor(h2, requires_grad=True)
    (p1, a1), (p2, a2) = module(x1, mg.tensor(mask)), module(x2, mask)  # mask as a Tensor or an array
    assert np.all(a1.data[np.broadcast_to(~mask[:, None, :], a1.shape)] == 0)
    assert_close("attention sums to 1", a1.data.sum(-1), np.ones(a1.shape[:2]), 1e-12, 1e-12)
    assert_close("pooled with other pads", p2.data, p1.data, 1e-12, 1e-12)
    assert_close("attention with other pads", a2.data, a1.data, 1e-12, 1e-12)
    upstream = mg.tensor(random_array(p1.shape, seed=5))
    grads = []
    for x, pooled in ((x1, p1), (x2, p2)):
        module.zero_grad()
        (pooled * upstream).sum().backward()
        assert np.all(x.grad.data[~mask] == 0)
        grads.append([p.grad.data.copy() for p in module.parameters()])
    for g1, g2 in zip(*grads):
        assert_close("parameter gradient with other pads", g2, g1, 1e-12, 1e-12)


def test_factorized_scores_equal_the_explicit_bilinear_form():
    """tanh((p_k . c)(q_k . h_i)) == tanh(c^T W_k h_i) with W_k = p_k q_k^T materialized, (m, d, d)."""
    lama = LAMA(D, HEADS, generator=mg.Generator(7)).double()
    hidden, mask = random_array((B, N, D), seed=8), _mask()
    P, Q = lama.weight_p.data, lama.weight_q.data                 # (m, d) each: rows p_k, q_k
    c = np.stack([hidden[b, mask[b]].mean(0) for b in range(B)])  # (B, d): mean over the real tokens
    W = np.stack([np.outer(P[k], Q[k]) for k in range(HEADS)])   # (m, d, d)
    want = np.tanh(np.einsum("bd,kde,bne->bkn", c, W, hidden))
    real = np.broadcast_to(mask[:, None, :], want.shape)          # scores at pads are masked out: not compared
    for normalize_heads in (False, True):
        lama.normalize_heads = normalize_heads
        if normalize_heads:
            want = want / np.linalg.norm(want, axis=1, keepdims=True)
        factorized = lama.scores(mg.tensor(hidden), mask).data
        bilinear = lama.bilinear_scores(mg.tensor(hidden), mask).data
        assert_close(f"factorized vs explicit ({normalize_heads=})", factorized[real], want[real], 1e-12, 1e-14)
        assert_close(f"bilinear_scores vs explicit ({normalize_heads=})", bilinear[real], want[real], 1e-12, 1e-14)
    assert np.linalg.matrix_rank(W[0]) == 1


@pytest.mark.parametrize("d, m", [(10, 3), (64, 4), (1, 1), (7, 12)])
def test_lama_has_2dm_parameters(d, m):
    lama = LAMA(d, m)
    assert sum(p.data.size for p in lama.parameters()) == 2 * d * m
    assert lama.out_features == m * d


def test_attention_penalty_matches_torch():
    A = np.abs(random_array((B, HEADS, N), seed=9))
    check_against_torch(attention_penalty, _penalty, [A / A.sum(-1, keepdims=True)])


# ---- the encoder and the classifier ------------------------------------------------------------

class PackedEncoder(nn.Module):
    def __init__(self, bias):
        super().__init__()
        self.gru = nn.GRU(4, 5, batch_first=True, bidirectional=True, bias=bias)

    def forward(self, x, mask):
        return packed_bidirectional_gru(self.gru, x, mask)


@pytest.mark.parametrize("bias", [True, False])
def test_packed_gru_without_pads_is_the_plain_bidirectional_gru(bias):
    ours, twin = PackedEncoder(bias).double(), torch.nn.GRU(4, 5, batch_first=True, bidirectional=True, bias=bias)
    names = [n for n, _ in twin.named_parameters()]
    params = [p.detach().double().numpy().copy() for p in twin.parameters()]
    check_against_torch(
        lambda x, mask, *w: nn.utils.functional_call(ours.to(x.dtype), {"gru." + n: t for n, t in zip(names, w)},
                                                     (x, mask)),
        lambda x, mask, *w: torch.func.functional_call(twin.to(x.dtype), dict(zip(names, w)), (x,))[0],
        [random_array((2, 6, 4), seed=10), np.ones((2, 6), dtype=bool), *params])


def _classifier_pair(pooler, dtype, **overrides):
    cfg = TextClassifierConfig(vocab_size=13, num_classes=5, pooler=pooler, embedding_dim=6, hidden_size=5,
                               attention_dim=4, num_heads=3, mlp_hidden=7, **overrides)
    torch.manual_seed(0)
    twin = TorchTextClassifier(cfg).double()
    ours = TextClassifier(cfg).to(np.dtype(dtype))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in twin.named_parameters()]
    ours.load_state_dict(twin.state_dict())
    return ours, twin.to(getattr(torch, dtype))


def _tokens(seed=11, lengths=(9, 5, 1, 9)):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 13, size=(len(lengths), max(lengths)))
    tokens[np.arange(max(lengths))[None, :] >= np.array(lengths)[:, None]] = PAD
    return tokens, rng.integers(0, 5, size=len(lengths))


CLASSIFIER_CASES = [("mean", {}), ("additive", {}), ("structured", {}), ("structured", {"penalization_coef": 0.3}),
                    ("lama", {}), ("lama", {"normalize_heads": True, "penalization_coef": 0.1})]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("pooler, overrides", CLASSIFIER_CASES,
                         ids=[p + "".join(f"-{k}" for k in o) for p, o in CLASSIFIER_CASES])
def test_classifier_logits_loss_and_every_gradient_match_torch(pooler, overrides, dtype):
    ours, twin = _classifier_pair(pooler, dtype, **overrides)
    tokens, targets = _tokens()
    logits, loss = ours(mg.tensor(tokens), mg.tensor(targets))
    t_logits, t_loss = twin(torch.from_numpy(tokens), torch.from_numpy(targets))
    tol = TOLERANCES[dtype]
    assert logits.dtype == np.dtype(dtype) and loss.shape == ()
    assert_close(f"[{dtype}] logits", logits.data, t_logits.detach().numpy(), **tol)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)
    upstream = random_array(logits.shape, seed=12, dtype=dtype)   # a random gradient on the logits too
    (loss + (logits * mg.tensor(upstream)).sum()).backward()
    (t_loss + (t_logits * torch.from_numpy(upstream)).sum()).backward()
    for (name, p), (_, tp) in zip(ours.named_parameters(), twin.named_parameters()):
        assert p.grad is not None and p.grad.dtype == p.dtype and p.grad.shape == p.shape, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, tp.grad.numpy(), **tol)


@pytest.mark.parametrize("pooler", POOLERS)
def test_classifier_ignores_pad_contents_and_pad_count(pooler):
    ours, _ = _classifier_pair(pooler, "float64")
    tokens, _ = _tokens()
    other = tokens.copy()
    other[tokens == PAD] = 3                          # pads that are real token ids, masked out explicitly
    longer = np.pad(tokens, ((0, 0), (0, 4)))         # four more pad columns
    with mg.no_grad():
        want = ours(mg.tensor(tokens))[0].data
        got_other = ours(mg.tensor(other), mask=tokens != PAD)[0].data
        got_longer = ours(mg.tensor(longer))[0].data
        alone = np.concatenate([ours(mg.tensor(tokens[i:i + 1, :k]))[0].data for i, k in enumerate((9, 5, 1, 9))])
    for name, got in [("other pad ids", got_other), ("more pads", got_longer), ("unpadded, one by one", alone)]:
        assert_close(name, got, want, 1e-12, 1e-12)


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [MeanPooling(D), AdditiveAttention(D, ATT), StructuredSelfAttention(D, ATT, 2),
                                    LAMA(D, 2)], ids=lambda m: type(m).__name__)
def test_poolers_reject_bad_masks_and_shapes(module):
    name = type(module).__name__
    hidden = mg.randn(B, N, D)
    with pytest.raises(ValueError, match=rf"{name}: mask of shape \(3, 6\) does not match .*expected \(3, 7\)"):
        module(hidden, np.ones((B, N - 1), dtype=bool))
    with pytest.raises(ValueError, match=f"{name}: mask must be bool"):
        module(hidden, np.ones((B, N)))
    with pytest.raises(ValueError, match=rf"{name}: every sequence needs at least one real token; rows \[2\]"):
        module(hidden, _mask([7, 4, 0]))
    with pytest.raises(ValueError, match=f"{name}: expected hidden states of shape \\(batch, length, dim\\)"):
        module(mg.randn(N, D))


def test_lama_and_classifier_reject_bad_configuration():
    with pytest.raises(ValueError, match="LAMA: hidden states of shape .* do not match input_dim=10"):
        LAMA(D, 2)(mg.randn(B, N, D + 1))
    with pytest.raises(ValueError, match="LAMA: input_dim and num_heads must be >= 1"):
        LAMA(D, 0)
    with pytest.raises(ValueError, match="unknown pooler 'max'; expected one of"):
        TextClassifier(TextClassifierConfig(vocab_size=5, num_classes=2, pooler="max"))
    with pytest.raises(ValueError, match="packed_bidirectional_gru: expected nn.GRU"):
        packed_bidirectional_gru(nn.GRU(3, 4, batch_first=True), mg.randn(2, 5, 3), None)
    with pytest.raises(ValueError, match=r"TextClassifier: expected tokens of shape \(batch, length\)"):
        TextClassifier(TextClassifierConfig(vocab_size=5, num_classes=2))(mg.tensor(np.array([1, 2, 3])))
    with pytest.raises(ValueError, match=r"attention_penalty: expected attention of shape \(batch, heads, length\)"):
        attention_penalty(mg.randn(3, 4))
    with pytest.raises(ValueError, match=r"gru_scan: expected x_proj \(B, n, 3H\), weight_hh \(3H, H\)"):
        gru_scan(mg.randn(2, 5, 9), mg.randn(12, 4), None, np.ones((2, 5), dtype=bool))


def test_classifier_with_a_linear_head():
    model = TextClassifier(TextClassifierConfig(vocab_size=13, num_classes=5, pooler="lama", hidden_size=5,
                                                num_heads=3, mlp_hidden=0))
    assert isinstance(model.classifier, nn.Linear) and model.classifier.weight.shape == (5, 3 * 10)
    logits, loss = model(mg.tensor(_tokens()[0]), mg.tensor(_tokens()[1]))
    assert logits.shape == (4, 5) and loss.shape == ()


# ---- the keyword task --------------------------------------------------------------------------

def test_keyword_task_draws_two_keywords_from_two_groups_and_labels_the_pair():
    task = KeywordTask(num_groups=4, keywords_per_group=3, num_fillers=20, min_len=5, max_len=12)
    batch = task.sample(500, np.random.default_rng(0))
    assert task.num_classes == 6 and task.vocab_size == 1 + 20 + 12
    lengths = batch.mask.sum(1)
    assert lengths.min() >= 5 and lengths.max() <= 12 and batch.tokens.shape == (500, 12)
    assert np.array_equal(batch.mask, batch.tokens != PAD)
    assert np.all(batch.mask == (np.arange(12)[None, :] < lengths[:, None]))  # right padding
    groups = task.group_of(batch.tokens)
    for i in range(500):
        found = np.flatnonzero(groups[i] >= 0)
        assert len(found) == 2 and sorted(groups[i, found]) == list(batch.groups[i])
        assert sorted(found) == sorted(batch.positions[i]) and found.max() < lengths[i]
        assert task.pairs[batch.labels[i]] == tuple(batch.groups[i])
    assert len(set(batch.labels.tolist())) == 6
    again = task.sample(500, np.random.default_rng(0))
    assert np.array_equal(again.tokens, batch.tokens) and np.array_equal(again.labels, batch.labels)


def test_keyword_task_rejects_bad_settings():
    with pytest.raises(ValueError, match="KeywordTask: need 2 <= min_len <= max_len"):
        KeywordTask(min_len=1, max_len=5)
    with pytest.raises(ValueError, match="KeywordTask: need num_groups >= 2"):
        KeywordTask(num_groups=1)
