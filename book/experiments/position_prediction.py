"""Chapter 12's MP3 experiment: Shakespeare's verse lines as word sequences, position-prediction pretraining, and an
order-sensitive downstream task (is this line's word order original, or were two of its words swapped?).

    data = line_dataset(vocab_size=1000, max_words=12)     # LineData: train / val ids (N, T), masks, vocabulary
    model = MP3Encoder(len(data.vocab), data.length, ...)
    losses = pretrain_mp3(model, data.train_ids, data.train_mask, eta=0.5, steps=..., rng=...)
    acc = position_accuracy(model, data.val_ids, data.val_mask, eta=0.5, rng=...)
    ids, labels = swap_two_words(data.train_ids, data.train_mask, rng)   # the downstream task
    history = finetune_order(OrderClassifier(model), train, test, steps=..., rng=...)

The model is book/pretraining/position_prediction.py (the method, its equations and its choices are stated there).
"""
import re
from collections import Counter
from dataclasses import dataclass

import minigrad
from minigrad.backend import np
from minigrad.nn import functional as F
from book.data.shakespeare import list_plays, split_by_play
from book.data.shakespeare_probe import spoken_text
from book.pretraining.position_prediction import MP3Encoder, OrderClassifier, draw_visible

PAD, UNK = "<pad>", "<unk>"
WORD = re.compile(r"[A-Za-z']+|[.,;:!?]")


@dataclass
class LineData:
    """Word ids (N, T) of the lines of the training plays and of the validation plays, 1/0 masks of real words
    (padding at the end), and the vocabulary (index 0 = PAD, 1 = UNK)."""
    train_ids: np.ndarray
    train_mask: np.ndarray
    val_ids: np.ndarray
    val_mask: np.ndarray
    vocab: list

    @property
    def length(self):
        return self.train_ids.shape[1]


def _lines(plays, min_words, max_words):
    """Each spoken line as words (case kept: a verse line starts with a capital) and punctuation marks, kept if it
    has min_words..max_words tokens."""
    out = []
    for name in plays:
        for line in spoken_text(name).splitlines():
            words = WORD.findall(line)
            if min_words <= len(words) <= max_words:
                out.append(words)
    return out


def _encode(lines, index, length):
    ids = np.zeros((len(lines), length), dtype=np.int64)
    for n, words in enumerate(lines):
        ids[n, :len(words)] = [index.get(w, 1) for w in words]
    return ids, (ids != 0).astype(np.int64)


def line_dataset(vocab_size=1000, min_words=6, max_words=12, max_plays=None):
    """LineData from the plays of split_by_play() (validation plays held out); the vocabulary is the vocab_size - 2
    most frequent training tokens, the rest map to UNK. max_plays: use only the first plays (fast runs)."""
    names = split_by_play()
    plays = set(list_plays())
    train_plays = [n for n in names["train"] if n in plays][:max_plays]
    val_plays = [n for n in names["val"] if n in plays][:max_plays]
    train, val = _lines(train_plays, min_words, max_words), _lines(val_plays, min_words, max_words)
    counts = Counter(w for words in train for w in words)
    vocab = [PAD, UNK] + [w for w, _ in counts.most_common(vocab_size - 2)]
    index = {w: i for i, w in enumerate(vocab)}
    train_ids, train_mask = _encode(train, index, max_words)
    val_ids, val_mask = _encode(val, index, max_words)
    return LineData(train_ids, train_mask, val_ids, val_mask, vocab)


def swap_two_words(ids, attention_mask, rng, fraction=0.5):
    """The downstream task: in a `fraction` of the rows, swap two real positions that hold different words.
    Returns (ids (N, T), labels int64 (N,), 1 = swapped). The bag of words is unchanged: only order tells."""
    ids = np.array(ids, copy=True)
    labels = np.zeros(len(ids), dtype=np.int64)
    for n in np.flatnonzero(rng.random(len(ids)) < fraction):
        real = np.flatnonzero(attention_mask[n])
        i, j = rng.choice(real, size=2, replace=False)
        if ids[n, i] != ids[n, j]:
            ids[n, [i, j]] = ids[n, [j, i]]
            labels[n] = 1
    return ids, labels


def pretrain_mp3(model, ids, attention_mask, eta, steps, rng, batch_size=64, learning_rate=2e-3):
    """AdamW on L_MP3 with fresh batches and fresh visible subsets each step; returns the losses (steps,)."""
    optimizer = minigrad.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    losses = np.empty(steps)
    for step in range(steps):
        rows = rng.integers(0, len(ids), size=batch_size)
        visible = draw_visible(attention_mask[rows], eta, rng)
        loss = model.mp3_loss(ids[rows], attention_mask[rows], visible)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses[step] = loss.item()
    return losses


def position_accuracy(model, ids, attention_mask, eta, rng, batch_size=512):
    """Fraction of real tokens whose most likely position is their own, with keys from a fresh visible subset
    at masking ratio eta."""
    correct = total = 0
    with minigrad.no_grad():
        for start in range(0, len(ids), batch_size):
            x, m = ids[start:start + batch_size], attention_mask[start:start + batch_size]
            logits = model.position_logits(model(x, draw_visible(m, eta, rng)))   # (b, T, max_len)
            guess = logits.data.argmax(axis=-1)                                    # (b, T)
            real = m.astype(bool)
            correct += int((guess == np.arange(x.shape[1]))[real].sum())
            total += int(real.sum())
    return correct / total


def classify(classifier, ids, attention_mask, batch_size=512):
    """Predicted class of each row (N,)."""
    with minigrad.no_grad():
        return np.concatenate([classifier(ids[s:s + batch_size], attention_mask[s:s + batch_size]).data.argmax(-1)
                               for s in range(0, len(ids), batch_size)])


def finetune_order(classifier, train, test, steps, rng, batch_size=64, learning_rate=1e-3, eval_every=50):
    """Fine-tune every parameter on train = (ids, mask, labels) with cross-entropy; returns {"step": [...],
    "accuracy": [...]}, the test accuracy every eval_every steps and at the end."""
    optimizer = minigrad.optim.AdamW(classifier.parameters(), lr=learning_rate, weight_decay=0.01)
    ids, mask, labels = train
    history = {"step": [], "accuracy": []}
    for step in range(1, steps + 1):
        rows = rng.integers(0, len(ids), size=batch_size)
        loss = F.cross_entropy(classifier(ids[rows], mask[rows]), minigrad.tensor(labels[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            history["step"].append(step)
            history["accuracy"].append(float((classify(classifier, test[0], test[1]) == test[2]).mean()))
    return history


# ---- the experiment: pretraining at several masking ratios, then fine-tuning from scratch or from MP3 --------

@dataclass
class MP3Setup:
    """Model and training sizes shared by every arm."""
    d_model: int = 48
    nhead: int = 2
    num_layers: int = 2
    dim_feedforward: int = 96
    pretrain_steps: int = 1000
    pretrain_lr: float = 3e-3
    finetune_steps: int = 800
    finetune_lr: float = 1e-3
    batch_size: int = 64
    eval_every: int = 100


def make_encoder(data, setup, seed):
    """A fresh MP3Encoder for the data's vocabulary and length, initialised from minigrad's seed `seed`."""
    minigrad.manual_seed(seed)
    return MP3Encoder(len(data.vocab), data.length, setup.d_model, setup.nhead, setup.num_layers,
                      setup.dim_feedforward)


def pretrain_and_evaluate(data, setup, eta, seed, eval_rows=2000):
    """Pretrain one encoder at masking ratio eta; returns dict(model, losses, accuracy at eta, accuracy at eta = 0)
    on the first eval_rows lines of the validation plays."""
    model = make_encoder(data, setup, seed)
    rng = np.random.default_rng(seed)
    losses = pretrain_mp3(model, data.train_ids, data.train_mask, eta, setup.pretrain_steps, rng,
                          setup.batch_size, setup.pretrain_lr)
    val_ids, val_mask = data.val_ids[:eval_rows], data.val_mask[:eval_rows]
    return {"model": model, "losses": losses,
            "accuracy": position_accuracy(model, val_ids, val_mask, eta, np.random.default_rng(1000 + seed)),
            "accuracy_all_keys": position_accuracy(model, val_ids, val_mask, 0.0, np.random.default_rng(0))}


def order_task(data, train_lines, test_lines, seed):
    """The downstream data: (ids, mask, labels) for train_lines lines of the training plays and for the first
    test_lines lines of the validation plays, half of them with two words swapped."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(data.train_ids), size=train_lines, replace=False)
    train_ids, train_labels = swap_two_words(data.train_ids[rows], data.train_mask[rows], rng)
    test_ids, test_labels = swap_two_words(data.val_ids[:test_lines], data.val_mask[:test_lines], rng)
    return (train_ids, data.train_mask[rows], train_labels), (test_ids, data.val_mask[:test_lines], test_labels)


def finetune_from(encoder, task, setup, seed):
    """Fine-tune OrderClassifier(encoder) (classifier head initialised from seed) on task = (train, test)."""
    minigrad.manual_seed(10_000 + seed)
    classifier = OrderClassifier(encoder)
    return finetune_order(classifier, task[0], task[1], setup.finetune_steps, np.random.default_rng(20_000 + seed),
                          setup.batch_size, setup.finetune_lr, setup.eval_every)
