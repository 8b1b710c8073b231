"""Synthetic "phone" spectrograms with known frame labels: a stand-in for log-mel features of speech.

A phone is a spectral envelope: a few formant peaks over D frequency bins. An utterance is a sequence of phones of
random durations; every frame is the log of its phone's envelope, seen through a speaker and a channel:

    S_b(t, k) = log( floor + sum_f a_{p f} exp(-(k - c_{p f} - shift_b)^2 / (2 w_{p f}^2)) )
                + gain_b + tilt_b (k / D - 1/2) + sigma eps_{t k},          p = phone(t),  eps ~ N(0, 1)

with per-utterance formant shift (a vocal-tract length), gain and spectral tilt, and a 1-frame linear crossfade at
each phone boundary (coarticulation). The label of frame t is p = phone(t). Because the shift moves every formant of
an utterance, a single frame is ambiguous between neighbouring phones: the utterance's other frames tell the speaker,
which is what a contextual encoder can learn and a frame-by-frame linear classifier cannot.

    inventory = make_inventory(num_phones=12, num_bins=24, rng=np.random.default_rng(0))
    spec, labels = generate_utterances(inventory, batch=32, length=64, rng=rng)   # (32, 64, 24) float32, (32, 64)

Every random draw comes from the Generator passed in.
"""
from dataclasses import dataclass

from minigrad.backend import np


@dataclass
class PhoneInventory:
    """Formant centres (P, F) in bins, widths (P, F) in bins and amplitudes (P, F) of P phones over num_bins bins."""
    centres: np.ndarray
    widths: np.ndarray
    amplitudes: np.ndarray
    num_bins: int

    @property
    def num_phones(self):
        return len(self.centres)


def make_inventory(num_phones, num_bins, rng, formants=3):
    """P phones with `formants` peaks each: centres uniform over the band (sorted), widths U[0.8, 2.0] bins,
    amplitudes U[0.5, 1.5]."""
    if num_phones < 2 or num_bins < 4 or formants < 1:
        raise ValueError(f"make_inventory: need num_phones >= 2, num_bins >= 4, formants >= 1, got {num_phones}, "
                         f"{num_bins}, {formants}")
    centres = np.sort(rng.uniform(1.0, num_bins - 2.0, size=(num_phones, formants)), axis=1)
    widths = rng.uniform(0.8, 2.0, size=(num_phones, formants))
    amplitudes = rng.uniform(0.5, 1.5, size=(num_phones, formants))
    return PhoneInventory(centres, widths, amplitudes, num_bins)


def phone_sequences(batch, length, num_phones, rng, min_duration=3, max_duration=8):
    """Frame labels (B, T) int64: phones drawn uniformly (never the same twice in a row), durations uniform in
    [min_duration, max_duration] frames."""
    if not 1 <= min_duration <= max_duration:
        raise ValueError(f"phone_sequences: need 1 <= min_duration <= max_duration, got {min_duration}, "
                         f"{max_duration}")
    labels = np.empty((batch, length), dtype=np.int64)
    for b in range(batch):
        t, phone = 0, -1
        while t < length:
            phone = (phone + 1 + rng.integers(0, num_phones - 1)) % num_phones if phone >= 0 else \
                rng.integers(0, num_phones)
            duration = rng.integers(min_duration, max_duration + 1)
            labels[b, t:t + duration] = phone
            t += duration
    return labels


def envelopes(inventory, shift, floor=0.05):
    """log(floor + sum of formant peaks) of every phone under each formant shift: (B, P, D) for shift (B,)."""
    k = np.arange(inventory.num_bins)                                                  # (D,)
    centres = inventory.centres[None, :, :, None] + np.asarray(shift)[:, None, None, None]  # (B, P, F, 1)
    peaks = inventory.amplitudes[None, :, :, None] * np.exp(
        -0.5 * ((k - centres) / inventory.widths[None, :, :, None]) ** 2)              # (B, P, F, D)
    return np.log(floor + peaks.sum(axis=2))                                           # (B, P, D)


def generate_utterances(inventory, batch, length, rng, max_shift=2.0, gain_std=0.5, tilt_std=1.0, noise_std=0.3,
                        min_duration=3, max_duration=8):
    """(spectrograms float32 (B, T, D), labels int64 (B, T)) as in the module docstring."""
    labels = phone_sequences(batch, length, inventory.num_phones, rng, min_duration, max_duration)
    shift = rng.uniform(-max_shift, max_shift, size=batch)                             # (B,)
    gain = rng.normal(0.0, gain_std, size=(batch, 1, 1))
    tilt = rng.normal(0.0, tilt_std, size=(batch, 1, 1))
    table = envelopes(inventory, shift)                                                # (B, P, D)
    frames = np.take_along_axis(table, labels[:, :, None], axis=1)                     # (B, T, D)
    boundary = np.zeros((batch, length), dtype=bool)
    boundary[:, 1:] = labels[:, 1:] != labels[:, :-1]
    crossfade = frames.copy()
    crossfade[:, 1:][boundary[:, 1:]] = 0.5 * (frames[:, 1:] + frames[:, :-1])[boundary[:, 1:]]
    k = np.arange(inventory.num_bins) / inventory.num_bins - 0.5                       # (D,)
    noise = rng.normal(0.0, noise_std, size=frames.shape)
    spec = crossfade + gain + tilt * k + noise                                         # (B, T, D)
    return spec.astype(np.float32), labels
