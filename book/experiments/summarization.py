"""Training and evaluation loops of the summarization chapter: seq2seq with attention, the NSE and the hierarchical
NSE (book.models.seq2seq_attention, book.models.nse) on the highlighted-sentence documents of
book.data.highlight_documents, trained by maximum likelihood (teacher forcing) and scored by ROUGE
(book.metrics.rouge) on greedy decodes.
"""
import time
from dataclasses import dataclass, field

import minigrad
from minigrad.backend import np
from book.data.highlight_documents import highlight_documents, ids_to_text
from book.metrics.rouge import rouge_scores
from book.models.nse import NSESummarizer, summarization_nll
from book.models.seq2seq_attention import Seq2SeqAttention

ARMS = ("seq2seq + attention", "NSE", "hierarchical NSE")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


def make_summarizer(arm, vocab_size, hidden_size, seed=0):
    """One of ARMS with its parameters drawn from a Generator seeded by `seed`."""
    generator = minigrad.Generator().manual_seed(seed)
    if arm == "seq2seq + attention":
        return Seq2SeqAttention(vocab_size, hidden_size, generator=generator)
    if arm in ("NSE", "hierarchical NSE"):
        return NSESummarizer(vocab_size, hidden_size, hierarchical=arm == "hierarchical NSE", generator=generator)
    raise ValueError(f"make_summarizer: unknown arm {arm!r}, expected one of {ARMS}")


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def hidden_for_budget(arm, vocab_size, budget):
    """The width whose parameter count is closest to `budget` (so the arms compare at equal size): a bisection, the
    count growing with the width."""
    count = lambda h: count_parameters(make_summarizer(arm, vocab_size, h))  # noqa: E731
    low, high = 1, 512
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) <= budget else (low, middle)
    return min((low, high), key=lambda h: abs(count(h) - budget))


@dataclass
class TrainResult:
    model: object
    losses: list = field(default_factory=list)
    seconds: float = 0.0


def train_summarizer(model, rng, steps, batch_size, num_sentences, learning_rate, vocab_size, cue="topic",
                     grad_clip=1.0):
    """Adam on the summary's negative log-likelihood, a fresh batch of documents (from rng) at every step."""
    optimizer = minigrad.optim.Adam(model.parameters(), lr=learning_rate)
    result, start = TrainResult(model), time.perf_counter()
    for _ in range(steps):
        batch = highlight_documents(rng, batch_size, num_sentences, vocab_size, cue=cue)
        loss = summarization_nll(model(batch.src, batch.sentence_ids, batch.tgt_in), batch.targets)
        optimizer.zero_grad()
        loss.backward()
        minigrad.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        result.losses.append(loss.item())
    result.seconds = time.perf_counter() - start
    return result


def evaluation_documents(num_sentences, eval_size, vocab_size, cue="topic"):
    """The fixed evaluation documents of one length (their own seed, 10_000 + num_sentences): the same for every arm."""
    return highlight_documents(np.random.default_rng(10_000 + num_sentences), eval_size, num_sentences, vocab_size,
                               cue=cue)


def rouge_of_decodes(model, batch, max_len=None):
    """Greedy decodes of a batch scored against its reference summaries: mean F1 of ROUGE-1, -2, -L."""
    max_len = max_len or batch.targets.shape[1] + 4
    decoded = model.greedy_decode(batch.src, batch.sentence_ids, max_len)
    scores = [rouge_scores(ids_to_text(target), ids_to_text(prediction))
              for target, prediction in zip(batch.targets, decoded)]
    return {key: float(np.mean([s[key].fmeasure for s in scores])) for key in ROUGE_KEYS}


def rouge_l_rewards(targets, decoded):
    """ROUGE-L F1 of each decoded row against its target row, (B,)."""
    return np.array([rouge_scores(ids_to_text(t), ids_to_text(d))["rougeL"].fmeasure for t, d in zip(targets, decoded)])


def self_critical_loss(model, batch, uniforms):
    """Self-critical sequence training (Rennie et al., 2017, arXiv:1612.00563) with a ROUGE-L reward, as the
    summarization paper fine-tunes: sample y^s (the draws `uniforms` (B, L) passed in), decode greedily y^g, and
    minimize  -(R(y^s) - R(y^g)) log P(y^s)  averaged over the batch; the greedy summary's reward is the baseline, so
    only samples that beat the model's own greedy output are reinforced. -> (loss, sampled rewards, greedy rewards)."""
    greedy = model.greedy_decode(batch.src, batch.sentence_ids, uniforms.shape[1])
    sampled, log_p = model.sample_decode(batch.src, batch.sentence_ids, uniforms)      # (B, L), (B,)
    r_sample, r_greedy = rouge_l_rewards(batch.targets, sampled), rouge_l_rewards(batch.targets, greedy)
    advantage = minigrad.tensor((r_sample - r_greedy).astype(log_p.dtype))
    return -(advantage * log_p).mean(), r_sample, r_greedy


def self_critical_finetune(model, rng, steps, batch_size, num_sentences, learning_rate, vocab_size, draw_rng,
                           cue="topic"):
    """Adam on self_critical_loss: documents from rng (as train_summarizer draws them), the sampling draws from
    draw_rng. -> the greedy summaries' mean reward at each step."""
    optimizer = minigrad.optim.Adam(model.parameters(), lr=learning_rate)
    greedy_rewards = []
    for _ in range(steps):
        batch = highlight_documents(rng, batch_size, num_sentences, vocab_size, cue=cue)
        loss, _, r_greedy = self_critical_loss(model, batch, draw_rng.random((batch_size, batch.targets.shape[1] + 4)))
        optimizer.zero_grad()
        loss.backward()
        minigrad.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        greedy_rewards.append(float(r_greedy.mean()))
    return greedy_rewards


def compare_finetuning(models, arm, hidden_size, steps, batch_size, num_sentences, learning_rate, vocab_size,
                       eval_batch, seed=1000):
    """Each trained model continued two ways on the same documents: `steps` more steps of maximum likelihood, or of
    self-critical RL. -> {"before" | "MLE" | "self-critical": ROUGE-L F1 on eval_batch per model}."""
    out = {"before": [], "MLE": [], "self-critical": []}
    for k, model in enumerate(models):
        out["before"].append(rouge_of_decodes(model, eval_batch)["rougeL"])
        for how in ("MLE", "self-critical"):
            copy = make_summarizer(arm, vocab_size, hidden_size)
            copy.load_state_dict(model.state_dict())
            rng = np.random.default_rng(seed + k)
            if how == "MLE":
                train_summarizer(copy, rng, steps, batch_size, num_sentences, learning_rate, vocab_size)
            else:
                self_critical_finetune(copy, rng, steps, batch_size, num_sentences, learning_rate, vocab_size,
                                       np.random.default_rng(seed + 100 + k))
            out[how].append(rouge_of_decodes(copy, eval_batch)["rougeL"])
    return {how: np.array(v) for how, v in out.items()}


def compare_summarizers(arms, seeds, hidden_sizes, train_lengths, eval_lengths, steps, batch_size, learning_rate,
                        vocab_size, eval_size, cue="topic", progress=print):
    """Train every arm once per seed on documents of train_lengths sentences, then score each on eval_size fresh
    documents of every length in eval_lengths (the same documents for every arm and seed).
    -> {arm: {"rouge": array (seeds, lengths, 3), "losses": array (seeds, steps), "seconds": [...],
    "models": [one trained model per seed]}}."""
    eval_batches = [evaluation_documents(n, eval_size, vocab_size, cue) for n in eval_lengths]
    results = {}
    for arm in arms:
        rouge, losses, seconds, models = [], [], [], []
        for seed in seeds:
            model = make_summarizer(arm, vocab_size, hidden_sizes[arm], seed)
            trained = train_summarizer(model, np.random.default_rng(seed), steps, batch_size, train_lengths,
                                       learning_rate, vocab_size, cue)
            rouge.append([[rouge_of_decodes(model, b)[k] for k in ROUGE_KEYS] for b in eval_batches])
            losses.append(trained.losses)
            seconds.append(trained.seconds)
            models.append(model)
            progress(f"{arm:>20} seed {seed}: final loss {np.mean(trained.losses[-10:]):.3f}, "
                     f"ROUGE-L {np.round([r[2] for r in rouge[-1]], 3)}, {trained.seconds:.0f} s")
        results[arm] = {"rouge": np.array(rouge), "losses": np.array(losses), "seconds": seconds, "models": models}
    return results
