"""book.experiments.meap_retrieval: MEAP's and NTP's batches, training, exact match and the attention maps."""
import numpy as np
import pytest

from book.data.shakespeare import CharTokenizer
from book.experiments.meap_retrieval import (RetrievalSetup, answer_predictions, attention_probabilities,
                                             inputs_and_targets, needle_attention, retrieval_accuracy,
                                             retrieval_batch, train_model, training_batch)
from book.models.gpt import GPTConfig

TEXT = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 30
CHARS = CharTokenizer.from_text(TEXT + "abcdefghijklmnopqrstuvwxyz0123456789{:}")
STREAM = np.array(CHARS.encode(TEXT), dtype=np.int64)
MASK = CHARS.vocab_size


def _setup(steps=3):
    config = GPTConfig(vocab_size=MASK + 1, block_size=32, n_layer=2, n_head=2, n_embd=16)
    return RetrievalSetup(text=STREAM, haystack=STREAM, tokenizer=CHARS, mask_id=MASK, config=config, steps=steps,
                          batch_size=6, text_rows=2)


def test_batches_hold_text_rows_then_needle_sequences():
    setup = _setup()
    batch = training_batch(setup, np.random.default_rng(0))
    assert batch.shape == (6, 33)
    decoded = [CHARS.decode(row) for row in batch]
    assert all("{" not in row for row in decoded[:2]) and all(row.count("{") == 4 for row in decoded[2:])
    again = training_batch(setup, np.random.default_rng(0))
    assert np.array_equal(batch, again)


def test_meap_masks_inputs_per_row_and_keeps_the_targets():
    setup = _setup()
    window = training_batch(setup, np.random.default_rng(1))
    x, y = inputs_and_targets(setup, window, "NTP", np.random.default_rng(2))
    xm, ym = inputs_and_targets(setup, window, "MEAP", np.random.default_rng(2))
    assert np.array_equal(x, window[:, :-1]) and np.array_equal(y, window[:, 1:]) and np.array_equal(ym, y)
    masked = xm == MASK
    assert (masked.sum(1) == int(0.15 * 32)).all() and np.array_equal(xm[~masked], x[~masked])
    assert len({row.tobytes() for row in masked}) > 1                         # a mask per row
    with pytest.raises(ValueError, match="objective"):
        inputs_and_targets(setup, window, "MLM", np.random.default_rng(0))


def test_training_and_evaluation_run_and_attention_is_a_causal_distribution():
    setup = _setup()
    model, losses = train_model(setup, "MEAP", seed=0)
    assert len(losses) == 3 and all(np.isfinite(losses))
    batch = retrieval_batch(STREAM, CHARS, 0.5, 8, setup)
    assert answer_predictions(model, batch).shape == (8, 2)
    assert 0.0 <= retrieval_accuracy(model, batch) <= 1.0
    maps = attention_probabilities(model, batch.tokens[:, :-1])               # checked against each layer inside
    assert len(maps) == 2 and maps[0].shape == (8, 2, 32, 32)
    assert np.allclose(maps[-1].sum(-1), 1) and np.allclose(np.triu(maps[-1], k=1), 0)
    head, right, other = needle_attention(model, batch)
    assert 0 <= head < 2 and 0 <= right <= 1 and 0 <= other <= 1 and right + other <= 1 + 1e-9

