"""A test corpus for a data pipeline: Shakespeare cut into documents, with injected junk and near-duplicates
whose ground truth is known, so each filter's precision and recall can be measured.

The injections imitate what a web crawl holds and the cascade of Yi (Yi: Open Foundation Models by 01.AI,
arXiv:2403.04652, section 2) is built to remove:

    boilerplate   navigation, cookie and copyright lines, repeated with small variations   -> repeated lines
    symbol spam   a document with symbols, digits and links sprinkled between its words   -> symbol / digit ratios
    shuffled      a document's words in random order (every word real, no sentence left) -> perplexity
    repetition    a document that falls into a loop, repeating one short phrase           -> repeated n-grams
    near-dup      a copy of an earlier document with a few words deleted or replaced      -> MinHash, exact windows

    docs = chunk_documents(sh.read_work("hamlet"), size=1000)          # whole lines, about 1000 characters each
    corpus = build_noisy_corpus(docs, np.random.default_rng(0), JunkMix(boilerplate=0.05, ...))
    corpus.documents[i], corpus.kinds[i] ("clean", "boilerplate", ...), corpus.source[i] (near-dups: the original)

Every injection takes its randomness as a NumPy Generator, so a corpus is a function of its seed.
"""
from dataclasses import dataclass

from minigrad.backend import np

KINDS = ("clean", "boilerplate", "symbol spam", "shuffled", "repetition", "near-dup")
BOILERPLATE_LINES = (
    "Home | About us | Contact | Privacy policy | Terms of use",
    "We use cookies to improve your experience. By continuing you accept our use of cookies.",
    "Copyright (c) {year} Globe Media Ltd. All rights reserved.",
    "Click here to subscribe to our newsletter!",
    "Share on Facebook | Share on Twitter | Email this page",
    "Posted by admin on {day}/{month}/{year} | {n} comments",
    "Related posts: Top {n} quotes you will love",
    "Login | Register | Forgot your password?",
)
SPAM_TOKENS = ("###", "$$$", "@@", "***", ">>>", "|", "#", "&&", "%%", "~~", "{n}", "{n}", "+{n}",
               "http://www.{n}.com/?id={n}")


def chunk_documents(text, size=1000):
    """Cut a text into documents of whole lines, each the first run of lines reaching `size` characters
    (the last, shorter rest is dropped); blank-line runs are kept, so a document reads like the play."""
    if size < 1:
        raise ValueError(f"chunk_documents: size must be positive, got {size}")
    documents, lines, length = [], [], 0
    for line in text.splitlines():
        if not lines and not line.strip():
            continue                                        # a document starts at a line with text
        lines.append(line)
        length += len(line) + 1
        if length >= size:
            documents.append("\n".join(lines).strip())
            lines, length = [], 0
    return documents


def _fill(template, rng):
    return template.format(year=int(rng.integers(1998, 2025)), day=int(rng.integers(1, 29)),
                           month=int(rng.integers(1, 13)), n=int(rng.integers(2, 10000)))


def boilerplate_document(rng, n_lines=30):
    """A page of site furniture: n_lines lines drawn with replacement from BOILERPLATE_LINES, numbers filled in."""
    picks = rng.integers(0, len(BOILERPLATE_LINES), n_lines)
    return "\n".join(_fill(BOILERPLATE_LINES[int(i)], rng) for i in picks)


def symbol_spam(document, rng, rate=0.5):
    """After each word, with probability `rate`, insert a token drawn from SPAM_TOKENS (symbols, numbers, links)."""
    lines = []
    for line in document.split("\n"):
        out = []
        for word in line.split():
            out.append(word)
            if rng.random() < rate:
                out.append(_fill(SPAM_TOKENS[int(rng.integers(0, len(SPAM_TOKENS)))], rng))
        lines.append(" ".join(out))
    return "\n".join(lines)


def shuffle_words(document, rng):
    """The document's words in a random order, poured back into lines of the original lengths (in words)."""
    lines = [line.split() for line in document.split("\n")]
    words = [w for line in lines for w in line]
    order = rng.permutation(len(words))
    shuffled, start, out = [words[i] for i in order], 0, []
    for line in lines:
        out.append(" ".join(shuffled[start:start + len(line)]))
        start += len(line)
    return "\n".join(out)


def machine_repetition(document, rng, keep=0.3, phrase_words=(3, 8)):
    """A generator stuck in a loop: the first `keep` of the document's words, then one phrase of 3-7 of its
    words repeated (line breaks every 8-12 words) until the document has its original length in words."""
    words = document.split()
    if len(words) < phrase_words[1]:
        raise ValueError(f"machine_repetition: need at least {phrase_words[1]} words, got {len(words)}")
    head = words[:int(keep * len(words))]
    n = int(rng.integers(*phrase_words))
    start = int(rng.integers(0, len(words) - n + 1))
    phrase = words[start:start + n]
    tail = [phrase[i % n] for i in range(len(words) - len(head))]
    body, lines, i = head + tail, [], 0
    while i < len(body):
        step = int(rng.integers(8, 13))
        lines.append(" ".join(body[i:i + step]))
        i += step
    return "\n".join(lines)


def near_duplicate(document, rng, edit_rate=0.05):
    """A copy with small edits: each word, with probability edit_rate, is deleted (half the time) or replaced by
    another word of the same document."""
    words = document.split()
    lines = []
    for line in document.split("\n"):
        out = []
        for word in line.split():
            u = rng.random()
            if u < edit_rate / 2:
                continue
            out.append(words[int(rng.integers(0, len(words)))] if u < edit_rate else word)
        lines.append(" ".join(out))
    return "\n".join(lines)


@dataclass(frozen=True)
class JunkMix:
    """How many junk documents to add, each as a fraction of the number of clean documents."""
    boilerplate: float = 0.05
    symbol_spam: float = 0.05
    shuffled: float = 0.05
    repetition: float = 0.05
    near_dup: float = 0.10
    edit_rate: float = 0.05


@dataclass
class NoisyCorpus:
    documents: list      # str
    kinds: list          # one of KINDS per document
    source: list         # the index of the original for a near-dup (always earlier), -1 otherwise

    def mask(self, *kinds):
        """Boolean (N,) array: the documents of the given kinds."""
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"NoisyCorpus.mask: unknown kinds {sorted(unknown)}; expected some of {KINDS}")
        return np.isin(np.array(self.kinds), list(kinds))


def build_noisy_corpus(clean, rng, mix=JunkMix()):
    """Clean documents in their order, junk documents inserted at random places, each near-duplicate after its
    original. Junk made from a document (spam, shuffled, repetition) takes a random clean document as material."""
    n = len(clean)
    counts = [round(f * n) for f in (mix.boilerplate, mix.symbol_spam, mix.shuffled, mix.repetition)]
    junk = [("boilerplate", boilerplate_document(rng, int(rng.integers(15, 40)))) for _ in range(counts[0])]
    junk += [("symbol spam", symbol_spam(clean[int(rng.integers(0, n))], rng)) for _ in range(counts[1])]
    junk += [("shuffled", shuffle_words(clean[int(rng.integers(0, n))], rng)) for _ in range(counts[2])]
    junk += [("repetition", machine_repetition(clean[int(rng.integers(0, n))], rng)) for _ in range(counts[3])]
    # a slot in [0, n] for every junk document: it goes before the clean document of that index (n: at the end)
    slots = rng.integers(0, n + 1, len(junk))
    copies = rng.choice(n, size=round(mix.near_dup * n), replace=False)
    copy_slots = [int(rng.integers(int(i) + 1, n + 1)) for i in copies]      # strictly after the original
    inserted = {}
    for slot, item in zip(slots, junk):
        inserted.setdefault(int(slot), []).append(("junk", item))
    for slot, i in zip(copy_slots, copies):
        inserted.setdefault(slot, []).append(("copy", int(i)))
    documents, kinds, source, position = [], [], [], {}
    for slot in range(n + 1):
        for what, item in inserted.get(slot, []):
            if what == "junk":
                documents.append(item[1]), kinds.append(item[0]), source.append(-1)
            else:
                documents.append(near_duplicate(clean[item], rng, mix.edit_rate))
                kinds.append("near-dup"), source.append(position[item])
        if slot < n:
            position[slot] = len(documents)
            documents.append(clean[slot]), kinds.append("clean"), source.append(-1)
    return NoisyCorpus(documents, kinds, source)
