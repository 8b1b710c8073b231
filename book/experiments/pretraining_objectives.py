"""Pretraining objectives at equal compute (chapter 04): MLM, ELECTRA, RTS, C-RTS and SLM on one tiny encoder,
one tokenizer, the same sequences and the same optimizer, each encoder then judged by a frozen-feature probe.

    tok = train_tokenizer(text, vocab_size=1024)            # byte-level BPE + [PAD] [CLS] [SEP] [MASK]
    special = SpecialIds.of(tok)
    trainer = make_pretrainer("electra", encoder_config, special, generator_fraction=0.25, seed=0)
    stats = trainer.step(sequences(stream, 32, 64, rng, special), rng)   # one update; stats["loss"], ...
    features = trainer.pooled_features(passages)            # (N, H), the frozen encoder's mean hidden state
    accuracy = probe_accuracy(features[train], labels[train], features[test], labels[test])

Every pretrainer owns its model and an AdamW optimizer (weight decay on matrices only, linear warmup then
linear decay, gradient clipping at 1), and one `step` = draw the corruption from the given NumPy Generator,
forward, backward, update. The encoder that is probed is the one a downstream task would fine-tune: BERT's for
MLM, RTS, C-RTS and SLM, ELECTRA's discriminator (the generator is thrown away).

Compute. Every objective runs the same number of steps on the same batches; the cost of a step differs:
`flops_per_step` counts 6 x (multiply-adds per token of every Linear layer, heads included, plus attention's
QK^T and AV) x tokens, the usual "6 N D" estimate of a forward and backward pass, so ELECTRA pays for its
generator and MLM for its vocabulary-sized output layer.
"""
import time
from dataclasses import dataclass

import minigrad
from minigrad import nn
from minigrad.backend import np
from minigrad.optim import lr_scheduler
from book.models.bert import BertConfig
from book.objectives import (ELECTRA_SPLIT, IGNORE_INDEX, BertForMaskedLM, BertForTokenDetection, ElectraConfig,
                                 ElectraPretraining, apply_mlm_masking, cluster_vocabulary, detection_labels,
                                 draw_cluster_substitution, draw_gumbel_noise, draw_mlm_masking,
                                 draw_random_substitution, draw_swaps, mlm_loss, substitute_tokens,
                                 token_detection_loss, update_cluster_counts)
from book.tokenizers.bpe import BPETokenizer
from book.training import configure_optimizer

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
OBJECTIVES = ("mlm", "electra", "rts", "crts", "slm")
# Chapter 04's methods, one colour each in both of its notebooks (book.plotting.Palette(CHAPTER_METHODS)): the
# encoders of 01_objectives by their pretrainer names and the two decoder objectives of 02_meap, ordered so that
# the pair compared in 02 gets NTP black and MEAP vermillion.
CHAPTER_METHODS = ("mlm", "MEAP", "electra 0.25", "electra 1", "rts", "slm", "NTP", "crts")


# ---- tokens and sequences -----------------------------------------------------------------------

def train_tokenizer(text, vocab_size):
    """A byte-level BPE tokenizer of vocab_size ids, the last four being [PAD] [CLS] [SEP] [MASK]."""
    return BPETokenizer.train(text, vocab_size, special_tokens=SPECIAL_TOKENS)


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    cls: int
    sep: int
    mask: int
    vocab_size: int

    @classmethod
    def of(cls, tokenizer):
        ids = [tokenizer.special_tokens[t] for t in SPECIAL_TOKENS]
        return cls(*ids, vocab_size=tokenizer.vocab_size)

    @property
    def all(self):
        return (self.pad, self.cls, self.sep, self.mask)


def with_cls_sep(tokens, special):
    """[CLS] tokens [SEP]: (B, L) -> (B, L + 2) int64."""
    B = tokens.shape[0]
    cls = np.full((B, 1), special.cls, dtype=np.int64)
    sep = np.full((B, 1), special.sep, dtype=np.int64)
    return np.concatenate([cls, np.asarray(tokens, dtype=np.int64), sep], axis=1)


def sequences(stream, batch_size, length, rng, special):
    """A batch of random windows of a 1-D token stream, framed by [CLS] and [SEP]: int64 (B, length), no padding."""
    if length < 3 or stream.ndim != 1 or len(stream) < length - 2:
        raise ValueError(f"sequences: need length >= 3 and a 1-D stream of at least length - 2 tokens, got length "
                         f"{length} and stream shape {stream.shape}")
    starts = rng.integers(0, len(stream) - (length - 2) + 1, size=batch_size)    # (B,)
    windows = np.stack([np.asarray(stream[s:s + length - 2], dtype=np.int64) for s in starts])  # (B, length - 2)
    return with_cls_sep(windows, special)


def cooccurrence_embeddings(stream, vocab_size, dim, window=2):
    """Token vectors from counts alone (no training): the positive pointwise mutual information of (token,
    neighbour within `window` positions) pairs, reduced to `dim` dimensions by SVD (rows U_d sqrt(S_d)).
    Tokens used in the same contexts get close vectors; C-RTS clusters these."""
    ids = np.asarray(stream, dtype=np.int64)
    counts = np.zeros((vocab_size, vocab_size))
    for shift in range(1, window + 1):
        np.add.at(counts, (ids[:-shift], ids[shift:]), 1.0)
        np.add.at(counts, (ids[shift:], ids[:-shift]), 1.0)
    total = counts.sum()
    rows, cols = counts.sum(1, keepdims=True), counts.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts * total / (rows * cols))
    ppmi = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)                     # (V, V)
    U, S, _ = np.linalg.svd(ppmi)
    return U[:, :dim] * np.sqrt(S[:dim])                                         # (V, dim)


# ---- one pretrainer per objective ---------------------------------------------------------------

@dataclass
class EncoderConfig:
    """The encoder every objective trains (and the probe reads)."""
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    max_position_embeddings: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    total_steps: int = 400          # the learning rate decays linearly to 0 here
    grad_clip: float = 1.0

    def bert(self, special):
        return BertConfig(vocab_size=special.vocab_size, hidden_size=self.hidden_size,
                          num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                          intermediate_size=4 * self.hidden_size, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0, max_position_embeddings=self.max_position_embeddings,
                          pad_token_id=special.pad, add_pooling_layer=False)


class Pretrainer:
    """A model, its optimizer and schedule; `loss(ids, rng)` is the objective, `hidden(ids)` the encoder."""
    name = None

    def __init__(self, model, config: EncoderConfig, special: SpecialIds):
        self.model, self.config, self.special = model, config, special
        self.optimizer = configure_optimizer(model, config.learning_rate, config.weight_decay, (0.9, 0.999))
        self.scheduler = lr_scheduler.get_linear_schedule_with_warmup(self.optimizer, config.warmup_steps,
                                                                      config.total_steps)
        self.steps, self.seconds = 0, 0.0

    def maskable(self, ids):
        return ~np.isin(ids, self.special.all)                                   # (B, T)

    def loss(self, ids, rng):
        raise NotImplementedError

    def hidden(self, ids):
        raise NotImplementedError

    def step(self, ids, rng):
        """One update on the batch ids (B, T). Returns {"loss": float, ...}; adds its wall time to .seconds."""
        start = time.perf_counter()
        self.model.train()
        loss, stats = self.loss(ids, rng)
        self.optimizer.zero_grad()
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.after_step(stats)
        self.seconds += time.perf_counter() - start
        self.steps += 1
        return {"loss": loss.item(), **{k: v for k, v in stats.items() if isinstance(v, float)}}

    def after_step(self, stats):
        """State an objective keeps between steps (C-RTS's counts)."""

    def pooled_features(self, ids, batch_size=128):
        """The frozen encoder's mean hidden state over each passage's tokens ([CLS] and [SEP] excluded):
        ids (N, T) framed by [CLS] ... [SEP] -> float64 (N, H)."""
        self.model.eval()
        out = []
        with minigrad.no_grad():
            for start in range(0, len(ids), batch_size):
                hidden = self.hidden(ids[start:start + batch_size])             # (b, T, H)
                out.append(np.asarray(hidden.data[:, 1:-1].mean(axis=1), dtype=np.float64))
        return np.concatenate(out)                                               # (N, H)

    def flops_per_step(self, batch_size, length):
        """6 x (Linear multiply-adds per token + attention's 2 T H per layer) x B T: forward and backward."""
        linear = sum(m.weight.data.size for m in self.model.modules() if isinstance(m, nn.Linear))
        attention = sum(2 * length * H * L for H, L in self.encoders())
        return 6 * (linear + attention) * batch_size * length

    def encoders(self):
        """(hidden size, layers) of each transformer the step runs."""
        return [(self.config.hidden_size, self.config.num_hidden_layers)]


class MLMPretrainer(Pretrainer):
    """BERT: 15% of the tokens, 80% [MASK] / 10% random / 10% kept; predict the originals (mlm_loss)."""
    name = "mlm"

    def __init__(self, config, special):
        super().__init__(BertForMaskedLM(config.bert(special)), config, special)

    def loss(self, ids, rng):
        draws = draw_mlm_masking(self.maskable(ids), rng, self.special.vocab_size)
        corrupted, labels = apply_mlm_masking(ids, draws, self.special.mask)
        return mlm_loss(self.model(minigrad.tensor(corrupted)), labels), {}      # logits (B, T, V)

    def hidden(self, ids):
        return self.model.bert(minigrad.tensor(ids)).last_hidden_state          # (B, T, H)


class SLMPretrainer(MLMPretrainer):
    """SLM: every selected token swapped for a random id, no [MASK]; predict the originals."""
    name = "slm"

    def loss(self, ids, rng):
        swapped, labels = apply_mlm_masking(ids, draw_swaps(self.maskable(ids), rng, self.special.vocab_size), None)
        return mlm_loss(self.model(minigrad.tensor(swapped)), labels), {}


class RTSPretrainer(Pretrainer):
    """RTS: 15% of the tokens replaced by uniform random ids; a two-class head says which were replaced."""
    name = "rts"

    def __init__(self, config, special):
        super().__init__(BertForTokenDetection(config.bert(special)), config, special)

    def corrupt(self, ids, rng):
        selected, replacement = draw_random_substitution(self.maskable(ids), rng, self.special.vocab_size)
        return substitute_tokens(ids, selected, replacement)

    def loss(self, ids, rng):
        corrupted = self.corrupt(ids, rng)                                       # (B, T)
        labels = detection_labels(ids, corrupted)                                # (B, T), no padding here
        logits = self.model(minigrad.tensor(corrupted))                          # (B, T, 2)
        return token_detection_loss(logits, labels), {"ids": ids, "corrupted": corrupted, "logits": logits}

    def hidden(self, ids):
        return self.model.bert(minigrad.tensor(ids)).last_hidden_state          # (B, T, H)


class CRTSPretrainer(RTSPretrainer):
    """C-RTS: replacements drawn cluster to cluster, with counts C (K, K) raised where the detector is fooled."""
    name = "crts"

    def __init__(self, config, special, token_clusters, beta=2.0):
        super().__init__(config, special)
        self.token_clusters = np.asarray(token_clusters, dtype=np.int64)
        K = int(self.token_clusters.max()) + 1
        self.counts = np.ones((K, K))
        self.beta = beta

    def corrupt(self, ids, rng):
        selected, replacement = draw_cluster_substitution(ids, self.maskable(ids), rng, self.token_clusters,
                                                          self.counts, beta=self.beta)
        return substitute_tokens(ids, selected, replacement)

    def after_step(self, stats):
        predictions = stats["logits"].data.argmax(-1)                            # (B, T), this step's forward
        self.counts = update_cluster_counts(self.counts, stats["ids"], stats["corrupted"], predictions,
                                            self.token_clusters)


class ElectraPretrainer(Pretrainer):
    """ELECTRA: a generator of generator_fraction x the width fills the [MASK]s by sampling; the discriminator
    says which tokens were replaced. L = L_MLM + 50 L_D."""
    name = "electra"

    def __init__(self, config, special, generator_fraction=0.25):
        bert = config.bert(special)
        electra = ElectraConfig(vocab_size=bert.vocab_size, embedding_size=bert.hidden_size,
                                hidden_size=bert.hidden_size, num_hidden_layers=bert.num_hidden_layers,
                                num_attention_heads=bert.num_attention_heads,
                                intermediate_size=bert.intermediate_size, generator_hidden_size=generator_fraction,
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                max_position_embeddings=bert.max_position_embeddings, pad_token_id=special.pad)
        super().__init__(ElectraPretraining(electra), config, special)
        self.generator_fraction = generator_fraction
        self.name = f"electra {generator_fraction:g}"

    def loss(self, ids, rng):
        draws = draw_mlm_masking(self.maskable(ids), rng, self.special.vocab_size, split=ELECTRA_SPLIT)
        masked, labels = apply_mlm_masking(ids, draws, self.special.mask)
        noise = draw_gumbel_noise(masked.shape + (self.special.vocab_size,), rng, np.float32)  # (B, T, V)
        out = self.model(masked, labels, noise)
        replaced = float(out.disc_labels.sum() / max(1, (labels != IGNORE_INDEX).sum()))
        return out.loss, {"mlm_loss": out.mlm_loss.item(), "disc_loss": out.disc_loss.item(),
                          "replaced_fraction": replaced}

    def hidden(self, ids):
        return self.model.discriminator.electra(minigrad.tensor(ids))             # (B, T, H)

    def encoders(self):
        generator = self.model.config.generator_config()
        return super().encoders() + [(generator.hidden_size, generator.num_hidden_layers)]


def make_pretrainer(name, config, special, seed=0, **options):
    """A fresh pretrainer; the weights are drawn after minigrad.manual_seed(seed). options: generator_fraction
    (electra), token_clusters and beta (crts)."""
    minigrad.manual_seed(seed)
    classes = {"mlm": MLMPretrainer, "slm": SLMPretrainer, "rts": RTSPretrainer, "crts": CRTSPretrainer,
               "electra": ElectraPretrainer}
    if name not in classes:
        raise ValueError(f"make_pretrainer: unknown objective {name!r}; expected one of {OBJECTIVES}")
    return classes[name](config, special, **options)


def random_encoder(config, special, seed=0):
    """The baseline: an untrained BertModel of the same configuration, as a pretrainer with no objective."""
    minigrad.manual_seed(seed)
    trainer = MLMPretrainer(config, special)
    trainer.name = "random init"
    return trainer


# ---- the probe ----------------------------------------------------------------------------------

def fit_logistic_regression(features, labels, l2=1e-2, iterations=300):
    """Multinomial logistic regression on standardized features:
        minimize  mean_i CE(softmax(W x_i + b), y_i) + l2/2 ||W||^2
    by Nesterov-accelerated gradient descent with step 1/L (L = 0.5 lambda_max(X^T X / N) + l2 bounds the
    curvature). Returns a function: features (M, D) -> predicted labels (M,)."""
    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"fit_logistic_regression: expected features (N, D) and labels (N,), got {X.shape} and "
                         f"{y.shape}")
    mean, std = X.mean(0), X.std(0) + 1e-8
    Z = np.concatenate([(X - mean) / std, np.ones((len(X), 1))], axis=1)       # (N, D + 1), bias column
    K = int(y.max()) + 1
    onehot = np.eye(K)[y]                                                        # (N, K)
    penalty = np.ones((Z.shape[1], 1))
    penalty[-1] = 0.0                                                            # no decay on the bias
    step = 1.0 / (0.5 * np.linalg.eigvalsh(Z.T @ Z / len(Z))[-1] + l2)
    W = np.zeros((Z.shape[1], K))
    previous, momentum = W, 1.0
    for _ in range(iterations):
        logits = Z @ W                                                           # (N, K)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        W_next = W - step * (Z.T @ (p - onehot) / len(Z) + l2 * penalty * W)
        next_momentum = (1 + np.sqrt(1 + 4 * momentum ** 2)) / 2
        W, previous = W_next + (momentum - 1) / next_momentum * (W_next - previous), W_next
        momentum = next_momentum
    W = previous

    def predict(new_features):
        Zn = np.concatenate([(np.asarray(new_features) - mean) / std, np.ones((len(new_features), 1))], axis=1)
        return (Zn @ W).argmax(1)
    predict.weights = W
    return predict


def probe_accuracy(train_features, train_labels, test_features, test_labels, l2=1e-2):
    """The held-out accuracy of a logistic-regression probe trained on the train features."""
    predict = fit_logistic_regression(train_features, train_labels, l2)
    return float((predict(test_features) == np.asarray(test_labels)).mean())


# ---- the experiment -----------------------------------------------------------------------------

@dataclass
class ProbeData:
    """Passages framed by [CLS] ... [SEP], their play labels and the train / test split."""
    ids: object
    labels: object
    train: object
    test: object


def evaluate_probe(trainer, probe: ProbeData):
    features = trainer.pooled_features(probe.ids)                                # (N, H)
    return probe_accuracy(features[probe.train], probe.labels[probe.train], features[probe.test],
                          probe.labels[probe.test])


def pretrain_and_probe(trainer, stream, probes, steps, checkpoints, batch_size, length, seed):
    """Train `steps` steps on batches of `sequences(stream, batch_size, length, ...)` drawn from
    np.random.default_rng(seed) (the same batches for every objective: the corruption draws come from a second
    generator), and run every probe ({task: ProbeData}) on the encoder at each step in checkpoints (0 = before
    training). Returns {"step", "probe" ({task: accuracies}), "seconds" (training wall time so far), "loss"
    (per step), "stats" (the last step's), "stats_mean" (each statistic's mean over the last tenth of the
    steps, at least one: less noisy than one batch's)}."""
    data_rng, corruption_rng = np.random.default_rng(seed), np.random.default_rng(seed + 10_000)
    history = {"step": [], "probe": {task: [] for task in probes}, "seconds": [], "loss": [], "stats": {}}
    trace = []
    for step in range(steps + 1):
        if step in checkpoints:
            history["step"].append(step)
            history["seconds"].append(trainer.seconds)
            for task, probe in probes.items():
                history["probe"][task].append(evaluate_probe(trainer, probe))
        if step == steps:
            break
        stats = trainer.step(sequences(stream, batch_size, length, data_rng, trainer.special), corruption_rng)
        history["loss"].append(stats["loss"])
        history["stats"] = stats
        trace.append(stats)
    tail = trace[-max(1, steps // 10):]
    history["stats_mean"] = {k: float(np.mean([s[k] for s in tail])) for k in (tail[0] if tail else {})}
    return history


def time_steps(trainers, stream, batch_size, length, rounds=7, seed=0):
    """{trainer.name: median seconds of one step}, measured in `rounds` interleaved rounds (each round one step
    of every trainer, on the same batch), so that a change in the machine's load hits all objectives alike.
    The steps are real updates: time trainers whose training is over."""
    data_rng, corruption_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    seconds = {trainer.name: [] for trainer in trainers}
    for _ in range(rounds):
        batch = sequences(stream, batch_size, length, data_rng, trainers[0].special)
        for trainer in trainers:
            before = trainer.seconds
            trainer.step(batch, corruption_rng)
            seconds[trainer.name].append(trainer.seconds - before)
    return {name: float(np.median(times)) for name, times in seconds.items()}


def crts_clusters(stream, special, num_clusters, dim, seed=0):
    """C-RTS's token clusters: k-means (cluster_vocabulary) of co-occurrence embeddings (dim) of the stream.
    Tokens that never occur in it (the special tokens, unused bytes) have zero vectors and cluster together."""
    vectors = cooccurrence_embeddings(stream, special.vocab_size, dim)
    return cluster_vocabulary(vectors, num_clusters, np.random.default_rng(seed))

