"""TERA, from TERA: Self-Supervised Learning of Transformer Encoder Representation for Speech (Liu, Li, Lee;
IEEE/ACM TASLP 2021, arXiv:2007.06028): reconstruct acoustic frames from an altered copy.

Three alterations of a spectrogram x (B, T, D), each with its own random draws (s3prl's logMelBase-T-F-M settings):

    time       K_b = round(0.15 T_b / W) spans of W = 7 frames, starts drawn without replacement among the
               T_b - W + 1 starts that keep a span inside the utterance (spans may overlap); per utterance one
               action: 80% zero the spans, 10% replace them with K_b other spans of the same utterance (sources
               drawn the same way), 10% keep them unchanged
    frequency  one band of width w ~ U{0, ..., floor(0.2 D)} bins starting at s ~ U{0, ..., D - w}, zeroed on every
               frame of the utterance
    magnitude  with probability 0.15 per batch, x~ = x~ + n, n ~ N(0, 0.2^2) on every element

    L_TERA = 1/|M| sum_{(b,t,k) in M} | f(x~)_{btk} - x_{btk} |      (L1 on the time spans and the band only)

where M holds the elements of the chosen spans (whatever their action, kept spans included) and of the band;
magnitude noise is not in M (it alters everything, as in s3prl). With overlapping spans and the replace action,
a frame in several spans copies from the last of them (s3prl's index assignment leaves that unspecified).
Differences from s3prl's code, where it departs from the paper's description: s3prl's last valid start is
T - W - 1 (the final frame is never masked) and its band start stops at D - w - 1; we use every start that keeps
the span or band inside. Utterances with nothing in M contribute nothing (s3prl drops them from the batch).

The encoder (`TeraEncoder`): Linear(D, d) + sinusoidal positions -> LayerNorm -> post-LN Transformer encoder
layers (torch.nn.TransformerEncoder's names, GELU); the reconstruction head: Linear(d, d) -> GELU -> LayerNorm ->
Linear(d, D). Padding: `lengths` (B,) real frames; padded frames are never keys, never altered, never in M.
"""
from collections import namedtuple

import minigrad
from minigrad import nn
from minigrad.backend import np
from minigrad.nn import functional as F
from minigrad.nn.positional import sinusoidal_encoding

ZERO, REPLACE, KEEP = 0, 1, 2                 # the time alteration's action per utterance
TERA_SPLIT = (0.8, 0.1, 0.1)

TimeDraws = namedtuple("TimeDraws", ["starts", "sources", "action"])
TimeDraws.__doc__ = """starts, sources: int64 (B, K) span starts and replacement starts, -1 where a row has fewer
than K spans; action: int64 (B,) ZERO, REPLACE or KEEP."""
FrequencyDraws = namedtuple("FrequencyDraws", ["start", "width"])
FrequencyDraws.__doc__ = "start, width: int64 (B,) the zeroed band [start, start + width) of each utterance."
MagnitudeDraws = namedtuple("MagnitudeDraws", ["apply", "noise"])
MagnitudeDraws.__doc__ = "apply: bool, whether this batch gets noise; noise: float (B, T, D), N(0, 0.2^2)."
TeraDraws = namedtuple("TeraDraws", ["time", "frequency", "magnitude"])
TeraDraws.__doc__ = "The three alterations' draws; None switches an alteration off."


def _lengths(op, lengths, B, T):
    lengths = np.full(B, T, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if lengths.shape != (B,) or (lengths < 1).any() or (lengths > T).any():
        raise ValueError(f"{op}: lengths must be (B,) = ({B},) integers in [1, {T}], got {lengths.tolist()}")
    return lengths


def _check_spectrogram(op, x):
    if x.ndim != 3:
        raise ValueError(f"{op}: x must be a spectrogram (B, T, D), got shape {x.shape}")


def num_spans(length, proportion=0.15, span=7):
    """K = round(proportion * length / span), 0 if the utterance is shorter than one span."""
    return int(round(length * proportion / span)) if length >= span else 0


def draw_time_alteration(lengths, rng, proportion=0.15, span=7, split=TERA_SPLIT):
    """TimeDraws for utterances of the given lengths (B,): num_spans starts and as many sources, each a draw
    without replacement among the length - span + 1 valid starts; one action per utterance with probabilities
    split (ZERO, REPLACE, KEEP)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = [num_spans(int(n), proportion, span) for n in lengths]
    K = max(counts, default=0)
    starts = np.full((len(lengths), K), -1, dtype=np.int64)
    sources = np.full((len(lengths), K), -1, dtype=np.int64)
    for b, (n, k) in enumerate(zip(lengths, counts)):
        starts[b, :k] = rng.permutation(int(n) - span + 1)[:k] if k else []
        sources[b, :k] = rng.permutation(int(n) - span + 1)[:k] if k else []
    action = rng.choice(3, size=len(lengths), p=split).astype(np.int64)
    return TimeDraws(starts, sources, action)


def time_alteration(x, draws, span=7):
    """(x~ (B, T, D), frames bool (B, T)): the spans of `draws` zeroed, replaced or kept per utterance; frames marks
    every frame of a chosen span (the loss is computed there whatever the action)."""
    _check_spectrogram("time_alteration", x)
    B, T, _ = x.shape
    starts, sources, action = (np.asarray(a, dtype=np.int64) for a in draws)
    if starts.shape != sources.shape or starts.ndim != 2 or starts.shape[0] != B or action.shape != (B,):
        raise ValueError(f"time_alteration: expected starts and sources (B, K) and action (B,) with B = {B}, got "
                         f"{starts.shape}, {sources.shape}, {action.shape}")
    if (starts + span > T).any() or (sources + span > T).any():
        raise ValueError(f"time_alteration: a span of {span} frames from starts {starts.tolist()} or sources "
                         f"{sources.tolist()} runs past T = {T}")
    frames = np.zeros((B, T), dtype=bool)
    source_frame = np.broadcast_to(np.arange(T), (B, T)).copy()            # (B, T) where each frame is read from
    offsets = np.arange(span)                                               # (W,)
    for k in range(starts.shape[1]):                                        # in order: a later span wins
        rows = np.flatnonzero(starts[:, k] >= 0)
        positions = starts[rows, k, None] + offsets                         # (R, W)
        frames[rows[:, None], positions] = True
        replace = action[rows] == REPLACE
        source_frame[rows[replace, None], positions[replace]] = sources[rows[replace], k, None] + offsets
    altered = np.take_along_axis(x, source_frame[:, :, None], axis=1)       # (B, T, D)
    altered = np.where((frames & (action == ZERO)[:, None])[:, :, None], 0, altered)
    return altered.astype(x.dtype), frames


def draw_frequency_alteration(batch, num_bins, rng, max_fraction=0.2):
    """FrequencyDraws: width uniform in {0, ..., floor(max_fraction * num_bins)}, start uniform in
    {0, ..., num_bins - width}."""
    width = rng.integers(0, int(max_fraction * num_bins) + 1, size=batch)
    start = rng.integers(0, num_bins - width + 1)
    return FrequencyDraws(start.astype(np.int64), width.astype(np.int64))


def frequency_alteration(x, draws, lengths=None):
    """(x~ (B, T, D), band bool (B, T, D)): bins [start, start + width) zeroed on the real frames of each row."""
    _check_spectrogram("frequency_alteration", x)
    B, T, D = x.shape
    start, width = (np.asarray(a, dtype=np.int64) for a in draws)
    if start.shape != (B,) or width.shape != (B,) or (start < 0).any() or (width < 0).any() or \
            (start + width > D).any():
        raise ValueError(f"frequency_alteration: start {start.tolist()} and width {width.tolist()} must be (B,) = "
                         f"({B},) with the band inside D = {D} bins")
    real = np.arange(T) < _lengths("frequency_alteration", lengths, B, T)[:, None]          # (B, T)
    k = np.arange(D)
    in_band = (k >= start[:, None]) & (k < (start + width)[:, None])                         # (B, D)
    band = real[:, :, None] & in_band[:, None, :]                                           # (B, T, D)
    return np.where(band, 0, x).astype(x.dtype), band


def draw_magnitude_alteration(shape, rng, probability=0.15, std=0.2):
    """MagnitudeDraws: one coin for the batch, and the noise (drawn either way, so a seed gives the same stream)."""
    return MagnitudeDraws(bool(rng.random() < probability), rng.normal(0.0, std, size=shape))


def magnitude_alteration(x, draws, lengths=None):
    """x + noise on the real frames if draws.apply, else x."""
    _check_spectrogram("magnitude_alteration", x)
    if not draws.apply:
        return x
    noise = np.asarray(draws.noise)
    if noise.shape != x.shape:
        raise ValueError(f"magnitude_alteration: noise {noise.shape} must have the shape of x {x.shape}")
    real = np.arange(x.shape[1]) < _lengths("magnitude_alteration", lengths, x.shape[0], x.shape[1])[:, None]
    return (x + np.where(real[:, :, None], noise, 0)).astype(x.dtype)


def draw_tera(lengths, shape, rng, time=True, frequency=True, magnitude=True, span=7):
    """TeraDraws for a batch of spectrograms of `shape` (B, T, D) with the given lengths; an alteration that is
    switched off gets None (and consumes no draws)."""
    B, T, D = shape
    return TeraDraws(draw_time_alteration(lengths, rng, span=span) if time else None,
                     draw_frequency_alteration(B, D, rng) if frequency else None,
                     draw_magnitude_alteration(shape, rng) if magnitude else None)


def tera_alteration(x, draws, lengths=None, span=7):
    """(x~ (B, T, D), M bool (B, T, D)): time, then frequency, then magnitude alteration; M = the time spans' frames
    and the frequency band (magnitude noise is not in M)."""
    _check_spectrogram("tera_alteration", x)
    altered, chosen = x, np.zeros(x.shape, dtype=bool)
    if draws.time is not None:
        altered, frames = time_alteration(altered, draws.time, span)
        chosen |= frames[:, :, None]
    if draws.frequency is not None:
        altered, band = frequency_alteration(altered, draws.frequency, lengths)
        chosen |= band
    if draws.magnitude is not None:
        altered = magnitude_alteration(altered, draws.magnitude, lengths)
    return altered, chosen


def tera_l1_loss(prediction, target, chosen):
    """L_TERA: the mean of |prediction - target| over the chosen elements (bool (B, T, D)); 0 if none is chosen."""
    chosen = np.asarray(chosen)
    if prediction.shape != tuple(chosen.shape) or tuple(target.shape) != tuple(chosen.shape):
        raise ValueError(f"tera_l1_loss: prediction {prediction.shape}, target {tuple(target.shape)} and chosen "
                         f"{chosen.shape} must have one shape (B, T, D)")
    target = target if isinstance(target, minigrad.Tensor) else minigrad.tensor(np.asarray(target, prediction.dtype))
    weight = minigrad.tensor(chosen.astype(prediction.dtype))
    return ((prediction - target).abs() * weight).sum() / max(int(chosen.sum()), 1)


class TeraEncoder(nn.Module):
    """forward(x (B, T, D), lengths=None) -> hidden states (B, T, d), or with reconstruct=True the head's
    reconstruction (B, T, D); reconstruct(hidden) -> (B, T, D)."""

    def __init__(self, num_bins, d_model=32, nhead=2, num_layers=3, dim_feedforward=64):
        super().__init__()
        self.d_model = d_model
        self.input_projection = nn.Linear(num_bins, d_model)
        self.input_norm = nn.LayerNorm(d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0.0, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers)
        self.head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model),
                                  nn.Linear(d_model, num_bins))

    def forward(self, x, lengths=None, reconstruct=False):
        x = x if isinstance(x, minigrad.Tensor) else minigrad.tensor(np.asarray(x))
        _check_spectrogram("TeraEncoder", x)
        B, T, _ = x.shape
        padding = np.arange(T) >= _lengths("TeraEncoder", lengths, B, T)[:, None]          # (B, T) True = pad
        positions = sinusoidal_encoding(T, self.d_model, dtype=x.dtype)                    # (T, d)
        h = self.input_norm(self.input_projection(x) + positions)                          # (B, T, d)
        h = self.encoder(h, src_key_padding_mask=padding if padding.any() else None)       # (B, T, d)
        return self.reconstruct(h) if reconstruct else h

    def reconstruct(self, hidden):
        return self.head(hidden)                                                           # (B, T, D)

    def tera_loss(self, x, draws, lengths=None, span=7):
        """L_TERA of a batch of clean spectrograms x (B, T, D) under the given TeraDraws."""
        altered, chosen = tera_alteration(np.asarray(x), draws, lengths, span)
        return tera_l1_loss(self(altered, lengths, reconstruct=True), np.asarray(x), chosen)
