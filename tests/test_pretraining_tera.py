"""book.pretraining.tera: the alterations against PyTorch formulations on hand-made and random draws (overlapping
spans, each action, padding), the draws' statistics over many batches (span counts, start uniformity, the 80/10/10
split, band widths, the noise coin), the L1 loss on altered elements against torch's l1_loss on the selected
elements (value and gradient), and TeraEncoder against a torch.nn.TransformerEncoder twin (every gradient)."""
import math

import pytest
import torch
import torch.nn.functional as TF

import minigrad as mg
from minigrad.backend import np
from book.data.phone_spectrograms import generate_utterances, make_inventory
from book.pretraining.tera import (KEEP, REPLACE, ZERO, FrequencyDraws, MagnitudeDraws, TeraDraws, TeraEncoder,
                                   TimeDraws, draw_frequency_alteration, draw_magnitude_alteration,
                                   draw_tera, draw_time_alteration, frequency_alteration, magnitude_alteration,
                                   num_spans, tera_alteration, tera_l1_loss, time_alteration)
from book.testing import assert_close, check_against_torch, check_module_against_torch, random_array

W = 7


def torch_time_alteration(x, starts, sources, action, span=W):
    """The paper's description written with torch indexing, one span at a time (a later span wins)."""
    x = torch.as_tensor(x)
    out, frames = x.clone(), torch.zeros(x.shape[:2], dtype=torch.bool)
    for b in range(x.shape[0]):
        for s, r in zip(starts[b].tolist(), sources[b].tolist()):
            if s < 0:
                continue
            frames[b, s:s + span] = True
            if action[b] == REPLACE:
                out[b, s:s + span] = x[b, r:r + span]
            elif action[b] == ZERO:
                out[b, s:s + span] = 0
    return out, frames


def test_time_alteration_by_hand_overlapping_spans_and_each_action():
    x = random_array((3, 20, 4), seed=0)
    starts = np.array([[2, 6], [10, -1], [0, 13]])                      # row 0: spans overlap on frames 6..8
    sources = np.array([[12, 0], [1, -1], [5, 3]])
    action = np.array([REPLACE, ZERO, KEEP])
    got, frames = time_alteration(x, TimeDraws(starts, sources, action), W)
    want, want_frames = torch_time_alteration(x, starts, sources, action)
    assert_close("altered", got, want.numpy(), 0, 0)
    assert (frames == want_frames.numpy()).all()
    assert frames.sum(1).tolist() == [11, 7, 14]
    assert (got[0, 6:13] == x[0, 0:7]).all()                            # the later span's source won the overlap
    assert (got[1, 10:17] == 0).all() and (got[2] == x[2]).all()        # zeroed; kept (but still in frames)
    with pytest.raises(ValueError, match=r"time_alteration: a span of 7 frames .* runs past T = 20"):
        time_alteration(x, TimeDraws(np.array([[14], [0], [0]]), np.zeros((3, 1), int), action), W)


def test_time_alteration_random_draws_against_torch():
    rng = np.random.default_rng(1)
    for lengths in ([50, 50, 50, 50], [61, 33, 7, 3]):
        x = random_array((4, 61, 5), seed=2)
        draws = draw_time_alteration(lengths, rng)
        got, frames = time_alteration(x, draws, W)
        want, want_frames = torch_time_alteration(x, *draws)
        assert_close("altered", got, want.numpy(), 0, 0)
        assert (frames == want_frames.numpy()).all()
        ends = np.where(draws.starts >= 0, draws.starts + W, 0).max(1)
        assert (ends <= np.array(lengths)).all()                         # spans stay inside each utterance


def test_time_draw_statistics():
    rng = np.random.default_rng(2)
    assert [num_spans(n) for n in (6, 7, 23, 24, 100, 1000)] == [0, 0, 0, 1, 2, 21]   # round(0.15 n / 7)
    n, T_ = 20000, 100
    draws = draw_time_alteration([T_] * n, rng)
    assert draws.starts.shape == (n, 2) and (draws.starts >= 0).all()
    assert (draws.starts[:, 0] != draws.starts[:, 1]).all()              # without replacement
    counts = np.bincount(draws.starts.ravel(), minlength=T_ - W + 1)     # 94 starts equally likely
    assert counts.size == T_ - W + 1
    expected = 2 * n / (T_ - W + 1)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < (T_ - W) + 6 * math.sqrt(2 * (T_ - W))
    for a, p in ((ZERO, 0.8), (REPLACE, 0.1), (KEEP, 0.1)):
        assert abs((draws.action == a).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # the altered share of frames: about 15% (less where spans overlap)
    _, frames = time_alteration(np.zeros((2000, T_, 1)), TimeDraws(*(d[:2000] for d in draws)), W)
    assert 0.12 < frames.mean() < 0.14


def test_frequency_and_magnitude_against_torch_and_their_statistics():
    rng = np.random.default_rng(3)
    x = random_array((3, 11, 10), seed=4)
    lengths = np.array([11, 6, 1])
    draws = FrequencyDraws(np.array([0, 8, 3]), np.array([2, 2, 0]))
    got, band = frequency_alteration(x, draws, lengths)
    want = torch.tensor(x)
    for b in range(3):
        want[b, :lengths[b], draws.start[b]:draws.start[b] + draws.width[b]] = 0
    assert_close("band zeroed", got, want.numpy(), 0, 0)
    assert band.sum((1, 2)).tolist() == [22, 12, 0]
    with pytest.raises(ValueError, match="frequency_alteration: start .* with the band inside D = 10 bins"):
        frequency_alteration(x, FrequencyDraws(np.array([9, 0, 0]), np.array([2, 0, 0])))
    many = draw_frequency_alteration(60000, 24, rng)                      # width U{0..4}, start U{0..24 - w}
    assert np.bincount(many.width).size == 5
    assert np.abs(np.bincount(many.width) / 60000 - 0.2).max() < 5 * math.sqrt(0.16 / 60000)
    assert (many.start + many.width <= 24).all() and (many.start[many.width == 4].max() == 20)
    noise = draw_magnitude_alteration(x.shape, rng).noise
    noisy = magnitude_alteration(x, MagnitudeDraws(True, noise), lengths)
    want = torch.tensor(x) + torch.tensor(noise) * (torch.arange(11) < torch.tensor(lengths)[:, None])[..., None]
    assert_close("noise added on real frames", noisy, want.numpy(), 1e-12, 0)
    assert magnitude_alteration(x, MagnitudeDraws(False, noise)) is x
    coins = [draw_magnitude_alteration((1, 1, 1), rng).apply for _ in range(20000)]
    assert abs(np.mean(coins) - 0.15) < 5 * math.sqrt(0.15 * 0.85 / 20000)
    big = draw_magnitude_alteration((200, 50, 20), rng).noise
    assert abs(big.std() - 0.2) < 0.003 and abs(big.mean()) < 0.003


def test_tera_alteration_composes_and_marks_time_and_band_only():
    rng = np.random.default_rng(5)
    x = random_array((4, 40, 12), seed=6)
    lengths = np.array([40, 40, 29, 24])
    draws = draw_tera(lengths, x.shape, rng)
    draws = draws._replace(magnitude=MagnitudeDraws(True, draws.magnitude.noise))
    altered, chosen = tera_alteration(x, draws, lengths)
    step1, frames = torch_time_alteration(x, *draws.time)
    step2, band = frequency_alteration(step1.numpy(), draws.frequency, lengths)
    step3 = magnitude_alteration(step2, draws.magnitude, lengths)
    assert_close("T then F then M", altered, step3, 0, 0)
    assert (chosen == (frames.numpy()[:, :, None] | band)).all()
    off = TeraDraws(draws.time, None, None)
    assert (tera_alteration(x, off, lengths)[1] == frames.numpy()[:, :, None].repeat(12, 2)).all()


def test_l1_loss_on_chosen_elements_against_torch():
    rng = np.random.default_rng(7)
    pred, target = random_array((3, 13, 5), seed=8), random_array((3, 13, 5), seed=9)
    chosen = rng.random((3, 13, 5)) < 0.3
    mask = torch.from_numpy(chosen)
    check_against_torch(lambda p, t: tera_l1_loss(p, t, chosen),
                        lambda p, t: TF.l1_loss(p[mask], t[mask]), [pred, target], no_grad=(1,))
    empty = tera_l1_loss(mg.tensor(pred), target, np.zeros_like(chosen))
    assert empty.item() == 0.0


class TorchTera(torch.nn.Module):
    """TeraEncoder in PyTorch: projection + sinusoids -> LayerNorm -> post-LN encoder; the reconstruction head."""

    def __init__(self, num_bins, d_model=12, nhead=3, num_layers=2, dim_feedforward=20):
        super().__init__()
        self.d_model = d_model
        self.input_projection = torch.nn.Linear(num_bins, d_model)
        self.input_norm = torch.nn.LayerNorm(d_model)
        layer = torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0.0, activation="gelu",
                                                 batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = torch.nn.Sequential(torch.nn.Linear(d_model, d_model), torch.nn.GELU(),
                                        torch.nn.LayerNorm(d_model), torch.nn.Linear(d_model, num_bins))

    def forward(self, x, lengths):
        T_ = x.shape[1]
        p = torch.arange(T_, dtype=torch.float64)[:, None]
        i = torch.arange(0, self.d_model, 2, dtype=torch.float64)
        angle = p / 10000 ** (i / self.d_model)
        pe = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(T_, self.d_model).to(x.dtype)
        padding = torch.arange(T_) >= torch.as_tensor(lengths)[:, None]
        h = self.encoder(self.input_norm(self.input_projection(x) + pe), src_key_padding_mask=padding)
        return self.head(h)


@pytest.mark.parametrize("lengths", [[15, 15], [15, 9, 4]], ids=["full", "padded"])
def test_tera_encoder_matches_torch(lengths):
    torch.manual_seed(0)
    twin = TorchTera(6)
    mg.manual_seed(0)
    model = TeraEncoder(6, d_model=12, nhead=3, num_layers=2, dim_feedforward=20)
    x = random_array((len(lengths), 15, 6), seed=10)
    real = (np.arange(15) < np.array(lengths)[:, None])[:, :, None]

    def on_real_frames(module, result):             # padded frames' outputs are never used
        if isinstance(module, TeraEncoder):
            return result * mg.tensor(real.astype(result.dtype))
        return result * torch.from_numpy(real).to(result.dtype)
    check_module_against_torch(model, twin, x, forward_args=(np.array(lengths),), mg_kwargs={"reconstruct": True},
                               outputs=on_real_frames,
                               tolerances={"float32": dict(rtol=1e-3, atol=1e-4)})


def test_encoder_learns_to_fill_time_masks_on_phone_spectrograms():
    """A few dozen steps of L_TERA on the synthetic spectrograms lower the loss on fresh utterances."""
    rng = np.random.default_rng(11)
    inventory = make_inventory(6, 12, rng)
    mg.manual_seed(0)
    model = TeraEncoder(12, d_model=16, nhead=2, num_layers=1, dim_feedforward=32)
    optimizer = mg.optim.AdamW(model.parameters(), lr=3e-3)
    test_x, _ = generate_utterances(inventory, 16, 48, np.random.default_rng(99))
    test_draws = draw_tera([48] * 16, test_x.shape, np.random.default_rng(98), frequency=False, magnitude=False)
    before = model.tera_loss(test_x, test_draws).item()
    for _ in range(60):
        x, _ = generate_utterances(inventory, 16, 48, rng)
        loss = model.tera_loss(x, draw_tera([48] * 16, x.shape, rng))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.tera_loss(test_x, test_draws).item() < 0.8 * before


def test_phone_spectrograms_are_reproducible_and_labelled_by_phone_runs():
    from book.data.phone_spectrograms import phone_sequences
    inventory = make_inventory(5, 16, np.random.default_rng(0))
    a = generate_utterances(inventory, 4, 50, np.random.default_rng(1))
    b = generate_utterances(inventory, 4, 50, np.random.default_rng(1))
    assert all(np.array_equal(u, v) for u, v in zip(a, b)) and a[0].dtype == np.float32 and a[0].shape == (4, 50, 16)
    labels = phone_sequences(200, 60, 5, np.random.default_rng(2), min_duration=3, max_duration=8)
    for row in labels:
        change = np.flatnonzero(np.diff(row)) + 1
        runs = np.diff(np.concatenate([[0], change, [60]]))
        assert (runs[:-1] >= 3).all() and (runs[:-1] <= 8).all() and runs[-1] <= 8   # last run may be cut short
    assert np.bincount(labels.ravel(), minlength=5).min() > 0.15 * labels.size       # every phone used
