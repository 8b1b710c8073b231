"""PointerNetwork against a PyTorch twin written here the plain way: one decoder step at a time, W1 e_j recomputed at
every step, masks built with in-place writes. torch's state_dict loads into the minigrad model; the teacher-forced
log-probs, the loss and the gradient of every parameter must agree (float64 tightly, float32 realistically), and
greedy decoding must pick the same inputs. Beam search is checked against brute-force enumeration of every output.
"""
import itertools

import pytest
import torch

import minigrad as mg
from minigrad.backend import np
from book.models.pointer_network import PAD, PointerNetwork, sequence_nll
from book.testing import TOLERANCES, assert_close

B, N, HIDDEN = 3, 7, 5


class TorchPointerNetwork(torch.nn.Module):
    def __init__(self, input_size, hidden_size, mask_chosen, close_cycle):
        super().__init__()
        self.mask_chosen, self.close_cycle = mask_chosen, close_cycle
        self.embedding = torch.nn.Linear(input_size, hidden_size)
        self.encoder = torch.nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.decoder = torch.nn.LSTMCell(hidden_size, hidden_size)
        self.W1 = torch.nn.Linear(hidden_size, hidden_size, bias=False)
        self.W2 = torch.nn.Linear(hidden_size, hidden_size, bias=False)
        self.v = torch.nn.Linear(hidden_size, 1, bias=False)
        self.decoder_start = torch.nn.Parameter(torch.rand(hidden_size) - 0.5)

    def step(self, x, state, encoded, chosen):
        h, c = self.decoder(x, state)
        u = self.v(torch.tanh(self.W1(encoded) + self.W2(h)[:, None, :])).squeeze(-1)  # (B, n)
        if self.mask_chosen:
            u = u.masked_fill(chosen, float("-inf"))
        return torch.log_softmax(u, dim=-1), (h, c)

    def mark(self, chosen, start, step, choice, active):
        for b in range(len(choice)):
            if active[b]:
                if step == 0 and self.close_cycle:
                    start[b] = choice[b]
                elif not (self.close_cycle and choice[b] == start[b]):  # the start is never masked
                    chosen[b, choice[b]] = True

    def run(self, points, targets=None, max_steps=None):
        """Teacher-forced (targets given) or greedy: -> (log-probs (B, T, n), chosen inputs (B, T))."""
        embedded = self.embedding(points)
        encoded, (h, c) = self.encoder(embedded)
        state = (h[0], c[0])
        Bx, n = points.shape[:2]
        chosen = torch.zeros(Bx, n, dtype=torch.bool)
        start = [PAD] * Bx
        finished = [False] * Bx
        x = self.decoder_start.expand(Bx, -1)
        outputs, choices = [], []
        steps = targets.shape[1] if targets is not None else max_steps or (n + 1 if self.close_cycle else n)
        for i in range(steps):
            log_probs, state = self.step(x, state, encoded, chosen.clone())
            outputs.append(log_probs)
            if targets is not None:
                choice = targets[:, i].tolist()
                active = [t >= 0 for t in choice]
            else:
                choice = log_probs.argmax(dim=1).tolist()
                active = [not f for f in finished]
            choices.append([ch if a else PAD for ch, a in zip(choice, active)])
            self.mark(chosen, start, i, choice, active)
            for b in range(Bx):
                if active[b] and self.close_cycle and i > 0 and choice[b] == start[b]:
                    finished[b] = True
            if targets is None and self.close_cycle and all(finished):
                break
            x = embedded[torch.arange(Bx), torch.tensor([max(ch, 0) for ch in choice])]
        return torch.stack(outputs, 1), torch.tensor(choices).T


CONFIGS = {  # name: (input_size, mask_chosen, close_cycle)
    "sorting": (1, True, False),
    "hull": (2, True, True),
    "unmasked": (2, False, False),
}


def _models(config, dtype="float64", hidden=HIDDEN, seed=0):
    input_size, mask_chosen, close_cycle = CONFIGS[config]
    torch.manual_seed(seed)
    ref = TorchPointerNetwork(input_size, hidden, mask_chosen, close_cycle).double()
    ours = PointerNetwork(input_size, hidden, mask_chosen, close_cycle, dtype=np.dtype(dtype))
    ours.load_state_dict(ref.state_dict())
    return ours, ref.to(getattr(torch, dtype))


def _permutations(rng, batch, n):
    return np.stack([rng.permutation(n) for _ in range(batch)]).astype(np.int64)


def _cycles(rng, lengths, n):
    """Closed cycles (start, k - 1 other inputs, start) of k = lengths[b] inputs, PAD-padded."""
    targets = np.full((len(lengths), max(lengths) + 1), PAD, dtype=np.int64)
    for row, k in zip(targets, lengths):
        order = rng.permutation(n)[:k]
        row[:k + 1] = np.append(order, order[0])
    return targets


def _data(config, seed=0, batch=B, n=N):
    rng = np.random.default_rng(seed)
    points = rng.random((batch, n, CONFIGS[config][0]))
    targets = _cycles(rng, [3, n, 5][:batch], n) if config == "hull" else _permutations(rng, batch, n)
    return points, targets


def _torch_loss(log_probs, targets):
    return torch.nn.functional.nll_loss(log_probs.reshape(-1, log_probs.shape[-1]), targets.reshape(-1),
                                        ignore_index=PAD)


def test_parameter_names_match_torch():
    ours, ref = _models("hull")
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_teacher_forced_log_probs_loss_and_gradients_match_torch(config, dtype):
    ours, ref = _models(config, dtype)
    points, targets = _data(config)
    points = points.astype(dtype)
    tol = TOLERANCES[dtype]
    log_probs = ours(mg.tensor(points), mg.tensor(targets))
    t_log_probs, _ = ref.run(torch.from_numpy(points), torch.from_numpy(targets))
    assert log_probs.dtype == np.dtype(dtype) and log_probs.shape == (B, targets.shape[1], N)
    assert_close(f"[{dtype}] log-probs", log_probs.data, t_log_probs.detach().numpy(), **tol)
    if config != "unmasked":  # masked entries are exactly -inf on both sides
        assert np.array_equal(np.isneginf(log_probs.data), np.isneginf(t_log_probs.detach().numpy()))

    upstream = np.random.default_rng(1).standard_normal(log_probs.shape).astype(dtype)  # not .sum(): no cancelling
    log_probs.backward(upstream)
    t_log_probs.backward(torch.from_numpy(upstream))
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert p.grad is not None and p.grad.dtype == p.dtype and p.grad.shape == p.shape, name
        assert_close(f"[{dtype}] grad of {name} (random upstream)", p.grad.data, tp.grad.numpy(), **tol)

    ours.zero_grad()
    ref.zero_grad()
    loss = sequence_nll(ours(mg.tensor(points), mg.tensor(targets)), mg.tensor(targets))
    t_loss = _torch_loss(ref.run(torch.from_numpy(points), torch.from_numpy(targets))[0], torch.from_numpy(targets))
    assert loss.shape == () and loss.dtype == np.dtype(dtype)
    assert_close(f"[{dtype}] loss", loss.data, t_loss.detach().numpy(), **tol)
    loss.backward()
    t_loss.backward()
    for (name, p), (_, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert_close(f"[{dtype}] grad of {name} (loss)", p.grad.data, tp.grad.numpy(), **tol)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_greedy_decoding_matches_torch(config):
    ours, ref = _models(config, hidden=8, seed=1)
    points, _ = _data(config, seed=2, batch=6)
    indices, log_prob = ours.greedy_decode(mg.tensor(points))
    with torch.no_grad():
        t_log_probs, t_indices = ref.run(torch.from_numpy(points))
    np.testing.assert_array_equal(indices.data, t_indices.numpy())
    picked = np.where(t_indices.numpy() >= 0, np.take_along_axis(t_log_probs.numpy(), np.maximum(
        t_indices.numpy(), 0)[:, :, None], axis=2)[..., 0], 0).sum(axis=1)
    assert_close("greedy log-prob", log_prob.data, picked, **TOLERANCES["float64"])
    if config != "unmasked":  # never a repeated input; in a cycle only the start, once, at the end
        for row in indices.data:
            row = row[row != PAD].tolist()
            body = row[:-1] if CONFIGS[config][2] and len(row) > 1 and row[-1] == row[0] else row
            assert len(set(body)) == len(body), row
            if CONFIGS[config][2]:
                assert row[-1] == row[0], row   # with the mask, a cycle always closes within n + 1 steps


@pytest.mark.parametrize("config", ["sorting", "hull"])
def test_beam_of_width_one_is_greedy_and_wider_beams_find_more_probable_sequences(config):
    for seed in range(4):
        ours, _ = _models(config, hidden=8, seed=seed)
        points = mg.tensor(_data(config, seed=seed, batch=8, n=6)[0])
        greedy, greedy_log_prob = ours.greedy_decode(points)
        beam, beam_log_prob = ours.beam_search(points, beam_width=1)
        np.testing.assert_array_equal(beam.data, greedy.data)
        assert_close("width-1 log-prob", beam_log_prob.data, greedy_log_prob.data, **TOLERANCES["float64"])
        wide, wide_log_prob = ours.beam_search(points, beam_width=5)
        # not a theorem (the greedy prefix can fall out of a beam) but it holds on these random models
        assert np.all(wide_log_prob.data >= greedy_log_prob.data - 1e-12)
        if config == "sorting":
            assert all(sorted(row) == list(range(6)) for row in wide.data.tolist())  # a permutation


def _all_outputs(n, close_cycle):
    """Every output the masked model can produce: permutations, or closed cycles start, others..., start."""
    if not close_cycle:
        return [list(p) for p in itertools.permutations(range(n))]
    cycles = []
    for start in range(n):
        others = [j for j in range(n) if j != start]
        for k in range(n):
            cycles += [[start, *middle, start] for middle in itertools.permutations(others, k)]
    width = n + 1
    return [c + [PAD] * (width - len(c)) for c in cycles]


@pytest.mark.parametrize("config", ["sorting", "hull"])
def test_beam_search_against_brute_force_enumeration(config):
    """n = 4: the log-prob of every possible output from the torch twin's teacher-forced forward; a beam as wide
    as the number of outputs is exhaustive and must find the best one; a narrow beam returns a real sequence
    with its true log-prob, no better than the best."""
    n = 4
    close_cycle = CONFIGS[config][2]
    outputs = np.array(_all_outputs(n, close_cycle), dtype=np.int64)
    assert len(outputs) == (24 if config == "sorting" else 64)
    for seed in range(3):
        ours, ref = _models(config, hidden=6, seed=seed)
        points = _data(config, seed=10 + seed, batch=1, n=n)[0]
        with torch.no_grad():
            t_log_probs, _ = ref.run(torch.from_numpy(np.repeat(points, len(outputs), 0)), torch.from_numpy(outputs))
        picked = np.take_along_axis(t_log_probs.numpy(), np.maximum(outputs, 0)[:, :, None], axis=2)[..., 0]
        totals = np.where(outputs >= 0, picked, 0).sum(axis=1)
        best = int(np.argmax(totals))
        for width, exhaustive in [(len(outputs), True), (3, False)]:
            indices, log_prob = ours.beam_search(mg.tensor(points), beam_width=width)
            found = indices.data[0].tolist()
            found += [PAD] * (outputs.shape[1] - len(found))
            match = [k for k, row in enumerate(outputs.tolist()) if row == found]
            assert len(match) == 1, f"beam returned {found}, not a possible output"
            assert_close(f"width {width} log-prob", log_prob.data[0], totals[match[0]], **TOLERANCES["float64"])
            if exhaustive:
                assert match[0] == best and totals[best] > np.sort(totals)[-2]
            else:
                assert log_prob.data[0] <= totals[best] + 1e-12


def test_precomputed_w1_equals_the_per_step_scores():
    """pointer_scores on all decoder states at once (W1 e_j computed once) equals one step at a time."""
    ours, _ = _models("sorting", hidden=6)
    points = mg.tensor(_data("sorting")[0])
    _, W1_encoded, _ = ours.encode(points)
    decoded = mg.randn(B, 4, 6, dtype=mg.float64, generator=mg.Generator(3))
    together = ours.pointer_scores(W1_encoded, decoded).data
    one_by_one = np.stack([ours.pointer_scores(W1_encoded, decoded[:, i]).data for i in range(4)], 1)
    np.testing.assert_allclose(together, one_by_one, rtol=1e-13, atol=1e-14)


def test_bad_input_raises():
    model = PointerNetwork(2, 4)
    points = mg.rand(2, 5, 2)
    with pytest.raises(ValueError, match=r"PointerNetwork.forward: expected points as a Tensor of shape "
                                         r"\(B, n >= 1, 2\), got shape \(2, 5, 1\)"):
        model(mg.rand(2, 5, 1), mg.tensor(np.zeros((2, 5), np.int64)))
    with pytest.raises(ValueError, match="PointerNetwork.greedy_decode: .* got a ndarray"):
        model.greedy_decode(np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match=r"expected integer targets of shape \(2, T\)"):
        model(points, mg.tensor(np.zeros((3, 5), np.int64)))
    with pytest.raises(ValueError, match=r"targets must be input positions in \[0, 5\)"):
        model(points, mg.tensor(np.array([[0, 1, 5], [0, 1, 2]])))
    with pytest.raises(ValueError, match="PAD must only end a row"):
        model(points, mg.tensor(np.array([[0, PAD, 2], [0, 1, 2]])))
    with pytest.raises(ValueError, match="target row 1 points at step 2 to input 3, chosen before"):
        model(points, mg.tensor(np.array([[0, 1, 2], [3, 4, 3]])))
    cycle_model = PointerNetwork(2, 4, close_cycle=True)
    with pytest.raises(ValueError, match="a target continues after returning to its start"):
        cycle_model(points, mg.tensor(np.array([[0, 1, 0, 2], [3, 4, 2, 3]])))
    assert cycle_model(points, mg.tensor(np.array([[0, 1, 0, PAD], [3, 4, 2, 3]]))).shape == (2, 4, 5)
    with pytest.raises(ValueError, match="beam_width must be an int >= 1"):
        model.beam_search(points, beam_width=0)
    with pytest.raises(ValueError, match=r"sequence_nll: expected log_probs \(B, T, n\) and targets \(B, T\)"):
        sequence_nll(mg.rand(2, 3, 5), mg.tensor(np.zeros((2, 4), np.int64)))
