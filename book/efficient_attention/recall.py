"""The recall experiments of chapter 07: the models and training loops of MQAR (notebook 02) and of gapped recall
(notebook 04), and the chapter's method list for its figures.

CHAPTER_METHODS is the one list every notebook of the chapter builds its `book.plotting.Palette` from, so a
family of mixers has one colour in every figure: softmax attention in any implementation (naive, tiled, torch,
full attention, MHA and its grouped variants), the sliding window (local attention), linear attention (elu+1,
decay-free TransNormer, the naive T x T form), BASED, TransNormer / Lightning attention (with decay), routing,
LSSA and LSSAR. Variants inside one family are told apart by line style and marker in each figure.
"""
import time
from dataclasses import dataclass

import minigrad as mg
from minigrad import nn, optim
from minigrad.backend import np
from minigrad.nn import functional as F
from minigrad.nn.linear_attention import linear_attention
from minigrad.nn.utils import clip_grad_norm_
from book.data.gapped_recall import IGNORE as RECALL_IGNORE
from book.data.gapped_recall import gapped_recall_batch
from book.data.mqar import IGNORE, mqar_batch
from book.efficient_attention.based import ShortConvolution
from book.efficient_attention.diffqkv import DiffQKVAttention
from book.efficient_attention.routing import RoutingAttention

CHAPTER_METHODS = ["softmax", "sliding window", "linear attention", "routing", "LSSA", "TransNormer", "LSSAR", "BASED"]


# ---------------------------------------------------------------------------------------------------- MQAR (02)

class EluLinearAttention(nn.Module):
    """Projections around linear_attention(feature_map="elu"): q and k to feature_dim per head, v to E / H."""

    def __init__(self, embed_dim, num_heads, feature_dim):
        super().__init__()
        self.num_heads, self.head_dim, self.feature_dim = num_heads, embed_dim // num_heads, feature_dim
        self.proj_q = nn.Linear(embed_dim, num_heads * feature_dim, bias=False)
        self.proj_k = nn.Linear(embed_dim, num_heads * feature_dim, bias=False)
        self.proj_v = nn.Linear(embed_dim, embed_dim, bias=False)
        self.proj_o = nn.Linear(embed_dim, embed_dim, bias=False)

    def forward(self, x):
        B, T, E = x.shape

        def heads(t):
            return t.reshape(B, T, self.num_heads, -1).transpose(1, 2)           # (B, H, T, d)
        y = linear_attention(heads(self.proj_q(x)), heads(self.proj_k(x)), heads(self.proj_v(x)),
                             feature_map="elu", causal=True)                     # (B, H, T, Dh)
        return self.proj_o(y.transpose(1, 2).reshape(B, T, E))

    def state_size(self):
        """H F (Dh + 1): S (F, Dh) and z (F,) per head; F = feature_dim for elu + 1."""
        return self.num_heads * self.feature_dim * (self.head_dim + 1)


class MQARBlock(nn.Module):
    """x + conv(ln(x)), then x + mixer(ln(x)); conv_kernel=None drops the convolution (the ablation)."""

    def __init__(self, embed_dim, mixer, conv_kernel):
        super().__init__()
        self.ln_conv, self.ln_mix, self.mixer = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim), mixer
        self.conv = ShortConvolution(embed_dim, conv_kernel) if conv_kernel else None

    def forward(self, x):
        if self.conv is not None:
            x = x + self.conv(self.ln_conv(x))                                   # (B, T, E)
        return x + self.mixer(self.ln_mix(x))                                    # (B, T, E)

    def state_size(self, seq_len):
        """Floats carried per decoding step: the conv's last kernel-1 inputs + the mixer's state (its KV cache
        after seq_len - 1 tokens for softmax attention)."""
        conv = 0 if self.conv is None else (self.conv.kernel_size - 1) * self.conv.channels
        if isinstance(self.mixer, DiffQKVAttention):
            return conv + self.mixer.kv_cache_size(seq_len - 1)
        return conv + self.mixer.state_size()


class MQARModel(nn.Module):
    """embedding (+ learned positions) -> n_layer blocks -> ln -> head; make_mixer() builds each layer's mixer."""

    def __init__(self, vocab_size, embed_dim, make_mixer, seq_len, n_layer=2, conv_kernel=3, learned_positions=False):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, embed_dim)
        self.wpe = nn.Embedding(seq_len, embed_dim) if learned_positions else None
        self.blocks = nn.ModuleList([MQARBlock(embed_dim, make_mixer(), conv_kernel) for _ in range(n_layer)])
        self.ln_f, self.head = nn.LayerNorm(embed_dim), nn.Linear(embed_dim, vocab_size)

    def forward(self, idx):
        x = self.wte(idx)                                                        # (B, T, E)
        if self.wpe is not None:
            x = x + self.wpe(mg.arange(idx.shape[1]))                            # (B, T, E)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))                                           # (B, T, V)

    def state_size(self, seq_len):
        return sum(block.state_size(seq_len) for block in self.blocks)


@dataclass(frozen=True)
class MQARSetup:
    """The task and the training recipe of notebook 02, the same for every model."""
    vocab: int = 64
    seq_len: int = 64
    num_kv: int = 8
    embed: int = 64
    conv_kernel: int = 3
    steps: int = 400
    batch: int = 16
    lr: float = 3e-3
    eval_n: int = 256


def train_mqar(setup, make_mixer, seed, conv_kernel="default", learned_positions=False):
    """Train on fresh batches from a seeded Generator (the same batches for every model of a seed).
    Returns a dict: accuracy at the queries of eval_n held-out sequences, the fraction of those answers that are
    one of the sequence's values, the training curve (query accuracy of each batch), the state, the seconds."""
    start = time.perf_counter()
    mg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    kernel = setup.conv_kernel if conv_kernel == "default" else conv_kernel
    model = MQARModel(setup.vocab, setup.embed, make_mixer, setup.seq_len, conv_kernel=kernel,
                      learned_positions=learned_positions)
    opt = optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=0.1)
    sched = optim.lr_scheduler.get_cosine_schedule_with_warmup(opt, max(1, setup.steps // 10), setup.steps)
    curve = []
    for _ in range(setup.steps):
        batch = mqar_batch(rng, setup.batch, setup.seq_len, setup.num_kv, setup.vocab)
        logits = model(mg.tensor(batch.inputs))                                  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, setup.vocab), mg.tensor(batch.targets.reshape(-1)),
                               ignore_index=IGNORE)
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        asked = batch.targets != IGNORE                                          # (B, T)
        curve.append(float((logits.data.argmax(-1)[asked] == batch.targets[asked]).mean()))
    test = mqar_batch(np.random.default_rng(10_000 + seed), setup.eval_n, setup.seq_len, setup.num_kv, setup.vocab)
    with mg.no_grad():
        pred = model(mg.tensor(test.inputs)).data.argmax(-1)                     # (N, T)
    asked = test.targets != IGNORE                                               # (N, T)
    in_context = (pred[:, :, None] == test.values[:, None, :]).any(-1)           # (N, T) one of the sequence's values
    return dict(accuracy=float((pred[asked] == test.targets[asked]).mean()), in_context=float(in_context[asked].mean()),
                curve=np.array(curve), state=int(model.state_size(setup.seq_len)),
                seconds=time.perf_counter() - start)


# ------------------------------------------------------------------------------------------ gapped recall (04)

@dataclass(frozen=True)
class RecallSetup:
    """The gapped-recall task and the training recipe of notebook 04, the same for every model."""
    seq_len: int = 128
    num_pairs: int = 4
    min_gap: int = 48
    num_keys: int = 16
    num_values: int = 16
    num_fillers: int = 16
    embed: int = 64
    steps: int = 600
    eval_every: int = 100
    eval_n: int = 256
    batch: int = 16
    lr: float = 1e-2
    decay: float = 0.99

    @property
    def vocab(self):
        return self.num_keys + self.num_values + self.num_fillers

    def batch_of(self, rng, n):
        return gapped_recall_batch(rng, n, self.seq_len, self.num_pairs, self.min_gap, self.num_keys,
                                   self.num_values, self.num_fillers)


class RecallModel(nn.Module):
    """(token + previous-token) embeddings -> x + attn(ln x) -> x + mlp(ln x) -> ln -> head."""

    def __init__(self, vocab, embed, mixer):
        super().__init__()
        self.vocab = vocab
        self.wte, self.wprev = nn.Embedding(vocab, embed), nn.Embedding(vocab + 1, embed)  # + 1: "no previous"
        self.ln_1, self.mixer, self.ln_2 = nn.LayerNorm(embed), mixer, nn.LayerNorm(embed)
        self.fc, self.proj = nn.Linear(embed, 4 * embed), nn.Linear(4 * embed, embed)
        self.ln_f, self.head = nn.LayerNorm(embed), nn.Linear(embed, vocab)

    def forward(self, idx):
        previous = np.concatenate([np.full((idx.shape[0], 1), self.vocab), idx[:, :-1]], axis=1)   # (B, T)
        x = self.wte(mg.tensor(idx)) + self.wprev(mg.tensor(previous))           # (B, T, E)
        x = x + self.mixer(self.ln_1(x))
        x = x + self.proj(F.gelu(self.fc(self.ln_2(x))))
        return self.head(self.ln_f(x))                                           # (B, T, V)


def recall_accuracy(model, batch):
    """Accuracy at the query positions of a gapped-recall batch."""
    with mg.no_grad():
        pred = model(batch.inputs).data.argmax(-1)                               # (N, T)
    asked = batch.targets != RECALL_IGNORE
    return float((pred[asked] == batch.targets[asked]).mean())


def train_recall(setup, make_mixer, seed):
    """Train one model with the attention `make_mixer()`; returns (model, {step: held-out accuracy}, seconds/step).
    Seed s fixes the weights, the training batches and the held-out set (generator 10000 + s)."""
    mg.manual_seed(seed)
    rng, test = np.random.default_rng(seed), setup.batch_of(np.random.default_rng(10_000 + seed), setup.eval_n)
    model = RecallModel(setup.vocab, setup.embed, make_mixer())
    routing = isinstance(model.mixer, RoutingAttention)
    opt = optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=0.1)
    sched = optim.lr_scheduler.get_cosine_schedule_with_warmup(opt, max(1, setup.steps // 10), setup.steps)
    curve, seconds = {}, 0.0
    for step in range(1, setup.steps + 1):
        start = time.perf_counter()
        batch = setup.batch_of(rng, setup.batch)
        logits = model(batch.inputs)                                             # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, setup.vocab), mg.tensor(batch.targets.reshape(-1)),
                               ignore_index=RECALL_IGNORE)
        if routing:
            loss = loss + model.mixer.commitment_loss
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if routing:
            model.mixer.update_centroids(setup.decay)                            # EMA step, outside autograd
        seconds += time.perf_counter() - start
        if step % setup.eval_every == 0:
            curve[step] = recall_accuracy(model, test)
    return model, curve, seconds / setup.steps
