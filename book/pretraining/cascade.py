"""Yi's data cascade at toy scale (Yi: Open Foundation Models by 01.AI, arXiv:2403.04652, section 2.1): stages
that each remove documents, scored against a corpus whose junk is known, and a tiny language model trained on
the filtered and on the unfiltered corpus at an equal number of tokens.

    stages = [("heuristic", lambda docs: heuristic_filter(docs)),
              ("perplexity", lambda docs: perplexity_filter(lm, docs, 12.0)), ...]
    removed_by = run_cascade(corpus.documents, stages)      # (N,) the stage that removed each document, "" if kept
    scores(removed_by == "heuristic", corpus.mask(*JUNK))   # precision, recall

A stage is a function from a list of documents to a boolean keep-mask; in the cascade each stage sees only
the documents every earlier stage kept (the cheap rules first, so the costly scorers see fewer documents).
Precision = removed junk / removed; recall = removed junk / all junk.
"""
from dataclasses import dataclass

import minigrad
from minigrad.backend import np
from book.data.shakespeare import CharTokenizer
from book.models.gpt import GPT, GPTConfig
from book.pretraining.noisy_corpus import KINDS
from book.training import TrainConfig, evaluate, train

JUNK = tuple(k for k in KINDS if k != "clean")


def run_cascade(documents, stages):
    """(N,) array of str: the name of the stage that removed each document, "" for the documents kept."""
    removed_by = np.full(len(documents), "", dtype=object)
    alive = np.arange(len(documents))
    for name, stage in stages:
        keep = np.asarray(stage([documents[i] for i in alive]), dtype=bool)
        if keep.shape != alive.shape:
            raise ValueError(f"run_cascade: stage {name!r} returned a mask of shape {keep.shape}, expected "
                             f"{alive.shape} (one bool per document it was given)")
        removed_by[alive[~keep]] = name
        alive = alive[keep]
    return removed_by


def scores(removed, junk):
    """(precision, recall) of a removal mask against the junk mask (precision 1 when nothing is removed)."""
    removed, junk = np.asarray(removed, dtype=bool), np.asarray(junk, dtype=bool)
    hits = (removed & junk).sum()
    return (hits / removed.sum() if removed.any() else 1.0), (hits / junk.sum() if junk.any() else 1.0)


def recall_by_kind(removed, kinds):
    """{junk kind: fraction of the documents of that kind removed}."""
    kinds = np.asarray(kinds)
    return {k: float(np.asarray(removed)[kinds == k].mean()) for k in JUNK if (kinds == k).any()}


# ---- filtered vs unfiltered: a tiny character GPT at equal tokens ---------------------------------

@dataclass(frozen=True)
class LMSetup:
    """The one model and recipe both arms train with; only the training text differs."""
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64
    batch_size: int = 16
    steps: int = 300
    learning_rate: float = 3e-3
    val_batches: int = 40

    @property
    def tokens(self):
        """Training tokens per run: steps x batch x block, the same for every arm."""
        return self.steps * self.batch_size * self.block_size


def joined(documents):
    """The documents as one training text, separated by blank lines."""
    return "\n\n".join(documents)


def train_char_lm(train_text, val_text, tokenizer, setup, seed):
    """Train a fresh character GPT (initialization and batches from `seed`) on train_text for setup.steps steps;
    returns (validation loss in nats per character on val_text, number of parameters)."""
    encode = lambda text: np.asarray(tokenizer.encode(text), dtype=np.uint16)       # noqa: E731
    data = {"train": encode(train_text), "val": encode(val_text)}
    minigrad.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=setup.block_size, n_layer=setup.n_layer,
                          n_head=setup.n_head, n_embd=setup.n_embd))
    config = TrainConfig(max_iters=setup.steps, batch_size=setup.batch_size, block_size=setup.block_size,
                         learning_rate=setup.learning_rate, min_lr=setup.learning_rate / 10,
                         warmup_iters=max(setup.steps // 20, 1), eval_interval=0, seed=seed, progress=False)
    train(model, data, config)
    loss = evaluate(model, data["val"], 32, setup.block_size, eval_iters=setup.val_batches, seed=12345)
    return loss, model.num_parameters(exclude_embeddings=False)


def compare_filtering(arms, val_text, setup, seeds):
    """{arm name: [validation loss per seed]} for arms {name: training text}; one character vocabulary for all
    (the union of every text's characters), the same validation batches for every run."""
    tokenizer = CharTokenizer.from_text("".join(arms.values()) + val_text)
    return {name: [train_char_lm(text, val_text, tokenizer, setup, seed)[0] for seed in seeds]
            for name, text in arms.items()}
