"""Masked language modeling, from BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding
(Devlin et al., 2019, arXiv:1810.04805): corrupt some tokens, predict the originals.

    selected  ~ a fraction `rate` (0.15) of the maskable tokens of each row (never [CLS], [SEP], padding)
    x~_t      = [MASK] (80%), a uniformly random id (10%) or x_t itself (10%), for t selected; x_t elsewhere
    L_MLM     = -1/|S| sum_{t in S} log p(x_t | x~)          (cross-entropy on the selected positions only)

Every random choice is an array that can be passed in: `draw_mlm_masking(maskable, rng, vocab_size)` draws
MaskingDraws(selected, action, random_ids) from a NumPy Generator, and `apply_mlm_masking(input_ids, draws,
mask_token_id)` turns them into the model's input and the labels (-100 where there is nothing to predict, as
torch's cross_entropy ignores). Tests pass the same draws to minigrad and to a PyTorch formulation.

How the positions are chosen (`draw_positions`), as in BERT's create_pretraining_data.py: each row gets
n = max(1, round(rate * m)) selected tokens, m its number of maskable tokens; the maskable units (tokens, or whole
words with `word_ids`) are visited in random order and a unit is taken if it still fits in n. With whole-word
masking all pieces of a word (WordPiece marks the later ones with '##') are selected together, and a row may end
slightly under n when the remaining words are too long. The 80/10/10 choice is drawn per token (BERT's too).
(ELECTRA counts m with [CLS]/[SEP] included and samples positions with replacement; Di Liello's code draws a
Bernoulli(rate) per token: both give the same 15% on average.)

`BertForMaskedLM` is the thin model wrapper: minigrad's BertModel plus BERT's prediction head, with the names of
Hugging Face's BertForMaskedLM (its state_dict loads directly).
"""
from collections import namedtuple
from dataclasses import replace

import minigrad
from minigrad import backend, nn
from minigrad.backend import np
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.tensor import Tensor
from book.models.bert import BertConfig, BertModel, init_bert_weights

IGNORE_INDEX = -100                 # labels of positions without a prediction (torch's cross_entropy default)
MASK, RANDOM, KEEP = 0, 1, 2        # what happens to a selected token (MaskingDraws.action)
BERT_SPLIT = (0.8, 0.1, 0.1)        # probabilities of MASK, RANDOM, KEEP

MaskingDraws = namedtuple("MaskingDraws", ["selected", "action", "random_ids"])
MaskingDraws.__doc__ = """The random draws of MLM masking, arrays of the ids' shape (B, T):
selected (bool): the positions to predict; action (int): MASK, RANDOM or KEEP, used where selected;
random_ids (int): the replacement ids, used where selected and action == RANDOM."""


def as_array(x):
    """The array of a Tensor, or x itself (a NumPy/CuPy array or nested lists) as an array."""
    if isinstance(x, Tensor):
        return x.data
    return x if backend.is_array(x) else np.asarray(x)


def _check_ids(op, name, ids, shape=None):
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must hold integer ids, got dtype {ids.dtype}")
    if shape is not None and ids.shape != shape:
        raise ValueError(f"{op}: {name} of shape {ids.shape} does not match input_ids of shape {shape}")


def _check_bool(op, name, mask, shape):
    if mask.dtype != backend.bool_ or mask.shape != shape:
        raise ValueError(f"{op}: {name} must be a bool array of shape {shape}, got {mask.dtype} {mask.shape}")


# ---- which tokens may be masked -----------------------------------------------------------------

def word_ids_from_tokens(tokens, prefix="##"):
    """Word index of each WordPiece token: a token starting with `prefix` continues the previous word.

    tokens: a list of token strings, or a batch (list of equally long lists) -> int64 array (T,) or (B, T).
    ['[CLS]', 'un', '##afford', '##able', 'rent', '[SEP]'] -> [0, 1, 1, 1, 2, 3].
    """
    rows = [tokens] if not tokens or isinstance(tokens[0], str) else tokens
    if len({len(row) for row in rows}) > 1:
        raise ValueError(f"word_ids_from_tokens: rows have different lengths {[len(r) for r in rows]}; "
                         f"pad them to one length first")
    out = np.zeros((len(rows), len(rows[0]) if rows else 0), dtype=np.int64)
    for b, row in enumerate(rows):
        word = -1
        for t, token in enumerate(row):
            if t == 0 or not token.startswith(prefix):
                word += 1
            out[b, t] = word
    return out[0] if rows is not tokens else out


def maskable_positions(input_ids, special_ids, attention_mask=None):
    """True on the tokens that may be selected: not a special id ([CLS], [SEP], [PAD], [MASK]...), not padding."""
    ids = as_array(input_ids)
    _check_ids("maskable_positions", "input_ids", ids)
    xp = backend.array_module(ids)
    out = ~xp.isin(ids, xp.asarray(list(special_ids), dtype=ids.dtype))
    if attention_mask is not None:
        mask = as_array(attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"maskable_positions: attention_mask of shape {mask.shape} does not match input_ids "
                             f"of shape {ids.shape}")
        out &= mask != 0
    return out


# ---- the draws ----------------------------------------------------------------------------------

def draw_positions(maskable, rng, rate=0.15, word_ids=None):
    """Select round(rate * m) of each row's m maskable tokens (at least one), whole words together if
    word_ids (B, T) is given. maskable: bool (B, T); rng: a NumPy Generator. Returns bool (B, T)."""
    maskable = np.asarray(maskable)
    if maskable.dtype != np.bool_ or maskable.ndim != 2:
        raise ValueError(f"draw_positions: maskable must be a bool array (B, T), got {maskable.dtype} "
                         f"{maskable.shape}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"draw_positions: rate must be in [0, 1], got {rate}")
    if word_ids is not None:
        word_ids = np.asarray(word_ids)
        _check_ids("draw_positions", "word_ids", word_ids, maskable.shape)
    selected = np.zeros(maskable.shape, dtype=np.bool_)
    for b in range(maskable.shape[0]):
        candidates = np.flatnonzero(maskable[b])                  # (m,)
        if candidates.size == 0:
            continue
        target = max(1, round(rate * candidates.size)) if rate > 0 else 0
        words = candidates if word_ids is None else word_ids[b, candidates]
        unit_ids, unit_of = np.unique(words, return_inverse=True)   # unit_of: (m,) index of each token's unit
        sizes = np.bincount(unit_of, minlength=unit_ids.size)
        chosen = np.zeros(unit_ids.size, dtype=np.bool_)
        count = 0
        for unit in rng.permutation(unit_ids.size):
            if count == target:
                break
            if count + sizes[unit] <= target:
                chosen[unit] = True
                count += sizes[unit]
        selected[b, candidates[chosen[unit_of]]] = True
    return selected


def draw_mlm_masking(maskable, rng, vocab_size, rate=0.15, split=BERT_SPLIT, word_ids=None):
    """MaskingDraws for MLM: positions (draw_positions), then per token MASK / RANDOM / KEEP with
    probabilities `split` (BERT: 0.8, 0.1, 0.1) and a uniform replacement id in [0, vocab_size)."""
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-9:
        raise ValueError(f"draw_mlm_masking: split must be three probabilities (MASK, RANDOM, KEEP) summing to 1, "
                         f"got {split}")
    selected = draw_positions(maskable, rng, rate, word_ids)
    action = rng.choice(3, size=selected.shape, p=split).astype(np.int64)
    random_ids = rng.integers(0, vocab_size, size=selected.shape, dtype=np.int64)
    return MaskingDraws(selected, action, random_ids)


def apply_mlm_masking(input_ids, draws, mask_token_id):
    """(corrupted input_ids, labels) from the draws: [MASK], a random id or the original at the selected
    positions; labels = the original ids there and IGNORE_INDEX elsewhere. Both int64 arrays (B, T).
    mask_token_id may be None when no selected position has action MASK (SLM)."""
    ids = as_array(input_ids)
    _check_ids("apply_mlm_masking", "input_ids", ids)
    selected, action, random_ids = (as_array(a) for a in draws)
    _check_bool("apply_mlm_masking", "draws.selected", selected, ids.shape)
    _check_ids("apply_mlm_masking", "draws.action", action, ids.shape)
    _check_ids("apply_mlm_masking", "draws.random_ids", random_ids, ids.shape)
    xp = backend.array_module(ids)
    to_mask = selected & (action == MASK)
    if mask_token_id is None and bool(to_mask.any()):
        raise ValueError("apply_mlm_masking: the draws put [MASK] at some positions but mask_token_id is None")
    corrupted = xp.where(selected & (action == RANDOM), random_ids, ids)
    if mask_token_id is not None:
        corrupted = xp.where(to_mask, mask_token_id, corrupted)
    labels = xp.where(selected, ids, IGNORE_INDEX)
    return corrupted.astype(np.int64), labels.astype(np.int64)


# ---- the loss -----------------------------------------------------------------------------------

def token_cross_entropy(op, logits, labels):
    """Mean cross-entropy of logits (..., V) against labels (...) over the labels that are not IGNORE_INDEX."""
    labels = labels if isinstance(labels, Tensor) else minigrad.tensor(as_array(labels))
    if logits.ndim < 2 or labels.shape != logits.shape[:-1]:
        raise ValueError(f"{op}: logits of shape {logits.shape} and labels of shape {labels.shape} do not match; "
                         f"expected logits (..., V) and labels (...) with the same leading shape")
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def mlm_loss(logits, labels):
    """L_MLM: cross-entropy on the selected positions only. logits (B, T, V); labels (B, T), IGNORE_INDEX
    elsewhere (from apply_mlm_masking). Divides by the number of selected positions in the batch."""
    return token_cross_entropy("mlm_loss", logits, labels)


# ---- the model ----------------------------------------------------------------------------------

class BertPredictionHeadTransform(nn.Module):
    """h -> LayerNorm(GELU(W h + b)), (B, T, C) -> (B, T, C)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = nn.GELU()
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class BertPredictionHead(nn.Module):
    """transform, then a decoder to `out_features` scores with its own bias `bias` (Hugging Face's layout).
    With `tied_weight` (the word embeddings, (V, C)) the decoder reuses it: logits = E h + b."""

    def __init__(self, config: BertConfig, out_features, tied_weight=None):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.transform.apply(lambda m: init_bert_weights(m, config.initializer_range))
        self.decoder = nn.Linear(config.hidden_size, out_features, bias=False)
        if tied_weight is None:
            init.normal_(self.decoder.weight, 0.0, config.initializer_range)
        else:
            self.decoder.weight = tied_weight
        self.bias = nn.Parameter(np.zeros(out_features, dtype=backend.float32))
        self.decoder.bias = self.bias

    def forward(self, x):
        return self.decoder(self.transform(x))                                   # (B, T, out_features)


class BertOnlyHead(nn.Module):
    """The `cls.predictions` level of Hugging Face's names."""

    def __init__(self, config: BertConfig, out_features, tied_weight=None):
        super().__init__()
        self.predictions = BertPredictionHead(config, out_features, tied_weight)

    def forward(self, x):
        return self.predictions(x)


class BertForMaskedLM(nn.Module):
    """BertModel (no pooler) + the MLM head whose decoder is tied to the word embeddings.

    forward(input_ids, attention_mask=None, token_type_ids=None) -> logits (B, T, vocab_size).
    Names as transformers.BertForMaskedLM: bert.*, cls.predictions.{transform.*, bias, decoder.*}.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = replace(config, add_pooling_layer=False)
        self.bert = BertModel(self.config)
        self.cls = BertOnlyHead(self.config, config.vocab_size, self.bert.embeddings.word_embeddings.weight)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state   # (B, T, C)
        return self.cls(hidden)                                                           # (B, T, V)
