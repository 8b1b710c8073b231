"""Synthetic documents whose reference summary is their highlighted sentences: a summarization task with a known
answer, in the spirit of Read, Highlight and Summarize (Ambati et al., 2019): a summary conveys a few key sentences.

A document is a sequence of sentences; a sentence is 3 to 6 (by default) words drawn uniformly from the content
vocabulary, ended by STOP ("."). A few sentences are highlighted: the generator plants the cue word CUE ("key") as
their first token. The reference summary is the highlighted sentences in document order, each without its cue and
with its STOP, then EOS. So a model must find the cues (anywhere in the document, however long) and copy the words
that follow each of them up to the sentence's end.

Every random draw comes from the NumPy Generator passed in (`rng`). Ids: PAD 0, BOS 1, EOS 2, STOP 3, CUE 4, and
the content words 5 .. vocab_size - 1, written "w5", "w6", ... in text (ROUGE sees the words; "." is not a word).
"""
from dataclasses import dataclass

from minigrad.backend import np
from book.data.padding import pad_rows

PAD, BOS, EOS, STOP, CUE = 0, 1, 2, 3, 4
FIRST_WORD = 5


@dataclass
class HighlightBatch:
    src: np.ndarray           # (B, S) int64 document ids, PAD after the end
    sentence_ids: np.ndarray  # (B, S) int64 sentence number of each token from 0, -1 on PAD
    tgt_in: np.ndarray        # (B, T) int64 [BOS, summary[:-1]], PAD after the end
    targets: np.ndarray       # (B, T) int64 the summary ending in EOS, PAD after the end
    highlighted: list         # per document, the numbers of its highlighted sentences


def highlight_documents(rng, batch_size, num_sentences, vocab_size=64, sentence_length=(2, 4), num_highlights=2,
                        cue="marker"):
    """-> HighlightBatch of batch_size documents.

    num_sentences: an int, or (low, high) for a number drawn per document in [low, high] inclusive. Sentences have
    sentence_length[0] .. sentence_length[1] words (not counting STOP or the cue); num_highlights of them are
    highlighted, and how a reader can tell depends on `cue`:
    - "marker": each highlighted sentence starts with CUE (a local cue: the sentence itself says it matters);
    - "topic": the document opens with a topic sentence [CUE, t, STOP] (sentence 0, never highlighted, on top of the
      num_sentences body sentences); the highlighted sentences are the ones that contain the topic word t (at a random
      position), and no other sentence contains it. Telling whether a sentence matters needs the document's start,
      however far back: a long-range dependency.
    """
    low, high = (num_sentences, num_sentences) if np.isscalar(num_sentences) else num_sentences
    if not 1 <= num_highlights <= low <= high or vocab_size <= FIRST_WORD or not 1 <= sentence_length[0] \
            <= sentence_length[1] or batch_size < 1:
        raise ValueError(f"highlight_documents: expected batch_size >= 1, 1 <= num_highlights={num_highlights} <= "
                         f"num_sentences={num_sentences}, vocab_size={vocab_size} > {FIRST_WORD} and "
                         f"1 <= sentence_length={sentence_length}")
    if cue not in ("marker", "topic"):
        raise ValueError(f"highlight_documents: cue must be 'marker' or 'topic', got {cue!r}")
    documents, sentence_numbers, summaries, highlighted = [], [], [], []
    for _ in range(batch_size):
        n = int(rng.integers(low, high + 1))
        keys = np.sort(rng.choice(n, size=num_highlights, replace=False))
        doc, numbers, summary, first = [], [], [], int(cue == "topic")
        if cue == "topic":
            topic = int(rng.integers(FIRST_WORD, vocab_size))
            others = np.setdiff1d(np.arange(FIRST_WORD, vocab_size), [topic])
            doc, numbers, keys = [CUE, topic, STOP], [0, 0, 0], keys + 1
        for s in range(first, n + first):
            length = int(rng.integers(sentence_length[0], sentence_length[1] + 1))
            if cue == "marker":
                words = list(rng.integers(FIRST_WORD, vocab_size, size=length))
            else:
                words = list(rng.choice(others, size=length))
                if s in keys:
                    words.insert(int(rng.integers(length + 1)), topic)
            sentence = ([CUE] if s in keys and cue == "marker" else []) + words + [STOP]
            doc += sentence
            numbers += [s] * len(sentence)
            if s in keys:
                summary += words + [STOP]
        documents.append(doc)
        sentence_numbers.append(numbers)
        summaries.append(summary + [EOS])
        highlighted.append(keys.tolist())
    tgt_in = [[BOS] + s[:-1] for s in summaries]
    return HighlightBatch(pad_rows(documents, PAD), pad_rows(sentence_numbers, -1), pad_rows(tgt_in, PAD),
                          pad_rows(summaries, PAD), highlighted)


def ids_to_text(ids):
    """One row of ids -> text: content words "w<id>", CUE "key", STOP "."; stops at EOS, skips PAD and BOS."""
    words = []
    for i in np.asarray(ids).tolist():
        if i == EOS:
            break
        if i not in (PAD, BOS):
            words.append("." if i == STOP else "key" if i == CUE else f"w{i}")
    return " ".join(words)
