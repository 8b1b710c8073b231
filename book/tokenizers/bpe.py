"""Byte-level byte-pair encoding (BPE), GPT-2 style, from scratch: training, encoding, decoding, save and load.

Sennrich et al. (2016) learn a subword vocabulary by merging, again and again, the most frequent pair of
adjacent symbols; GPT-2 (Radford et al., 2019) runs it on the UTF-8 *bytes* of the text, so the 256 byte
values are the base vocabulary and any string at all can be encoded (no unknown token):

    "the theatre"  --split-->  ["the", " theatre"]  --UTF-8-->  [116 104 101], [32 116 104 101 ...]
    merge (116, 104) -> 256  ("th"),  merge (256, 101) -> 257 ("the"),  merge (32, 257) -> 258 (" the") ...

Training: the text is first split by a regular expression into chunks (GPT-2's pattern: contractions,
letter runs with their leading space, digit runs, punctuation runs, whitespace), and pairs never cross a
chunk boundary. Equal chunks are counted once with their frequency ("words"). Then, for each merge:

    best = the pair with the largest count (ties: the smallest pair (a, b));  new id = 256 + merge number
    replace every occurrence of best, left to right, in the words that contain it

A naive trainer recounts every pair of every word after each merge: O(merges x corpus). Here the counts are
updated *incrementally*: an index `where[pair]` lists the words a pair occurs in, so a merge only visits
those words, subtracts the counts of their old pairs and adds those of their new pairs; a max-heap keyed
by (-count, pair) finds the best pair, with stale entries (whose count has changed since) skipped when popped.

Encoding a chunk applies the learned merges by rank: repeatedly merge the adjacent pair that was learned
first, until no adjacent pair is a merge. Special tokens ("<|endoftext|>") get ids after the merges and
are matched in the text before the split, so they are never broken into bytes.
Decoding concatenates the tokens' bytes and decodes UTF-8 (an id sequence cut inside a character gives U+FFFD).
"""
import heapq
import json
from collections import Counter, defaultdict
from pathlib import Path

import regex

# GPT-2's pre-tokenization pattern (also Hugging Face's ByteLevel pre-tokenizer's).
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
FORMAT_VERSION = 1


def bytes_to_unicode():
    """GPT-2's printable stand-in for each byte: {byte: character}, so tokens can be shown and saved as text.
    Printable Latin-1 bytes map to themselves; the others (space, control bytes...) to U+0100 onwards
    (a space is shown as 'Ġ', a newline as 'Ċ')."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def pair_counts(ids, counts=None, weight=1):
    """{(a, b): how often b follows a in ids} (added to `counts`, times `weight`, when given)."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids, pair, new_id):
    """ids with every occurrence of `pair`, scanned left to right, replaced by new_id: ([1, 1, 1], (1, 1)) -> [X, 1]."""
    out, i, a, b = [], 0, pair[0], pair[1]
    n = len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def count_words(texts, pattern=GPT2_SPLIT_PATTERN):
    """Split each text into chunks with the pattern and count them: {chunk string: frequency}."""
    splitter = regex.compile(pattern)
    words = Counter()
    for text in [texts] if isinstance(texts, str) else texts:
        words.update(splitter.findall(text))
    return words


def train_merges(word_counts, num_merges, first_id=256):
    """The BPE merges learned from words given as {tuple of ids: frequency}, with incremental pair counts.

    Returns [(a, b), ...] in the order learned: merge k creates id first_id + k. Stops early when no pair
    is left (every word is a single token). Ties are broken by the smallest pair (a, b).
    """
    if num_merges < 0:
        raise ValueError(f"train_merges: num_merges must be >= 0, got {num_merges}")
    words = [list(w) for w in word_counts]
    freqs = list(word_counts.values())
    counts = defaultdict(int)                  # pair -> total frequency over all words
    where = defaultdict(set)                   # pair -> indices of the words it occurs in (may be stale)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            counts[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg_count:   # stale: the pair's count changed after this entry was pushed
            continue
        new_id = first_id + len(merges)
        merges.append(pair)
        delta = defaultdict(int)
        for i in where.pop(pair):
            old = words[i]
            new = merge_pair(old, pair, new_id)
            if len(new) == len(old):            # a stale index entry: the word no longer has the pair
                continue
            f = freqs[i]
            for p in zip(old, old[1:]):
                delta[p] -= f
            for p in zip(new, new[1:]):
                delta[p] += f
                where[p].add(i)
            words[i] = new
        del counts[pair]
        delta.pop(pair, None)
        for p, d in delta.items():
            if d == 0:
                continue
            c = counts[p] + d
            if c > 0:
                counts[p] = c
                heapq.heappush(heap, (-c, p))
            else:
                del counts[p]
                where.pop(p, None)
    return merges


class BPETokenizer:
    """A byte-level BPE tokenizer: ids 0-255 are the bytes, then one id per merge, then the special tokens.

        tok = BPETokenizer.train(text, vocab_size=1024, special_tokens=["<|endoftext|>"])
        ids = tok.encode("To be, or not to be")          # list of ints
        tok.decode(ids) == "To be, or not to be"
        tok.save("bpe.json"); BPETokenizer.load("bpe.json")
    """

    def __init__(self, merges=(), special_tokens=(), pattern=GPT2_SPLIT_PATTERN):
        self.pattern = pattern
        self._splitter = regex.compile(pattern)
        self.merges = {}                        # (a, b) -> new id; the id is also the merge's rank
        self.vocab = {b: bytes([b]) for b in range(256)}
        for a, b in merges:
            a, b = int(a), int(b)
            new_id = 256 + len(self.merges)
            if a not in self.vocab or b not in self.vocab:
                raise ValueError(f"BPETokenizer: merge {len(self.merges)} ({a}, {b}) uses an id that does not exist "
                                 f"yet; expected ids below {new_id}")
            if (a, b) in self.merges:
                raise ValueError(f"BPETokenizer: merge ({a}, {b}) appears twice")
            self.merges[(a, b)] = new_id
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        self.special_tokens = {}                # string -> id
        for token in special_tokens:
            if not isinstance(token, str) or not token:
                raise ValueError(f"BPETokenizer: a special token must be a non-empty str, got {token!r}")
            if token in self.special_tokens:
                raise ValueError(f"BPETokenizer: special token {token!r} appears twice")
            self.special_tokens[token] = len(self.vocab) + len(self.special_tokens)
        self.special_ids = {i: t for t, i in self.special_tokens.items()}
        by_length = sorted(self.special_tokens, key=len, reverse=True)  # "<|a|>b" before "<|a|>"
        self._special_splitter = None
        if by_length:
            self._special_splitter = regex.compile("(" + "|".join(map(regex.escape, by_length)) + ")")
        self._cache = {}

    # ---- training -------------------------------------------------------------------------------
    @classmethod
    def train(cls, texts, vocab_size, special_tokens=(), pattern=GPT2_SPLIT_PATTERN):
        """Learn vocab_size - 256 - len(special_tokens) merges from a text (or an iterable of texts).
        Special tokens written in the text are removed before counting, so no merge spans one."""
        special_tokens = list(special_tokens)
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(f"BPETokenizer.train: vocab_size {vocab_size} is below the 256 bytes plus "
                             f"{len(special_tokens)} special tokens")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if special_tokens:
            splitter = regex.compile("|".join(map(regex.escape, sorted(special_tokens, key=len, reverse=True))))
            texts = [piece for text in texts for piece in splitter.split(text)]
        words = count_words(texts, pattern)
        word_ids = Counter()
        for word, freq in words.items():
            word_ids[tuple(word.encode("utf-8"))] += freq
        return cls(train_merges(word_ids, num_merges), special_tokens, pattern)

    # ---- encoding and decoding ------------------------------------------------------------------
    @property
    def vocab_size(self):
        return len(self.vocab) + len(self.special_tokens)

    def __len__(self):
        return self.vocab_size

    def _encode_chunk(self, chunk):
        """One pre-tokenized chunk -> ids: merge the lowest-ranked adjacent pair until none is a merge."""
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, float("inf")))
            new_id = self.merges.get(pair)
            if new_id is None:
                break
            ids = merge_pair(ids, pair, new_id)
        if len(self._cache) > 200_000:          # bounded: arbitrary text can have any number of chunks
            self._cache.clear()
        self._cache[chunk] = ids = tuple(ids)
        return ids

    def encode_ordinary(self, text):
        """text -> ids, with special-token strings treated as ordinary text."""
        if not isinstance(text, str):
            raise TypeError(f"BPETokenizer.encode: expected a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"BPETokenizer.encode: the text is not valid Unicode (a lone surrogate at position "
                             f"{err.start}: {text[err.start]!r}); it has no UTF-8 bytes") from None
        ids = []
        for chunk in self._splitter.findall(text):
            ids += self._encode_chunk(chunk)
        return ids

    def encode(self, text, allowed_special="all"):
        """text -> ids. allowed_special: "all" (special tokens in the text become their id), "none"
        (they are ordinary text), or a set of the special tokens to recognize."""
        if not isinstance(text, str):
            raise TypeError(f"BPETokenizer.encode: expected a str, got {type(text).__name__}")
        if allowed_special == "none" or not self.special_tokens:
            return self.encode_ordinary(text)
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"BPETokenizer.encode: {sorted(unknown)} are not special tokens of this tokenizer "
                                 f"({sorted(self.special_tokens)})")
        ids, pending = [], ""
        for piece in self._special_splitter.split(text):  # odd positions are the matched special tokens
            if piece in allowed:
                ids += self.encode_ordinary(pending) + [self.special_tokens[piece]]
                pending = ""
            else:
                pending += piece
        return ids + self.encode_ordinary(pending)

    def decode_bytes(self, ids):
        out = []
        for i in ids:
            i = int(i)
            if i in self.vocab:
                out.append(self.vocab[i])
            elif i in self.special_ids:
                out.append(self.special_ids[i].encode("utf-8"))
            else:
                raise ValueError(f"BPETokenizer.decode: id {i} is out of range; expected 0 <= id < {self.vocab_size}")
        return b"".join(out)

    def decode(self, ids):
        """ids -> text; bytes that are not valid UTF-8 (a character cut in two) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_to_str(self, i):
        """A readable form of token i: its bytes in GPT-2's printable characters ('Ġthe'), or the special token."""
        if i in self.special_ids:
            return self.special_ids[i]
        if i not in self.vocab:
            raise ValueError(f"BPETokenizer.token_to_str: id {i} is out of range; expected 0 <= id < {self.vocab_size}")
        return "".join(_BYTE_CHARS[b] for b in self.vocab[i])

    # ---- save and load --------------------------------------------------------------------------
    def to_json(self):
        """The pattern, the merges as id pairs (in rank order) and the special tokens, as a JSON string."""
        return json.dumps({"format": "minigrad byte-level BPE", "version": FORMAT_VERSION, "pattern": self.pattern,
                           "merges": [list(p) for p in self.merges], "special_tokens": list(self.special_tokens)})

    def save(self, path):
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path):
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        if state.get("format") != "minigrad byte-level BPE" or state.get("version") != FORMAT_VERSION:
            raise ValueError(f"BPETokenizer.load: {path} is not a minigrad byte-level BPE file of version "
                             f"{FORMAT_VERSION} (format {state.get('format')!r}, version {state.get('version')!r})")
        return cls(state["merges"], state["special_tokens"], state["pattern"])

    def __repr__(self):
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")


_BYTE_CHARS = bytes_to_unicode()
