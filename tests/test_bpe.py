"""book.tokenizers.BPETokenizer: training against a naive full-recount trainer, encoding against Hugging Face.

- Training: the incremental trainer must learn exactly the merges (same pairs, same order) that a naive trainer
  learns by recounting every pair of every word after each merge (written here, from the algorithm's
  definition), on random small corpora where ties are frequent.
- Encoding: Hugging Face's `tokenizers` BPE model, given our merges and GPT-2's byte-level pre-tokenizer, must
  produce the same ids on real text (the byte-to-character table comes from transformers' GPT-2 tokenizer).
- decode(encode(s)) == s for any Unicode string (Hypothesis); special tokens are never split.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the hub

import json  # noqa: E402
from collections import Counter  # noqa: E402

import pytest  # noqa: E402
import regex  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydoc_data.topics import topics  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode as gpt2_bytes_to_unicode  # noqa: E402

from book.data.shakespeare import read_work  # noqa: E402
from book.tokenizers import BPETokenizer  # noqa: E402
from book.tokenizers.bpe import bytes_to_unicode  # noqa: E402

# GPT-2's pattern as published in openai/gpt-2 encoder.py (and tokenizers' ByteLevel pre-tokenizer)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


# ---- a naive reference trainer ----------------------------------------------------------------

def naive_merges(text, num_merges):
    """BPE by definition: after every merge, recount all pairs of all words from scratch."""
    words = Counter(regex.findall(GPT2_PATTERN, text))
    seqs = [(list(w.encode("utf-8")), f) for w, f in words.items()]
    merges = []
    for k in range(num_merges):
        counts = Counter()
        for seq, f in seqs:
            for i in range(len(seq) - 1):
                counts[(seq[i], seq[i + 1])] += f
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))   # most frequent; ties: the smallest pair
        new_id = 256 + k
        merged = []
        for seq, f in seqs:
            out, i = [], 0
            while i < len(seq):
                if seq[i:i + 2] == list(best):
                    out.append(new_id)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            merged.append((out, f))
        seqs = merged
        merges.append(best)
    return merges


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("aab bc d\n'sé€"), max_size=300), num_merges=st.integers(0, 40))
def test_incremental_training_equals_naive_full_recount(text, num_merges):
    tok = BPETokenizer.train(text, 256 + num_merges)
    assert list(tok.merges) == naive_merges(text, num_merges)


@pytest.mark.parametrize("work, num_merges", [("sonnets", 150), ("phoenix_and_the_turtle", 300)])
def test_training_on_shakespeare_equals_naive(work, num_merges):
    text = read_work(work)[:20_000]
    assert list(BPETokenizer.train(text, 256 + num_merges).merges) == naive_merges(text, num_merges)


def test_training_stops_when_no_pair_is_left():
    tok = BPETokenizer.train("ab ab", 1000)
    assert list(tok.merges) == naive_merges("ab ab", 1000) == [(97, 98), (32, 256)]   # "ab", then " " + "ab"


# ---- encoding against Hugging Face -------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    text = "\n".join(read_work(w) for w in ("hamlet", "sonnets")) + "\n" + topics["if"]
    return BPETokenizer.train(text, 1024, special_tokens=[EOT, "<|pad|>"])


def hugging_face_twin(tok):
    """tokenizers' BPE with our vocabulary and merges, written in GPT-2's byte-to-character encoding."""
    table = gpt2_bytes_to_unicode()
    readable = {i: "".join(table[b] for b in tok.vocab[i]) for i in tok.vocab}
    vocab = {s: i for i, s in readable.items()}
    assert len(vocab) == len(readable), "two tokens with the same bytes: HF's vocabulary cannot hold them"
    merges = [(readable[a], readable[b]) for a, b in tok.merges]
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.add_special_tokens(list(tok.special_tokens))
    return hf


TEXTS = [
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
    "  leading spaces,\ttabs\t\tand   runs of    spaces  \n\n\n and trailing ones   ",
    "I'm sure you've heard they'll say it's what we'd do; DON'T SHOUT",
    "Numbers 1234567 and 3.14159, money $12.50, 50% off!!! ... ???",
    "Café naïve résumé, Ελληνικά, русский текст, 日本語のテキスト,",
    "emoji 🎭🎭 and a combining accent: e\u0301",
    f"one document{EOT}the next{EOT}{EOT}<|pad|><|pad|> end",
]


@pytest.mark.parametrize("text", TEXTS + [topics["class"][:3000], read_work("macbeth")[:5000]],
                         ids=lambda t: repr(t[:20]))
def test_encode_matches_hugging_face(tokenizer, text):
    hf = hugging_face_twin(tokenizer)
    assert tokenizer.encode(text) == hf.encode(text).ids
    assert tokenizer.vocab_size == hf.get_vocab_size()


def test_bytes_to_unicode_is_gpt2s():
    assert bytes_to_unicode() == gpt2_bytes_to_unicode()


# ---- round trip, special tokens, save and load -------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_decode_encode_round_trips_any_unicode(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode(tokenizer.encode(text, allowed_special="none")) == text


@settings(max_examples=100, deadline=None)
@given(pieces=st.lists(st.one_of(st.text(max_size=20), st.sampled_from([EOT, "<|pad|>", "<|", "|>"])), max_size=8))
def test_special_tokens_are_never_split(tokenizer, pieces):
    text = "".join(pieces)
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    # every occurrence of a special token is exactly one id, and the ids match encoding the pieces in between
    parts = regex.split("(<\\|endoftext\\|>|<\\|pad\\|>)", text)
    expected = []
    for i, part in enumerate(parts):
        expected += [tokenizer.special_tokens[part]] if i % 2 else tokenizer.encode_ordinary(part)
    assert ids == expected
    assert ids.count(tokenizer.special_tokens[EOT]) == text.count(EOT)


def test_special_tokens_are_excluded_from_training():
    text = f"ab{EOT}ab{EOT}" * 50
    tok = BPETokenizer.train(text, 300, special_tokens=[EOT])
    assert all(b"<|" not in tok.vocab[i] and b"|>" not in tok.vocab[i] for i in tok.vocab)
    assert tok.special_tokens[EOT] == 256 + len(tok.merges) and tok.vocab_size == 256 + len(tok.merges) + 1
    assert tok.encode(f"ab{EOT}") == [tok.merges[(97, 98)], tok.special_tokens[EOT]]


def test_allowed_special():
    tok = BPETokenizer(special_tokens=[EOT, "<|pad|>"])
    text = f"x{EOT}<|pad|>"
    pad = tok.special_tokens["<|pad|>"]
    assert tok.encode(text, allowed_special={"<|pad|>"}) == tok.encode_ordinary(f"x{EOT}") + [pad]
    assert tok.encode(text, allowed_special="none") == list(text.encode("utf-8"))
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode(text, allowed_special={"<|unk|>"})


def test_save_and_load(tokenizer, tmp_path):
    path = tmp_path / "bpe.json"
    tokenizer.save(path)
    state = json.loads(path.read_text())
    assert state["merges"][0] == list(next(iter(tokenizer.merges)))
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tokenizer.merges and loaded.special_tokens == tokenizer.special_tokens
    for text in TEXTS:
        assert loaded.encode(text) == tokenizer.encode(text)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a minigrad byte-level BPE file"):
        BPETokenizer.load(path)


def test_errors_name_the_problem(tokenizer):
    with pytest.raises(ValueError, match="id 99999 is out of range"):
        tokenizer.decode([1, 99999])
    with pytest.raises(ValueError, match="lone surrogate"):
        tokenizer.encode("a\ud800b")
    with pytest.raises(TypeError, match="expected a str"):
        tokenizer.encode(b"bytes")
    with pytest.raises(ValueError, match="below the 256 bytes"):
        BPETokenizer.train("abc", 200)
    with pytest.raises(ValueError, match="uses an id that does not exist"):
        BPETokenizer(merges=[(97, 300)])


def test_decode_of_a_cut_character_is_a_replacement_char(tokenizer):
    ids = tokenizer.encode_ordinary("€")            # 3 bytes
    assert tokenizer.decode_bytes(ids) == "€".encode("utf-8")
    assert tokenizer.decode(list(b"\xe2\x82")) == "\ufffd"
