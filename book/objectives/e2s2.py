"""E2S2, from E2S2: Encoding-Enhanced Sequence-to-Sequence Pretraining for Language Understanding and Generation
(Zhong et al., 2022, arXiv:2205.14912): BART's denoising, plus two objectives on the ENCODER's output.

Two views of every sequence x (book.objectives.bart for the text infilling):

    mask-only view  x^m = infill(x)                          (BART's text infilling: rate 0.15, Poisson(3) spans)
    noisy view      x^n = replace(shuffle(x^m))              non-overlapping trigrams of x^m (no [MASK] inside)
                                                             put in a random non-identity order, label 1; then
                                                             15% of the remaining tokens replaced by a uniformly
                                                             random different id, label 2; every other token 0
    denoising       L_det = CE(Linear(d, 3)(h^n_t), label_t) averaged over all non-padding tokens of x^n
    contrastive     z^n, z^m = the mean over non-padding positions of the encoder states h^n, h^m   (B, d)
                    L_cl = NT-Xent(z^n, z^m): the 2B unit vectors u_i, s_ij = u_i . u_j / tau, and for each i
                           -log( exp(s_i,pos(i)) / sum_{j != i} exp(s_ij) ), pos(i) = its other view, averaged
                           over the 2B (SimCLR's loss; the other 2B - 2 sequences are the in-batch negatives)
    decoder         L_dec(v) = -mean_t log p(x_t | x_<t, encoder(v))  (the decoder reconstructs x from either view)
    total           L = 0.5 L_dec(x^n) + 0.5 L_dec(x^m) + 0.05 L_cl + 0.05 L_det

The shuffle rate is not given in the paper; here 15% of the tokens (round(0.15 n / 3) trigrams), as for the
replacement. A mask token or a special token is never shuffled or replaced; its label is "kept" (0).

The official code's bug, not replicated: its criterion computes the detection loss with
cross_entropy(..., ignore_index=padding_idx), and fairseq's padding index is 1, the label of "shuffled". So the
shuffled class never contributes to the loss, and the head is never taught to recognise it. Here the padding
positions get IGNORE_INDEX = -100 and all three classes count; `class_counts(labels, ignore_index)` shows how
many labels of each class a loss would see under either choice.
"""
from collections import namedtuple
from itertools import permutations

import minigrad
from minigrad import backend, nn
from minigrad.backend import np
from minigrad.nn import functional as F
from book.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from book.models.bert import mean_pooling
from book.objectives.mlm import IGNORE_INDEX

KEPT, SHUFFLED, REPLACED = 0, 1, 2
OFFICIAL_IGNORE_INDEX = 1                                # fairseq's padding id, used by the official criterion
LOSS_WEIGHTS = (0.5, 0.5, 0.05, 0.05)                    # L_dec(noisy), L_dec(mask-only), L_cl, L_det
ORDERS = np.array([p for p in permutations(range(3)) if p != (0, 1, 2)], dtype=np.int64)  # (5, 3)

TrigramDraws = namedtuple("TrigramDraws", ["starts", "orders"])
TrigramDraws.__doc__ = """starts int64 (k,): increasing, at least 3 apart, the first position of each shuffled
trigram; orders int64 (k,): which of the 5 non-identity orders (ORDERS[o]) each trigram gets: position
starts + i receives the token from starts + ORDERS[o][i]."""
ReplacementDraws = namedtuple("ReplacementDraws", ["positions", "ids"])
ReplacementDraws.__doc__ = "positions int64 (r,) to replace, and their new ids int64 (r,)."


# ---- the noisy view -----------------------------------------------------------------------------

def draw_trigram_shuffle(can_shuffle, rng, rate=0.15):
    """TrigramDraws: round(rate * n / 3) non-overlapping trigrams (fewer if they do not fit) among the windows
    whose three positions all have can_shuffle (bool (n,)), taken in a random order; each gets a random order."""
    can_shuffle = np.asarray(can_shuffle, dtype=bool)
    n = len(can_shuffle)
    windows = np.flatnonzero(can_shuffle[:-2] & can_shuffle[1:-1] & can_shuffle[2:]) if n >= 3 else []
    taken, used = [], np.zeros(n, dtype=bool)
    for start in rng.permutation(windows).tolist():
        if len(taken) == round(rate * n / 3):
            break
        if not used[start:start + 3].any():
            taken.append(start)
            used[start:start + 3] = True
    starts = np.sort(np.array(taken, dtype=np.int64))
    return TrigramDraws(starts, rng.integers(0, len(ORDERS), size=len(starts)).astype(np.int64))


def apply_trigram_shuffle(tokens, draws: TrigramDraws):
    """(shuffled tokens int64 (n,), labels int64 (n,)): SHUFFLED on the three positions of each shuffled
    trigram, KEPT elsewhere."""
    tokens = np.asarray(tokens, dtype=np.int64)
    starts, orders = np.asarray(draws.starts, dtype=np.int64), np.asarray(draws.orders, dtype=np.int64)
    if starts.shape != orders.shape or (len(starts) and (starts[0] < 0 or starts[-1] + 3 > len(tokens)
                                                        or (np.diff(starts) < 3).any())):
        raise ValueError(f"apply_trigram_shuffle: need increasing trigram starts at least 3 apart within "
                         f"{len(tokens)} tokens and one order each, got starts {starts.tolist()}, orders "
                         f"{orders.tolist()}")
    out, labels = tokens.copy(), np.full(len(tokens), KEPT, dtype=np.int64)
    for start, order in zip(starts.tolist(), orders.tolist()):
        out[start:start + 3] = tokens[start + ORDERS[order]]
        labels[start:start + 3] = SHUFFLED
    return out, labels


def draw_replacement(can_replace, tokens, rng, num_ordinary, rate=0.15):
    """ReplacementDraws: round(rate * c) of the c positions with can_replace, each given a uniformly random id
    in [0, num_ordinary) other than its own token ((token + U{1..num_ordinary-1}) mod num_ordinary)."""
    candidates = np.flatnonzero(np.asarray(can_replace, dtype=bool))
    positions = np.sort(rng.choice(candidates, size=round(rate * len(candidates)), replace=False))
    offsets = rng.integers(1, num_ordinary, size=len(positions))
    ids = (np.asarray(tokens, dtype=np.int64)[positions] + offsets) % num_ordinary
    return ReplacementDraws(positions.astype(np.int64), ids.astype(np.int64))


def apply_replacement(tokens, labels, draws: ReplacementDraws):
    """(tokens, labels) with draws.ids written at draws.positions, whose labels become REPLACED."""
    tokens, labels = np.array(tokens, dtype=np.int64), np.array(labels, dtype=np.int64)
    tokens[draws.positions] = draws.ids
    labels[draws.positions] = REPLACED
    return tokens, labels


def draw_and_apply_noise(masked, rng, num_ordinary, shuffle_rate=0.15, replace_rate=0.15):
    """The noisy view of one mask-only sequence (1-D ids): trigram shuffle, then replacement, on the ordinary
    tokens (ids < num_ordinary: never [MASK] or another special id). Returns (noisy ids, labels)."""
    masked = np.asarray(masked, dtype=np.int64)
    ordinary = masked < num_ordinary
    shuffled, labels = apply_trigram_shuffle(masked, draw_trigram_shuffle(ordinary, rng, shuffle_rate))
    draws = draw_replacement(ordinary & (labels == KEPT), shuffled, rng, num_ordinary, replace_rate)
    return apply_replacement(shuffled, labels, draws)


def class_counts(labels, ignore_index=IGNORE_INDEX):
    """int64 (3,): how many labels of each class a cross-entropy with this ignore_index would count.
    With the official ignore_index = 1, the SHUFFLED count is 0 whatever the data."""
    labels = np.asarray(labels)
    return np.bincount(labels[(labels != ignore_index) & (labels >= 0)], minlength=3)[:3].astype(np.int64)


# ---- the losses ---------------------------------------------------------------------------------

def detection_loss(logits, labels):
    """Token-level 3-class cross-entropy: logits (B, S, 3), labels (B, S) with IGNORE_INDEX on padding."""
    B, S, K = logits.shape
    if K != 3 or tuple(labels.shape) != (B, S):
        raise ValueError(f"detection_loss: expected logits (B, S, 3) and labels (B, S), got {logits.shape} and "
                         f"{labels.shape}")
    return F.cross_entropy(logits.reshape(B * S, K), labels.reshape(B * S), ignore_index=IGNORE_INDEX)


def nt_xent(z1, z2, temperature=0.1):
    """SimCLR's NT-Xent of two views (B, C) each: row i of z1 and row i of z2 are positives, all other rows of
    both views negatives. Mean over the 2B rows."""
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(f"nt_xent: expected two views of shape (B, C) with B >= 2, got {z1.shape} and {z2.shape}")
    B = z1.shape[0]
    u = F.normalize(minigrad.cat([z1, z2], dim=0), dim=1)                     # (2B, C) unit vectors
    xp = backend.array_module(u.data)
    similarity = (u @ u.transpose(0, 1)) / temperature                        # (2B, 2B)
    similarity = similarity.masked_fill(xp.eye(2 * B, dtype=bool), float("-inf"))   # i is not its own negative
    positives = xp.concatenate([xp.arange(B, 2 * B), xp.arange(B)]).astype(backend.int64)  # (2B,)
    return F.cross_entropy(similarity, minigrad.tensor(positives))


E2S2Losses = namedtuple("E2S2Losses", ["loss", "decoder_noisy", "decoder_masked", "contrastive", "detection"])


class E2S2Model(nn.Module):
    """The encoder-decoder of chapter 02 (`seq2seq`, built first, so that one seed gives BART and E2S2 the same
    initial weights) plus E2S2's token detection head Linear(d_model, 3) on the encoder's output."""

    def __init__(self, config: Seq2SeqConfig, temperature=0.1, weights=LOSS_WEIGHTS):
        super().__init__()
        self.seq2seq = Seq2SeqTransformer(config)
        self.detection_head = nn.Linear(config.d_model, 3)
        self.temperature, self.weights = temperature, weights

    def forward(self, noisy_src, masked_src, tgt_in, targets, detection_labels):
        """E2S2Losses of a batch: noisy_src (B, S1) with detection_labels (B, S1) (IGNORE_INDEX on padding),
        masked_src (B, S2), and the decoder's tgt_in / targets (B, T) (padding = pad_id)."""
        model, pad = self.seq2seq, self.seq2seq.config.pad_id
        if tuple(detection_labels.shape) != tuple(noisy_src.shape):
            raise ValueError(f"E2S2Model: detection_labels {detection_labels.shape} must match noisy_src "
                             f"{noisy_src.shape}")
        B, T = targets.shape
        decoder_losses, pooled = [], []
        for src in (noisy_src, masked_src):
            memory = model.encode(src)                                            # (B, S, C)
            logits = model.decode(tgt_in, memory, src)                            # (B, T, V)
            decoder_losses.append(F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T),
                                                  ignore_index=pad))
            pooled.append(mean_pooling(memory, src.data != pad))                     # (B, C)
            if src is noisy_src:
                detection = detection_loss(self.detection_head(memory), detection_labels)
        contrastive = nt_xent(pooled[0], pooled[1], self.temperature)
        w = self.weights
        loss = w[0] * decoder_losses[0] + w[1] * decoder_losses[1] + w[2] * contrastive + w[3] * detection
        return E2S2Losses(loss, decoder_losses[0], decoder_losses[1], contrastive, detection)
