"""book.objectives.mlm: the masking draws (statistics), their application (hand-worked), and the MLM loss of
BertForMaskedLM against transformers' BertForMaskedLM fed by a PyTorch formulation of the same draws: loss and the
gradient of every parameter, float64 tight and float32 realistic, odd sizes and padding."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
import transformers  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad.backend import np  # noqa: E402
from book.models.bert import BertConfig  # noqa: E402
from book.objectives.mlm import (IGNORE_INDEX, KEEP, MASK, RANDOM, BertForMaskedLM, MaskingDraws,  # noqa: E402
                                     apply_mlm_masking, draw_mlm_masking, draw_positions, maskable_positions,
                                     mlm_loss, word_ids_from_tokens)
from book.testing import TOLERANCES, assert_close, check_against_torch, random_array  # noqa: E402

PAD, CLS, SEP, MASK_ID = 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK_ID)
TINY = dict(vocab_size=23, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
            max_position_embeddings=16, type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _batch(lengths, T, vocab_size, seed):
    """[CLS] w ... w [SEP] [PAD]...: ids (B, T) with random word ids >= 4, and the attention mask."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(len(SPECIAL), vocab_size, size=(len(lengths), T))
    mask = (np.arange(T) < np.array(lengths)[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, PAD)
    ids[:, 0] = CLS
    ids[np.arange(len(lengths)), np.array(lengths) - 1] = SEP
    return ids.astype(np.int64), mask


# ---- which tokens may be masked -------------------------------------------------------------------

def test_word_ids_from_wordpiece_continuations():
    tokens = ["[CLS]", "un", "##afford", "##able", "rent", "##s", "now", "[SEP]"]
    assert word_ids_from_tokens(tokens).tolist() == [0, 1, 1, 1, 2, 2, 3, 4]
    batch = word_ids_from_tokens([["a", "##b", "c"], ["##x", "y", "##z"]])
    assert batch.tolist() == [[0, 0, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match="word_ids_from_tokens: rows have different lengths"):
        word_ids_from_tokens([["a"], ["b", "c"]])


def test_maskable_positions_exclude_special_tokens_and_padding():
    ids = np.array([[CLS, 7, 8, SEP, PAD], [CLS, MASK_ID, 9, 8, SEP]])
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    got = maskable_positions(ids, SPECIAL, mask)
    assert got.tolist() == [[False, True, True, False, False], [False, False, True, True, False]]
    with pytest.raises(ValueError, match=r"maskable_positions: attention_mask of shape \(2, 4\) does not match"):
        maskable_positions(ids, SPECIAL, mask[:, :4])


# ---- the draws: statistics on large samples ----------------------------------------------------------

def test_draws_select_15_percent_split_80_10_10_and_never_special_tokens():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 41, size=3000)
    ids, mask = _batch(lengths, 40, 50, 1)
    maskable = maskable_positions(ids, SPECIAL, mask)
    draws = draw_mlm_masking(maskable, rng, vocab_size=50)
    selected = draws.selected
    assert not (selected & ~maskable).any()                                      # never [CLS]/[SEP]/padding
    m = maskable.sum(axis=1)
    expected = np.where(m > 0, np.maximum(1, np.round(0.15 * m)), 0)             # per-row count, as BERT
    assert (selected.sum(axis=1) == expected).all()
    assert abs(selected.sum() / maskable.sum() - 0.15) < 0.01
    # position-wise: among rows with the full length, every maskable position is chosen as often
    full = lengths == 40
    freq = selected[full][:, 1:39].mean(axis=0)                                  # (38,)
    rate = expected[full][0] / 38
    n = full.sum()
    assert np.abs(freq - rate).max() < 5 * np.sqrt(rate * (1 - rate) / n)
    # 80 / 10 / 10 among the selected tokens, with binomial tolerances
    actions = draws.action[selected]
    N = actions.size
    for action, p in ((MASK, 0.8), (RANDOM, 0.1), (KEEP, 0.1)):
        assert abs((actions == action).mean() - p) < 4.5 * np.sqrt(p * (1 - p) / N), action
    # replacement ids: uniform over the vocabulary
    counts = np.bincount(draws.random_ids[selected], minlength=50)
    assert counts.size == 50 and draws.random_ids.min() >= 0
    chi2 = ((counts - N / 50) ** 2 / (N / 50)).sum()
    assert chi2 < 49 + 6 * np.sqrt(2 * 49)                                       # 49 degrees of freedom


def test_whole_word_masking_selects_every_piece_of_a_word_or_none():
    rng = np.random.default_rng(3)
    B, T = 2000, 30
    ids, mask = _batch([T] * B, T, 60, 4)
    maskable = maskable_positions(ids, SPECIAL, mask)
    # words of 1..3 pieces between [CLS] and [SEP]
    word_ids = np.zeros((B, T), dtype=np.int64)
    for b in range(B):
        starts = np.cumsum(rng.integers(1, 4, size=T))
        word_ids[b] = 1 + np.searchsorted(starts, np.arange(T), side="right")
    word_ids[:, 0], word_ids[:, -1] = 0, word_ids.max() + 1
    selected = draw_positions(maskable, rng, 0.15, word_ids)
    assert not (selected & ~maskable).any()
    for b in range(0, B, 7):
        for w in np.unique(word_ids[b, maskable[b]]):
            pieces = selected[b, (word_ids[b] == w) & maskable[b]]
            assert pieces.all() or not pieces.any(), (b, w)
    target = round(0.15 * 28)
    per_row = selected.sum(axis=1)
    assert per_row.max() <= target and per_row.mean() > target - 0.5          # words fill the budget, never exceed
    # multi-piece words are masked, not only single tokens
    sizes = np.array([[(word_ids[b] == word_ids[b, t]).sum() for t in range(T)] for b in range(0, B, 50)])
    assert (selected[::50] & (sizes > 1)).any()


def test_rates_are_checked():
    maskable = np.ones((2, 5), dtype=bool)
    with pytest.raises(ValueError, match=r"draw_positions: rate must be in \[0, 1\], got 1.5"):
        draw_positions(maskable, np.random.default_rng(0), 1.5)
    with pytest.raises(ValueError, match="draw_mlm_masking: split must be three probabilities"):
        draw_mlm_masking(maskable, np.random.default_rng(0), 10, split=(0.5, 0.5))
    with pytest.raises(ValueError, match="draw_positions: maskable must be a bool array"):
        draw_positions(np.ones((2, 5)), np.random.default_rng(0))


# ---- applying given draws ------------------------------------------------------------------------

def test_apply_mlm_masking_by_hand():
    ids = np.array([[CLS, 10, 11, 12, 13, SEP], [CLS, 14, 15, SEP, PAD, PAD]])
    selected = np.array([[0, 1, 1, 0, 1, 0], [0, 0, 1, 0, 0, 0]], dtype=bool)
    action = np.array([[RANDOM, MASK, RANDOM, MASK, KEEP, MASK], [MASK, MASK, MASK, KEEP, KEEP, KEEP]])
    random_ids = np.full((2, 6), 20)
    corrupted, labels = apply_mlm_masking(ids, MaskingDraws(selected, action, random_ids), MASK_ID)
    assert corrupted.tolist() == [[CLS, MASK_ID, 20, 12, 13, SEP], [CLS, 14, MASK_ID, SEP, PAD, PAD]]
    assert labels.tolist() == [[-100, 10, 11, -100, 13, -100], [-100, -100, 15, -100, -100, -100]]
    assert corrupted.dtype == labels.dtype == np.int64
    with pytest.raises(ValueError, match="apply_mlm_masking: the draws put \\[MASK\\] .* mask_token_id is None"):
        apply_mlm_masking(ids, MaskingDraws(selected, action, random_ids), None)
    with pytest.raises(ValueError, match=r"apply_mlm_masking: draws.selected must be a bool array of shape \(2, 6\)"):
        apply_mlm_masking(ids, MaskingDraws(selected[:, :5], action, random_ids), MASK_ID)


# ---- the loss, against torch ----------------------------------------------------------------------

def test_mlm_loss_matches_torch_cross_entropy_on_selected_positions():
    labels = np.random.default_rng(5).integers(0, 7, size=(3, 5))
    labels[np.random.default_rng(6).random((3, 5)) < 0.6] = IGNORE_INDEX
    labels[0, 0] = 2                                                             # at least one selected
    check_against_torch(
        lambda z, y: mlm_loss(z, y),
        lambda z, y: TF.cross_entropy(z.reshape(-1, 7), y.reshape(-1), ignore_index=-100),
        [random_array((3, 5, 7)), labels])
    with pytest.raises(ValueError, match=r"mlm_loss: logits of shape \(3, 5, 7\) and labels of shape \(3, 4\)"):
        mlm_loss(mg.zeros(3, 5, 7), labels[:, :4])


def _hf_masked_lm(dtype, seed=0):
    """transformers' BertForMaskedLM with every parameter random (not LayerNorm's ones and zeros)."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(**TINY, pad_token_id=PAD, attn_implementation="eager")
    model = transformers.BertForMaskedLM(config).to(getattr(torch, dtype)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.uniform_(0.5, 1.5) if name.endswith("LayerNorm.weight") else p.normal_(0.0, 0.3)
    return model


def _torch_masking(ids, draws):
    """The same corruption, written in torch from the same draws."""
    ids = torch.from_numpy(ids)
    selected, action, random_ids = (torch.from_numpy(a) for a in draws)
    corrupted = torch.where(selected & (action == 1), random_ids, ids)
    corrupted = torch.where(selected & (action == 0), torch.full_like(ids, MASK_ID), corrupted)
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    return corrupted, labels


@pytest.mark.parametrize("whole_word", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bert_mlm_loss_and_every_gradient_match_torch(dtype, whole_word):
    lengths = (7, 4, 2)                                                          # odd sizes and padding
    ids, mask = _batch(lengths, 7, TINY["vocab_size"], 7)
    types = (np.arange(7) >= 3).astype(np.int64)[None].repeat(3, 0) * mask
    rng = np.random.default_rng(8)
    word_ids = np.arange(7)[None].repeat(3, 0) // 2 if whole_word else None
    draws = draw_mlm_masking(maskable_positions(ids, SPECIAL, mask), rng, TINY["vocab_size"], rate=0.4,
                             word_ids=word_ids)
    draws = draws._replace(action=np.where(np.arange(7) % 3 == 0, RANDOM, draws.action))  # all three actions
    hf = _hf_masked_lm(dtype)
    ours = BertForMaskedLM(BertConfig.from_dict(hf.config.to_dict())).to(np.dtype(dtype)).eval()
    assert sorted(ours.state_dict()) == sorted(hf.state_dict())
    ours.load_state_dict(hf.state_dict())

    corrupted, labels = apply_mlm_masking(ids, draws, MASK_ID)
    t_corrupted, t_labels = _torch_masking(ids, draws)
    assert corrupted.tolist() == t_corrupted.tolist() and labels.tolist() == t_labels.tolist()
    assert (labels != IGNORE_INDEX).sum() >= 3

    logits = ours(mg.tensor(corrupted), mg.tensor(mask), mg.tensor(types))
    loss = mlm_loss(logits, labels)
    t_logits = hf(input_ids=t_corrupted, attention_mask=torch.from_numpy(mask),
                  token_type_ids=torch.from_numpy(types)).logits
    t_loss = TF.cross_entropy(t_logits.reshape(-1, TINY["vocab_size"]), t_labels.reshape(-1), ignore_index=-100)
    tol = TOLERANCES[dtype]
    assert loss.dtype == np.dtype(dtype)
    assert_close(f"[{dtype}] logits", logits.data, t_logits.detach().numpy(), **tol)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)

    loss.backward()
    t_loss.backward()
    hf_params = dict(hf.named_parameters())
    assert sorted(name for name, _ in ours.named_parameters()) == sorted(hf_params)
    for name, p in ours.named_parameters():
        assert p.grad.dtype == p.dtype and p.grad.shape == p.shape, name
        assert_close(f"[{dtype}] grad of {name}", p.grad.data, hf_params[name].grad.numpy(), **tol)


def test_the_decoder_is_tied_to_the_word_embeddings():
    model = BertForMaskedLM(BertConfig(**TINY))
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias
    assert not model.bert.embeddings.word_embeddings.weight.data[0].any()        # the padding row starts at zero
