"""book.data.shakespeare_probe: the spoken text of a play, passages with play labels, a block split."""
import pytest

from minigrad.backend import np
from book.data.shakespeare import CharTokenizer, read_work
from book.data.shakespeare_probe import play_passages, spoken_text, split_blocks

PLAYS = ["macbeth", "twelfth_night"]


def test_spoken_text_keeps_the_speech_and_drops_names_headings_and_directions():
    text = spoken_text("macbeth")
    lines = text.splitlines()
    assert lines[:2] == ["When shall we three meet again?", "In thunder, lightning, or in rain?"]
    assert "Fair is foul, and foul is fair:" in lines
    assert "FIRST WITCH." not in lines and "MACBETH." not in lines          # speaker names
    assert not any(line.startswith(("ACT ", "SCENE ")) for line in lines)   # headings
    assert "[" not in text and "]" not in text                               # stage directions, inline ones too
    assert "Persons Represented" not in text and "DUNCAN, King of Scotland." not in text
    assert "To wear a heart so white. I hear knocking" in lines              # "[Knocking within.]" cut out
    # what is dropped is a small part of the play
    assert 0.8 < len(text) / len(read_work("macbeth")) < 0.95


def test_spoken_text_rejects_a_work_without_acts():
    with pytest.raises(ValueError, match="no 'ACT' heading"):
        spoken_text("sonnets")


def _char_encoder():
    tok = CharTokenizer.from_text("".join(spoken_text(p) for p in PLAYS))
    return tok


def test_play_passages_are_consecutive_windows_with_balanced_labels():
    tok = _char_encoder()
    ids, labels = play_passages(tok.encode, PLAYS, length=50)
    per_play = min(len(spoken_text(p)) // 50 for p in PLAYS)
    assert ids.shape == (2 * per_play, 50) and ids.dtype == np.int64
    assert (np.bincount(labels) == per_play).all() and labels.dtype == np.int64
    for k, play in enumerate(PLAYS):
        rows = ids[labels == k]
        assert tok.decode(rows[:3].reshape(-1)) == spoken_text(play)[:150]  # in text order, no gaps


def test_play_passages_errors():
    with pytest.raises(ValueError, match="at least two plays"):
        play_passages(list, ["macbeth"], 10)
    with pytest.raises(ValueError, match="length >= 1"):
        play_passages(list, PLAYS, 0)


def test_split_blocks_keeps_blocks_together_and_balances_the_plays():
    labels = np.repeat([0, 1, 2], 80)
    train, test = split_blocks(labels, test_fraction=0.25, block=10)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(240))
    assert (np.bincount(labels[test]) == 20).all()                          # blocks 3 and 7 of each play
    within = test % 80
    assert set((within // 10).tolist()) == {3, 7}
    with pytest.raises(ValueError, match="test_fraction"):
        split_blocks(labels, test_fraction=1.0)


def test_shuffle_words_permutes_whole_words_in_half_the_passages():
    from book.data.shakespeare_probe import shuffle_words, word_start_tokens
    words = [" To", " be", ",", " or", " not", " to", " be", "!"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    decode = lambda ids: "".join(list(vocab)[i] for i in ids)               # noqa: E731
    starts = word_start_tokens(decode, len(vocab))
    assert starts.tolist() == [True, True, False, True, True, True, False]
    ids = np.tile([vocab[w] for w in words], (40, 1))
    mixed, shuffled = shuffle_words(ids, starts, np.random.default_rng(0))
    assert shuffled.sum() == 20 and mixed.shape == ids.shape
    assert (mixed[shuffled == 0] == ids[shuffled == 0]).all()
    original_words = sorted([(0,), (1, 2), (3,), (4,), (5,), (1, 6)])        # " To", " be,", " or", ...
    for row in mixed[shuffled == 1]:
        cuts = [t for t in range(1, len(row)) if starts[row[t]]]
        assert sorted(tuple(w) for w in np.split(row, cuts)) == original_words
    assert (mixed[shuffled == 1] != ids[shuffled == 1]).any(axis=1).mean() > 0.8


@pytest.mark.parametrize("play", ["macbeth", "winters_tale", "timon_of_athens", "much_ado_about_nothing", "henry_v",
                                  "troilus_and_cressida", "henry_iv_part_2"])
def test_play_body_and_spoken_text_skip_the_cast_list(play):
    from book.data.shakespeare_probe import play_body
    raw, body, text = read_work(play), play_body(play), spoken_text(play)
    cast_heading = next(h for h in ("Dramatis", "DRAMATIS", "Persons", "PERSONS") if h in raw[:200])
    assert cast_heading not in body and cast_heading not in text
    assert body.splitlines()[0].split()[0].upper() in ("ACT", "INDUCTION", "PROLOGUE", "PROLOGUE.")
    assert raw.rstrip().endswith(body.rstrip()[-200:])                       # the body runs to the end
    assert 0.8 < len(body) / len(raw) < 1                                    # only the front matter goes



def test_every_play_body_starts_after_its_cast_list():
    import re
    from book.data.shakespeare import list_plays
    from book.data.shakespeare_probe import play_body
    cast = re.compile(r"dramatis personae|persons represented", re.IGNORECASE)
    for play in list_plays():
        raw, body = read_work(play), play_body(play)
        front = raw[:raw.index(body[:200])]
        assert cast.search(front) and not cast.search(body), play              # the list is in front, only
        assert len(front) < 3000, play                                          # title, cast list, setting
