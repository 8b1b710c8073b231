"""BERT's tokenizer from scratch: basic tokenization, then WordPiece (Devlin et al., 2019; Wu et al., 2016).

    "Héllo, wörld!"  --basic-->  ["hello", ",", "world", "!"]  --WordPiece-->  ["hello", ",", "world", "!"]
    "unaffable"      --basic-->  ["unaffable"]                 --WordPiece-->  ["una", "##ffa", "##ble"]

Basic tokenization normalizes the text and splits it into words:
  1. lower-case each character (uncased models);
  2. drop NUL, U+FFFD and control characters (Unicode category C*, except tab/newline/return),
     turn every whitespace character into a space;
  3. put spaces around CJK ideographs, so that each one is a word;
  4. NFC-normalize, split on whitespace; strip accents (NFD, then drop the combining marks, category Mn);
  5. split punctuation off: every punctuation character (ASCII 33-47, 58-64, 91-96, 123-126, and
     Unicode P*) is a word of its own.
WordPiece then splits each word greedily, longest match first: the longest prefix that is in the
vocabulary, then the longest continuation ("##" + piece) of the rest, and so on. A word with no
segmentation, or longer than 100 characters, becomes [UNK].

The special tokens ([CLS], [SEP], [PAD], [MASK], [UNK]) written in the text are kept whole. Encoding
builds [CLS] A [SEP] or [CLS] A [SEP] B [SEP] with token_type_ids 0 for A and 1 for B, then truncates
and pads a batch (attention_mask 1 = token, 0 = padding). Checked token for token against Hugging
Face's BertTokenizer and BertTokenizerFast.
"""
import json
import numbers
import re
import unicodedata
from pathlib import Path

from minigrad import backend
from minigrad.tensor import Tensor

CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
              (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def load_vocab(path):
    """vocab.txt (one token per line; the line number is the id) -> {token: id}."""
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


# ---- character classes (BERT's definitions) ---------------------------------------------------

def is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch):
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def is_punctuation(ch):
    """ASCII symbols count too ($, +, ^, `...), although Unicode files them as S*, not P*."""
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
        unicodedata.category(ch).startswith("P")


def is_cjk(ch):
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


# ---- basic tokenization -----------------------------------------------------------------------

def clean_text(text):
    """Drop NUL, U+FFFD and control characters; every whitespace character becomes a space."""
    return "".join(" " if is_whitespace(ch) else ch for ch in text
                   if ch not in "\x00\ufffd" and not is_control(ch))


def space_cjk(text):
    return "".join(f" {ch} " if is_cjk(ch) else ch for ch in text)


def strip_accents(text):
    """'Café' -> 'Cafe': decompose (NFD), then drop the combining marks."""
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


def split_on_punctuation(word):
    """'don't!' -> ['don', "'", 't', '!']"""
    pieces, current = [], ""
    for ch in word:
        if is_punctuation(ch):
            pieces += [current, ch] if current else [ch]
            current = ""
        else:
            current += ch
    return pieces + [current] if current else pieces


class BasicTokenizer:
    """Text -> words, normalized (see the module docstring for the steps).

    strip_accents=None follows do_lower_case, as in the original BERT.
    """

    def __init__(self, do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True):
        self.do_lower_case = do_lower_case
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars

    def tokenize(self, text):
        if self.do_lower_case:
            text = "".join(ch.lower() for ch in text)  # per character: no context-dependent final sigma
        text = clean_text(text)
        if self.tokenize_chinese_chars:
            text = space_cjk(text)
        words = []
        for word in unicodedata.normalize("NFC", text).split():
            words += split_on_punctuation(strip_accents(word) if self.strip_accents else word)
        return words


class WordpieceTokenizer:
    """A word -> its pieces, greedy longest-match-first: 'unaffable' -> ['una', '##ffa', '##ble']."""

    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=100, prefix="##"):
        self.vocab, self.unk_token = vocab, unk_token
        self.max_input_chars_per_word, self.prefix = max_input_chars_per_word, prefix

    def tokenize(self, word):
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):         # the longest piece first
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    break
            else:
                return [self.unk_token]                     # no piece matches: the whole word is unknown
            pieces.append(piece)
            start = end
        return pieces


# ---- the BERT tokenizer -----------------------------------------------------------------------

class BertTokenizer:
    """Hugging Face BertTokenizer's interface on a vocab.txt.

        tok = BertTokenizer.from_pretrained(folder)
        batch = tok(["a sentence", "another one"], padding=True, return_tensors="mg")
        batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]    # (B, T) each
    """

    def __init__(self, vocab, do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True,
                 unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                 max_input_chars_per_word=100, model_max_length=512):
        self.vocab = load_vocab(vocab) if isinstance(vocab, (str, Path)) else dict(vocab)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.unk_token, self.sep_token, self.pad_token = unk_token, sep_token, pad_token
        self.cls_token, self.mask_token = cls_token, mask_token
        self.all_special_tokens = [unk_token, sep_token, pad_token, cls_token, mask_token]
        missing = [t for t in self.all_special_tokens if t not in self.vocab]
        if missing:
            raise ValueError(f"BertTokenizer: the special tokens {missing} are not in the vocabulary")
        self.model_max_length = model_max_length
        self.basic_tokenizer = BasicTokenizer(do_lower_case, strip_accents, tokenize_chinese_chars)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, unk_token, max_input_chars_per_word)
        by_length = sorted(self.all_special_tokens, key=len, reverse=True)
        self._special = re.compile("(" + "|".join(map(re.escape, by_length)) + ")")

    @classmethod
    def from_pretrained(cls, folder):
        """From a Hugging Face folder: vocab.txt, and tokenizer_config.json's settings if it is there."""
        folder = Path(folder)
        if not (folder / "vocab.txt").is_file():
            raise FileNotFoundError(f"BertTokenizer.from_pretrained: {folder} has no vocab.txt")
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        if config.get("do_basic_tokenize", True) is False or config.get("never_split"):
            raise ValueError("BertTokenizer.from_pretrained: do_basic_tokenize=False and never_split are not "
                             "supported")
        keys = ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "unk_token", "sep_token", "pad_token",
                "cls_token", "mask_token", "model_max_length")
        return cls(folder / "vocab.txt", **{k: config[k] for k in keys if k in config})

    @property
    def vocab_size(self):
        return len(self.vocab)

    def __len__(self):
        return len(self.vocab)

    @property
    def pad_token_id(self):
        return self.vocab[self.pad_token]

    @property
    def all_special_ids(self):
        return [self.vocab[t] for t in self.all_special_tokens]

    def tokenize(self, text):
        """Text -> WordPiece tokens (strings); special tokens written in the text stay whole."""
        if not isinstance(text, str):
            raise TypeError(f"BertTokenizer.tokenize: expected a str, got {type(text).__name__}")
        tokens = []
        for i, part in enumerate(self._special.split(text)):
            if i % 2:                                       # odd parts are the special tokens matched
                tokens.append(part)
            else:
                for word in self.basic_tokenizer.tokenize(part):
                    tokens += self.wordpiece_tokenizer.tokenize(word)
        return tokens

    def convert_tokens_to_ids(self, tokens):
        unk = self.vocab[self.unk_token]
        if isinstance(tokens, str):
            return self.vocab.get(tokens, unk)
        return [self.vocab.get(t, unk) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        if isinstance(ids, numbers.Integral):
            return self._token_of(ids)
        special = set(self.all_special_tokens) if skip_special_tokens else set()
        return [t for t in map(self._token_of, ids) if t not in special]

    def _token_of(self, i):
        i = int(i)
        if i not in self.ids_to_tokens:
            raise ValueError(f"BertTokenizer: token id {i} is out of range for a vocabulary of {len(self.vocab)}")
        return self.ids_to_tokens[i]

    # ---- encoding -----------------------------------------------------------------------------
    def encode(self, text, text_pair=None, add_special_tokens=True, truncation=False, max_length=None):
        """Token ids of one text (or a pair): [CLS] A [SEP] (B [SEP])."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, truncation=truncation,
                    max_length=max_length)["input_ids"]

    def __call__(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=False,
                 max_length=None, return_tensors=None):
        """Encode a text or a batch (a list of texts), with their pairs if given.

        Returns {"input_ids", "token_type_ids", "attention_mask"}: lists (one text) or lists of lists,
        or (B, T) int64 arrays / minigrad tensors with return_tensors="np" / "mg".
        padding: False, True or "longest" (to the longest in the batch), "max_length" (to max_length, or to
        the longest row if that is longer).
        truncation: True or "longest_first" cuts to max_length (default model_max_length) one token at a
        time from the longer of the pair (from the second on ties), as Hugging Face's BertTokenizer does.
        """
        single = isinstance(text, str)
        if text_pair is not None and isinstance(text_pair, str) != single:
            raise ValueError("BertTokenizer: text and text_pair must both be a str or both be lists of str")
        texts = [text] if single else list(text)
        pairs = [None] * len(texts) if text_pair is None else [text_pair] if single else list(text_pair)
        if len(pairs) != len(texts):
            raise ValueError(f"BertTokenizer: {len(texts)} texts but {len(pairs)} text pairs; expected as many")
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"BertTokenizer: padding must be False, True, 'longest' or 'max_length', "
                             f"got {padding!r}")
        if truncation not in (False, True, "longest_first", "do_not_truncate"):
            raise ValueError(f"BertTokenizer: truncation must be False, True or 'longest_first', got {truncation!r}")
        truncation = truncation in (True, "longest_first")
        if max_length is None and (truncation or padding == "max_length"):
            max_length = self.model_max_length
        rows = [self._encode_one(a, b, add_special_tokens, max_length if truncation else None)
                for a, b in zip(texts, pairs)]
        batch = {"input_ids": [r[0] for r in rows], "token_type_ids": [r[1] for r in rows],
                 "attention_mask": [[1] * len(r[0]) for r in rows]}
        if padding in (True, "longest", "max_length"):
            batch = self.pad(batch, max_length if padding == "max_length" else None)
        if return_tensors is not None:
            return self._as_tensors(batch, return_tensors)
        return {k: v[0] for k, v in batch.items()} if single else batch

    def _encode_one(self, text, pair, add_special_tokens, max_length):
        a = self.convert_tokens_to_ids(self.tokenize(text))
        b = None if pair is None else self.convert_tokens_to_ids(self.tokenize(pair))
        if max_length is not None:
            n_special = (2 if b is None else 3) if add_special_tokens else 0
            if max_length < n_special:
                raise ValueError(f"BertTokenizer: max_length {max_length} leaves no room for the {n_special} "
                                 f"special tokens")
            a, b = truncate_longest_first(a, b, max_length - n_special)
        if not add_special_tokens:
            return a + (b or []), [0] * len(a) + [1] * len(b or [])
        cls, sep = self.vocab[self.cls_token], self.vocab[self.sep_token]
        ids, types = [cls] + a + [sep], [0] * (len(a) + 2)
        if b is not None:
            ids, types = ids + b + [sep], types + [1] * (len(b) + 1)
        return ids, types

    def pad(self, batch, length=None):
        """Pad every row on the right with [PAD] (token type 0, attention 0) to `length` or the longest row."""
        longest = max((len(ids) for ids in batch["input_ids"]), default=0)
        length = longest if length is None else max(length, longest)
        fill = {"input_ids": self.pad_token_id, "token_type_ids": 0, "attention_mask": 0}
        return {k: [row + [fill[k]] * (length - len(row)) for row in rows] for k, rows in batch.items()}

    @staticmethod
    def _as_tensors(batch, kind):
        if kind not in ("np", "mg"):
            raise ValueError(f"BertTokenizer: return_tensors must be None, 'np' or 'mg', got {kind!r}")
        lengths = {len(row) for row in batch["input_ids"]}
        if len(lengths) > 1:
            raise ValueError(f"BertTokenizer: rows have different lengths {sorted(lengths)}; pass padding=True "
                             f"to return tensors")
        arrays = {k: backend.np.array(v, dtype=backend.int64).reshape(len(v), -1) for k, v in batch.items()}
        return arrays if kind == "np" else {k: Tensor(v) for k, v in arrays.items()}

    # ---- decoding -----------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=True):
        """Ids -> text: pieces joined with spaces, '##' continuations glued to their word; with clean-up,
        no space before . , ? ! and in n't 'm 's 've 're (Hugging Face's rules)."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        text = " ".join(self.convert_ids_to_tokens(list(ids), skip_special_tokens)).replace(" ##", "").strip()
        if clean_up_tokenization_spaces:
            for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                                  (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(before, after)
        return text


def truncate_longest_first(a, b, budget):
    """Cut ids a (and b) to `budget` tokens in all, one at a time from the longer (from b on ties)."""
    if b is None:
        return a[:budget], None
    excess = max(len(a) + len(b) - budget, 0)
    first = min(abs(len(a) - len(b)), excess)               # first even out the lengths
    rest = excess - first                                   # then take from both, b one more when odd
    cut_a = (first if len(a) > len(b) else 0) + rest // 2
    cut_b = excess - cut_a
    return a[:len(a) - cut_a], b[:len(b) - cut_b]
