"""Which play is this passage from? A downstream task built from the corpus, for probing frozen encoders.

    text = spoken_text("macbeth")                  # the lines the characters speak, nothing else
    ids, labels = play_passages(encode, ["julius_caesar", "macbeth"], length=32)   # (N, 32), (N,)
    train, test = split_blocks(labels, test_fraction=0.25, block=8)                # index arrays
    mixed, shuffled = shuffle_words(ids, starts, rng)      # a second task: is this passage word salad?

Only what is spoken is kept: the title, the cast list (the "Persons Represented" or "Dramatis Personae" at the
start of a play), act and scene headings, speaker names ("FIRST WITCH.") and stage directions ("[Enter
Macbeth.]") are removed, so a passage is identified by its words, not by the labels the editor put around them.
`play_body` is a work without its front matter (title and cast list), for any text drawn from the plays. Each play's spoken text is tokenized and cut into consecutive,
non-overlapping windows of `length` tokens; every play contributes the same number of windows (the smallest
play's count), so chance accuracy is 1 / number of plays.

The split is by blocks of consecutive passages (all passages of a block on one side): neighbouring passages
share a scene and its characters, so a split passage by passage would let the probe recognise the scene
rather than the play's language.

The second task asks whether a passage is real text or the same words in a random order (`shuffle_words`):
the words, hence the bag of tokens, are the same on both sides, so only word order tells them apart.
"""
import re

from minigrad.backend import np
from book.data.shakespeare import read_work


def _is_speaker(line):
    """'FIRST WITCH.', 'LADY MACBETH.', 'SIR TOBY.': a line in capitals ending with a period."""
    letters = [ch for ch in line if ch.isalpha()]
    return line.endswith(".") and bool(letters) and all(ch.isupper() for ch in letters)


_NUMBER = r"([ivxlc]+|\d+|first|second|third|fourth|fifth)\b"
_HEADING = re.compile(rf"^((act|scene)\s+{_NUMBER}|(induction|prologue|epilogue)\.?$)", re.IGNORECASE)
_BODY_START = re.compile(rf"^(act\s+{_NUMBER}|(induction|prologue)\.?$)", re.IGNORECASE)


def play_body(name):
    """A work without its front matter: for a play, everything from its first heading (the first act, or the
    induction or prologue that comes before it; 'ACT I.', 'Act 1.', 'INDUCTION', 'PROLOGUE.'), so the title
    and the cast list (Dramatis Personae, Persons Represented) are dropped; for a poem, everything after the
    title and the author's line. Speaker names, headings and stage directions are kept (see spoken_text)."""
    lines = read_work(name).splitlines()
    start = next((i for i, line in enumerate(lines) if _BODY_START.match(line.strip())), None)
    if start is None:                                                            # a poem: no cast list
        author = next((i for i, line in enumerate(lines[:10]) if line.strip().lower().startswith("by ")), -1)
        start = author + 1
    return "\n".join(lines[start:]).strip("\n")


def spoken_text(name):
    """The spoken lines of a play, one per line: its body (play_body: no title, no cast list) without headings,
    speaker names and stage directions (in brackets: whole lines, several lines, or inside a line)."""
    if not any(_BODY_START.match(line.strip()) for line in read_work(name).splitlines()):
        raise ValueError(f"spoken_text: {name!r} has no 'ACT' heading; expected a play (list_plays())")
    spoken, in_direction = [], False
    for line in play_body(name).splitlines():
        line = line.strip()
        if in_direction:                                                          # inside a [ ... ] block
            in_direction = "]" not in line
            line = "" if in_direction else line.split("]", 1)[1]
        elif "[" in line and "]" not in line.split("[", 1)[1]:                    # a block opens here
            in_direction, line = True, line.split("[", 1)[0]
        line = re.sub(r"\s*\[[^\]]*\]\s*", " ", line).strip()                  # [Knocking within.] in a line
        if not line or _HEADING.match(line) or _is_speaker(line):
            continue
        spoken.append(line)
    return "\n".join(spoken)


def play_passages(encode, plays, length):
    """(ids int64 (N, length), labels int64 (N,)): consecutive windows of `length` tokens of each play's spoken
    text, label = the play's index in `plays`, the same number of windows per play, in text order.
    encode: str -> list of token ids (e.g. a tokenizer's encode)."""
    if length < 1 or len(plays) < 2:
        raise ValueError(f"play_passages: need length >= 1 and at least two plays, got length {length} and "
                         f"{len(plays)} plays")
    windows = []
    for name in plays:
        tokens = np.asarray(encode(spoken_text(name)), dtype=np.int64)
        count = len(tokens) // length
        windows.append(tokens[:count * length].reshape(count, length))           # (count, length)
    per_play = min(len(w) for w in windows)
    ids = np.concatenate([w[:per_play] for w in windows])                        # (P * per_play, length)
    labels = np.repeat(np.arange(len(plays), dtype=np.int64), per_play)
    return ids, labels


def split_blocks(labels, test_fraction=0.25, block=8):
    """(train indices, test indices): each play's passages, in order, are grouped into blocks of `block`;
    every round(1 / test_fraction)-th block of a play goes to the test side, the others to training."""
    if not 0 < test_fraction < 1 or block < 1:
        raise ValueError(f"split_blocks: need 0 < test_fraction < 1 and block >= 1, got {test_fraction}, {block}")
    labels = np.asarray(labels)
    every = max(2, round(1 / test_fraction))
    position = np.zeros(len(labels), dtype=np.int64)                             # index within its play
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        position[where] = np.arange(len(where))
    test = (position // block) % every == every - 1
    return np.flatnonzero(~test), np.flatnonzero(test)


def word_start_tokens(decode, vocab_size):
    """bool (vocab_size,): the tokens that begin a word, i.e. whose text starts with whitespace (byte-level BPE
    keeps a word's leading space: ' thee'). decode: list of ids -> str."""
    return np.array([decode([i])[:1].isspace() for i in range(vocab_size)])


def shuffle_words(ids, word_starts, rng):
    """(mixed ids (N, L), shuffled int64 (N,)): every other passage, chosen at random (rng), gets its words
    (a word = a word-start token and the tokens after it) put in a random order; the others are unchanged.
    ids (N, L); word_starts: bool (vocab_size,) from word_start_tokens."""
    ids = np.asarray(ids, dtype=np.int64)
    shuffled = np.zeros(len(ids), dtype=np.int64)
    shuffled[rng.permutation(len(ids))[:len(ids) // 2]] = 1
    mixed = ids.copy()
    for n in np.flatnonzero(shuffled):
        cuts = np.flatnonzero(word_starts[ids[n]])
        words = np.split(ids[n], cuts[cuts > 0])
        mixed[n] = np.concatenate([words[i] for i in rng.permutation(len(words))])
    return mixed, shuffled
