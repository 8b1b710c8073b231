"""MEAP against next-token prediction on key-value retrieval (chapter 04): one character GPT trained with each
objective on the same batches (plain Shakespeare windows plus needle sequences), then scored by exact match of
the queried value at chosen needle depths, by the perplexity of plain validation text, and by where its last
layer's attention goes.

    setup = RetrievalSetup(text=data["train"], haystack=train_haystack, tokenizer=chars, mask_id=MASK_ID,
                           config=GPTConfig(...), steps=1500)
    model, losses = train_model(setup, "MEAP", seed=0)
    accuracy = retrieval_accuracy(model, retrieval_batch(val_haystack, chars, 0.5, 200, setup))

A training batch: `text_rows` windows of plain text and batch_size - text_rows needle sequences; under MEAP
every row gets 15% of its inputs set to [MASK] (a mask drawn per row from a generator of its own, seeded
seed + 100), under NTP none. The data generator (seed) is the same for both objectives, so a seed's two models
see the same batches.
"""
import math
from dataclasses import dataclass, field

import minigrad as mg
from minigrad.backend import np
from book.data import shakespeare as sh
from book.data.needles import needle_batch, needle_text
from book.objectives.meap import apply_meap_mask, draw_meap_mask
from book.training import TrainConfig, configure_optimizer, make_scheduler, train_step

OBJECTIVES = ("NTP", "MEAP")


@dataclass
class RetrievalSetup:
    text: object                  # 1-D token array of plain training text
    haystack: object              # 1-D token array the training needles are hidden in
    tokenizer: object             # a CharTokenizer
    mask_id: int                  # the [MASK] id (one past the characters)
    config: object                # a GPTConfig; block_size = the context T
    steps: int = 1500
    batch_size: int = 32
    text_rows: int = 4            # plain-text windows per batch; the others are needle sequences
    learning_rate: float = 6e-3
    min_lr: float = 1e-4
    needles: dict = field(default_factory=lambda: dict(num_needles=2, num_queries=2, key_len=1, value_len=2))


def training_batch(setup, rng):
    """(batch_size, T + 1) windows: text_rows of plain text, then needle sequences hidden in the haystack."""
    T = setup.config.block_size
    x, y = sh.get_batch(setup.text, setup.text_rows, T, rng)
    text = np.concatenate([x, y[:, -1:]], axis=1)                                  # (text_rows, T + 1)
    needles = needle_batch(setup.haystack, setup.tokenizer, rng, setup.batch_size - setup.text_rows, T + 1,
                           **setup.needles).tokens                                 # (B - text_rows, T + 1)
    return np.concatenate([text, needles])


def inputs_and_targets(setup, window, objective, mask_rng):
    """NTP: the window shifted by one. MEAP: the same targets, 15% of each row's inputs set to [MASK]."""
    if objective not in OBJECTIVES:
        raise ValueError(f"inputs_and_targets: objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "MEAP":
        return apply_meap_mask(window, draw_meap_mask(len(window), setup.config.block_size, mask_rng),
                               setup.mask_id)
    return window[:, :-1], window[:, 1:]


def train_model(setup, objective, seed):
    """A GPT trained `setup.steps` steps with `objective`; AdamW, 50 warmup steps (or a tenth of the run),
    cosine decay to min_lr. Returns (model, training losses per step)."""
    from book.models.gpt import GPT

    mg.manual_seed(seed)
    model = GPT(setup.config)
    recipe = TrainConfig(max_iters=setup.steps, learning_rate=setup.learning_rate, min_lr=setup.min_lr,
                         warmup_iters=min(50, setup.steps // 10))
    optimizer = configure_optimizer(model, recipe.learning_rate, recipe.weight_decay, recipe.betas)
    scheduler = make_scheduler(optimizer, recipe)
    data_rng, mask_rng = np.random.default_rng(seed), np.random.default_rng(seed + 100)
    losses = []
    for _ in range(setup.steps):
        x, y = inputs_and_targets(setup, training_batch(setup, data_rng), objective, mask_rng)
        loss, _ = train_step(model, optimizer, x, y, recipe.grad_clip)
        scheduler.step()
        losses.append(loss)
    return model, losses


def retrieval_batch(haystack, tokenizer, depth, count, setup):
    """The evaluation sequences at one depth (the same for every model: the generator is seeded by the depth)."""
    return needle_batch(haystack, tokenizer, np.random.default_rng(1000 + int(100 * depth)), count,
                        setup.config.block_size + 1, depth=depth, **setup.needles)


def answer_predictions(model, batch):
    """(N, value_len): the arg-max at each answer position, given the true prefix (= greedy decoding)."""
    model.eval()
    with mg.no_grad():
        logits, _ = model(mg.tensor(batch.tokens[:, :-1]))                          # (N, T, V)
    first = batch.answer_start - 1                  # the logits at the query's ":" predict the 1st digit
    return logits.data[:, first:first + batch.value_len].argmax(-1)


def retrieval_accuracy(model, batch):
    """Exact match: the fraction of sequences whose whole value is predicted right."""
    return float((answer_predictions(model, batch) == batch.answers).all(axis=1).mean())


def attention_probabilities(model, tokens):
    """Each layer's causal attention probabilities (B, H, T, T), recomputed from the GPT's weights and checked
    against the layer's own output."""
    B, T = tokens.shape
    H, C = model.config.n_head, model.config.n_embd
    D = C // H
    maps = []
    model.eval()
    with mg.no_grad():
        x = model.transformer.wte(mg.tensor(tokens)) + model.transformer.wpe(mg.arange(T))      # (B, T, C)
        for block in model.transformer.h:
            q, k, v = (t.data.reshape(B, T, H, D).transpose(0, 2, 1, 3)                          # (B, H, T, D)
                       for t in block.attn.c_attn(block.ln_1(x)).split(C, dim=2))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)                                  # (B, H, T, T)
            scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
            p = np.exp(scores - scores.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            mixed = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, C)                               # (B, T, C)
            if not np.allclose(block.attn.c_proj(mg.tensor(mixed)).data, block.attn(block.ln_1(x)).data,
                               atol=1e-4):
                raise AssertionError("attention_probabilities: the recomputed attention differs from the layer's")
            maps.append(p)
            x = block(x)
    return maps


def needle_attention(model, batch):
    """(head, mass on the queried needle, mass on the distractors): the mean attention from the question's last
    token in the last layer, for the head with the most mass on the queried needle."""
    probs = attention_probabilities(model, batch.tokens[:, :-1])[-1][:, :, batch.answer_start - 1]   # (N, H, T)
    length = len(needle_text(batch.keys[0][0], batch.values[0][0]))
    right, other = np.zeros(probs.shape), np.zeros(probs.shape)
    for i, starts in enumerate(batch.needle_starts):
        right[i, :, starts[0]:starts[0] + length] = 1
        for s in starts[1:]:
            other[i, :, s:s + length] = 1
    mass_right, mass_other = (probs * right).sum(-1).mean(0), (probs * other).sum(-1).mean(0)      # (H,)
    head = int(mass_right.argmax())
    return head, float(mass_right[head]), float(mass_other[head])
