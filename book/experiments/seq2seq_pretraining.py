"""BART against E2S2 on one tiny encoder-decoder (chapter 05): both continue the same BART warm start on the
same batches for the same steps, each model then judged for understanding (frozen-encoder probes) and
generation (denoising loss, ROUGE).

    tok = train_tokenizer(text, vocab_size=512)        # chapter 04's BPE + [PAD] [CLS] [SEP] [MASK]
    special = SpecialIds.of(tok)                        # [CLS] plays BART's <s> (bos), [SEP] its </s> (eos)
    warm = BartPretrainer(config, special, seed=100)    # the encoder-decoder of chapter 02 (Seq2SeqTransformer)
    train(warm, stream, steps, batch_size, length, seed=100)             # a common BART warm start
    e2s2 = E2S2Pretrainer(config, special, seed=0)      # plus E2S2's detection head
    e2s2.load_seq2seq(warm.seq2seq.state_dict())        # continued pretraining from the warm start
    history = pretrain_and_evaluate(e2s2, stream, probes, (windows, tok.decode), steps, checkpoints,
                                    batch_size, length, seed=0)

The objectives are book.objectives.bart (text infilling) and book.objectives.e2s2 (noisy view, detection,
NT-Xent, the weighted total). The optimizer, schedule, gradient clipping, timing and the frozen-feature probe are
chapter 04's (book.experiments.pretraining_objectives.Pretrainer and probe_accuracy).

Equal compute. E2S2 runs the encoder-decoder on two views of each sequence (noisy and mask-only). So that the
arms differ only in what E2S2 adds, BART also gets two views per sequence: two independent text infillings,
each reconstructed in its own pass, 0.5 L_dec + 0.5 L_dec. Both arms then run the same encoder and decoder twice
on B sequences per step; E2S2 adds a Linear(d, 3) head, a mean-pool, a (2B x 2B) similarity matrix and the
drawing of its noise (`flops_per_step(2 * B, length)` counts the matrix products, the timing measures it all).
"""
import minigrad
from minigrad.backend import np
from book.metrics.rouge import rouge_scores
from book.experiments.pretraining_objectives import Pretrainer, evaluate_probe, sequences
from book.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from book.data.padding import pad_rows
from book.objectives.bart import apply_span_infilling, denoising_batch, draw_span_infilling
from book.objectives.e2s2 import E2S2Model, draw_and_apply_noise
from book.objectives.mlm import IGNORE_INDEX

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def seq2seq_config(config, special):
    """The encoder-decoder of chapter 02 sized by an EncoderConfig (width, layers per side, heads; FFN 4 x width,
    no dropout), with the tokenizer's [PAD], and [CLS] / [SEP] as bos / eos."""
    return Seq2SeqConfig(src_vocab_size=special.vocab_size, tgt_vocab_size=special.vocab_size,
                         d_model=config.hidden_size, nhead=config.num_attention_heads,
                         num_encoder_layers=config.num_hidden_layers, num_decoder_layers=config.num_hidden_layers,
                         dim_feedforward=4 * config.hidden_size, dropout=0.0, pad_id=special.pad,
                         bos_id=special.cls, eos_id=special.sep)


def infill(rows, rng, special):
    """Text infilling (rate 0.15, Poisson(3) spans) of each 1-D row: a list of corrupted rows."""
    return [apply_span_infilling(row, draw_span_infilling(len(row), rng), special.mask) for row in rows]


class BartPretrainer(Pretrainer):
    """BART's text infilling, two views per sequence (see the module docstring). `step(ids, rng)` takes
    windows framed as [CLS] x [SEP] (pretraining_objectives.sequences); the model reads [CLS] x~ [SEP]."""
    name = "BART"

    def __init__(self, config, special, seed=0):
        minigrad.manual_seed(seed)
        super().__init__(self.build(seq2seq_config(config, special)), config, special)

    def build(self, seq2seq_config):
        return Seq2SeqTransformer(seq2seq_config)

    @property
    def seq2seq(self):
        return self.model

    def batch(self, originals, corrupted):
        s = self.special
        return [minigrad.tensor(a) for a in denoising_batch(originals, corrupted, s.pad, s.cls, s.sep)]

    def loss(self, ids, rng):
        originals = list(ids[:, 1:-1])                                          # B rows without the framing
        first, second = (self.model(*self.batch(originals, infill(originals, rng, self.special)))[1]
                         for _ in range(2))                                     # two views, one pass each
        return 0.5 * first + 0.5 * second, {}

    def hidden(self, ids):
        return self.seq2seq.encode(minigrad.tensor(ids))                        # (B, T, H)

    def encoders(self):
        """The encoder's layers, and the decoder's (self- and cross-attention: twice the attention cost)."""
        return [(self.config.hidden_size, self.config.num_hidden_layers),
                (self.config.hidden_size, 2 * self.config.num_hidden_layers)]

    def load_seq2seq(self, state_dict):
        """Continue from given encoder-decoder weights (a common warm start)."""
        self.seq2seq.load_state_dict(state_dict)


class E2S2Pretrainer(BartPretrainer):
    """E2S2: a mask-only view and a noisy view of each sequence, E2S2Model's weighted loss. Built from the same
    seed, its encoder-decoder starts from exactly BART's weights."""
    name = "E2S2"

    def build(self, seq2seq_config):
        return E2S2Model(seq2seq_config)

    @property
    def seq2seq(self):
        return self.model.seq2seq

    def loss(self, ids, rng):
        s = self.special
        originals = list(ids[:, 1:-1])
        masked = infill(originals, rng, s)                                      # the mask-only views
        noisy, labels = zip(*[draw_and_apply_noise(row, rng, num_ordinary=min(s.all)) for row in masked])
        noisy_src, tgt_in, targets = self.batch(originals, noisy)
        masked_src = self.batch(originals, masked)[0]
        framed = [np.concatenate([[0], row, [0]]) for row in labels]           # [CLS] and [SEP]: label "kept"
        out = self.model(noisy_src, masked_src, tgt_in, targets,
                         minigrad.tensor(pad_rows(framed, IGNORE_INDEX, noisy_src.shape[1])))
        return out.loss, {name: float(value.item()) for name, value in zip(out._fields[1:], out[1:])}


# ---- evaluation ----------------------------------------------------------------------------------

def denoising_loss(trainer, windows, seed=0, batch_size=64):
    """The decoder's mean cross-entropy (nats per target token) reconstructing `windows` (N, L) framed by
    [CLS] ... [SEP] from their text infilling, drawn from np.random.default_rng(seed): the same corruptions
    for every model. Teacher forcing, no gradient."""
    rng, total, count = np.random.default_rng(seed), 0.0, 0
    trainer.model.eval()
    with minigrad.no_grad():
        for start in range(0, len(windows), batch_size):
            originals = list(windows[start:start + batch_size, 1:-1])
            src, tgt_in, targets = trainer.batch(originals, infill(originals, rng, trainer.special))
            _, loss = trainer.seq2seq(src, tgt_in, targets)
            tokens = int((targets.data != trainer.special.pad).sum())
            total, count = total + loss.item() * tokens, count + tokens
    return total / count


def reconstructions(trainer, windows, decode, seed=0):
    """(corrupted texts, greedy reconstructions, original texts) of `windows` (N, L) framed by [CLS] ... [SEP]:
    the model decodes greedily from its text infilling (np.random.default_rng(seed)) up to L - 1 tokens.
    decode: list of ids -> str."""
    s = trainer.special
    originals = list(windows[:, 1:-1])
    corrupted = infill(originals, np.random.default_rng(seed), s)
    src = trainer.batch(originals, corrupted)[0]
    trainer.model.eval()
    out = trainer.seq2seq.greedy_decode(src, max_len=windows.shape[1] - 1).data         # (N, <= L - 1)
    texts = [decode([int(i) for i in row if i not in s.all]) for row in out]
    shown = [decode([int(i) for i in row if i != s.mask]).replace("\n", " ") for row in corrupted]
    return shown, texts, [decode([int(i) for i in row]) for row in originals]


def mean_rouge(predictions, targets):
    """{rouge type: mean F1 over the pairs}."""
    scores = [rouge_scores(t, p) for t, p in zip(targets, predictions)]
    return {k: float(np.mean([s[k].fmeasure for s in scores])) for k in ROUGE_TYPES}


def evaluate(trainer, probes, evaluation):
    """{"probe" {task: accuracy}, "denoising": loss, "rouge" {type: mean F1}} of the model as it is now:
    every probe ({task: ProbeData}, frozen encoder), and on evaluation = (windows, decode) the denoising loss
    and the mean ROUGE F1 of greedy reconstructions."""
    windows, decode = evaluation
    _, predicted, originals = reconstructions(trainer, windows, decode)
    return {"probe": {task: evaluate_probe(trainer, probe) for task, probe in probes.items()},
            "denoising": denoising_loss(trainer, windows), "rouge": mean_rouge(predicted, originals)}


def train(trainer, stream, steps, batch_size, length, seed, checkpoints=(), on_checkpoint=None):
    """`steps` updates on sequences(stream, batch_size, length, ...) from np.random.default_rng(seed) (the same
    batches for every arm; corruptions from a second generator, seed + 10_000). After each step in checkpoints,
    on_checkpoint(step). Returns (losses per step, the other loss terms per step)."""
    data_rng, corruption_rng = np.random.default_rng(seed), np.random.default_rng(seed + 10_000)
    losses, terms = [], []
    for step in range(1, steps + 1):
        stats = trainer.step(sequences(stream, batch_size, length, data_rng, trainer.special), corruption_rng)
        losses.append(stats.pop("loss"))
        terms.append(stats)
        if step in checkpoints:
            on_checkpoint(step)
    return losses, terms


def pretrain_and_evaluate(trainer, stream, probes, evaluation, steps, checkpoints, batch_size, length, seed):
    """Train (see `train`) and `evaluate` after each step in checkpoints (>= 1). Returns {"step", "probe"
    {task: []}, "denoising", "rouge" {type: []}, "seconds" (training time at each checkpoint), "loss" (per
    step), "terms" (per step: each term of the loss, E2S2 only)}."""
    history = {"step": [], "probe": {task: [] for task in probes}, "denoising": [],
               "rouge": {k: [] for k in ROUGE_TYPES}, "seconds": []}

    def record(step):
        result = evaluate(trainer, probes, evaluation)
        history["step"].append(step)
        history["seconds"].append(trainer.seconds)
        history["denoising"].append(result["denoising"])
        for task, accuracy in result["probe"].items():
            history["probe"][task].append(accuracy)
        for k, value in result["rouge"].items():
            history["rouge"][k].append(value)
    history["loss"], history["terms"] = train(trainer, stream, steps, batch_size, length, seed, checkpoints, record)
    return history
