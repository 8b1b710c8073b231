"""LSTM and GRU (cells and multi-layer, bidirectional, batch_first) against torch.nn with torch's weights.

The torch module's state_dict is loaded into the minigrad module; then outputs, final states and the
gradients of the input, of the initial states and of every weight are compared in float64 and float32
(the weights are passed as extra inputs of check_against_torch through functional_call on both sides).
"""
import pytest
import torch

import minigrad as mg
from minigrad import nn
from minigrad.backend import np
from book.testing import check_against_torch, random_array


def _flat(out):
    """(output, (h_n, c_n)) or (output, h_n) or (h, c) or h -> a flat tuple of tensors."""
    if not isinstance(out, tuple):
        return (out,)
    return tuple(t for part in out for t in _flat(part))


def check_rnn(mg_rnn, torch_rnn, x, states=(), training=False):
    """states: the initial state arrays (none: zeros), passed as a tuple (LSTM) or alone (GRU)."""
    torch_rnn = torch_rnn.double().train(training)
    mg_rnn.train(training).double().load_state_dict(torch_rnn.state_dict())
    names = [n for n, _ in torch_rnn.named_parameters()]
    assert [n for n, _ in mg_rnn.named_parameters()] == names
    params = [p.detach().numpy().copy() for _, p in torch_rnn.named_parameters()]
    n_states = len(states)
    pair = isinstance(mg_rnn, (nn.LSTM, nn.LSTMCell))

    def call(module, functional_call, dtype, args):
        module.to(dtype)
        inp, hx, weights = args[0], args[1:1 + n_states], args[1 + n_states:]
        hx = (tuple(hx) if pair else hx[0]) if hx else None
        return _flat(functional_call(module, dict(zip(names, weights)), (inp, hx)))

    check_against_torch(lambda *a: call(mg_rnn, nn.utils.functional_call, a[0].dtype, a),
                        lambda *a: call(torch_rnn, torch.func.functional_call, a[0].dtype, a),
                        [x, *states, *params])


def _state(layers, batch, hidden, seed):
    shape = (layers, hidden) if batch is None else (layers, batch, hidden)
    return random_array(shape, seed=seed)


CONFIGS = [  # (constructor kwargs, T, B (None: unbatched), input_size, with initial states)
    (dict(hidden_size=6), 5, 3, 4, False),
    (dict(hidden_size=6), 5, 3, 4, True),
    (dict(hidden_size=5, batch_first=True), 7, 2, 3, True),
    (dict(hidden_size=5, num_layers=2), 4, 3, 3, True),
    (dict(hidden_size=3, num_layers=2, bidirectional=True), 6, 2, 5, True),
    (dict(hidden_size=4, num_layers=2, bidirectional=True, batch_first=True), 3, 1, 2, False),
    (dict(hidden_size=7, bias=False), 5, 2, 3, True),
    (dict(hidden_size=5, num_layers=2, bidirectional=True), 4, None, 3, True),  # unbatched (T, in)
    (dict(hidden_size=5, num_layers=2, dropout=0.5), 4, 2, 3, False),  # dropout is off in eval mode
    (dict(hidden_size=1), 1, 1, 1, False),
]


def _ids(cfg):
    kwargs, T, B, n_in, init = cfg
    return "-".join([f"{k}={v}" for k, v in kwargs.items()] + [f"T{T}", f"B{B}", f"in{n_in}", "h0" if init else ""])


@pytest.mark.parametrize("cfg", CONFIGS, ids=[_ids(c) for c in CONFIGS])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_rnn_matches_torch(kind, cfg):
    kwargs, T, B, n_in, with_states = cfg
    shape = (T, n_in) if B is None else (B, T, n_in) if kwargs.get("batch_first") else (T, B, n_in)
    layers = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    states = ()
    if with_states:
        states = tuple(_state(layers, B, kwargs["hidden_size"], seed=10 + i) for i in range(2 if kind == "LSTM" else 1))
    check_rnn(getattr(nn, kind)(n_in, **kwargs), getattr(torch.nn, kind)(n_in, **kwargs), random_array(shape), states)


PROJ_CONFIGS = [cfg for cfg in CONFIGS if cfg[0]["hidden_size"] > 2]


@pytest.mark.parametrize("cfg", PROJ_CONFIGS, ids=[_ids(c) for c in PROJ_CONFIGS])
@pytest.mark.parametrize("proj_size", [1, 2])
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_with_projections_matches_torch(proj_size, cfg):
    kwargs, T, B, n_in, with_states = cfg
    kwargs = dict(kwargs, proj_size=proj_size)
    shape = (T, n_in) if B is None else (B, T, n_in) if kwargs.get("batch_first") else (T, B, n_in)
    layers = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    states = (_state(layers, B, proj_size, seed=10), _state(layers, B, kwargs["hidden_size"], seed=11)) \
        if with_states else ()                                  # h_0 has the projected size, c_0 the hidden size
    check_rnn(nn.LSTM(n_in, **kwargs), torch.nn.LSTM(n_in, **kwargs), random_array(shape), states)


def test_lstm_projection_names_shapes_and_repr_match_torch():
    ours = nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    theirs = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    assert repr(ours) == repr(theirs)
    out, (h, c) = ours(mg.randn(4, 2, 3))
    assert out.shape == (4, 2, 4) and h.shape == (4, 2, 2) and c.shape == (4, 2, 5)
    with pytest.raises(ValueError, match=r"LSTM: proj_size=5 needs an LSTM and 0 <= proj_size < hidden_size=5"):
        nn.LSTM(3, 5, proj_size=5)
    with pytest.raises(ValueError, match=r"GRU: proj_size=2 needs an LSTM"):
        nn.GRU(3, 5, proj_size=2)


@pytest.mark.parametrize("batch", [4, None])
@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_cells_match_torch(kind, bias, with_states, batch):
    states = ()
    if with_states:
        shape = (5,) if batch is None else (batch, 5)
        states = tuple(random_array(shape, seed=10 + i) for i in range(2 if kind == "LSTMCell" else 1))
    x = random_array((3,) if batch is None else (batch, 3))
    check_rnn(getattr(nn, kind)(3, 5, bias=bias), getattr(torch.nn, kind)(3, 5, bias=bias), x, states)


def test_names_and_shapes_match_torch_state_dict():
    ours = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    assert ours.weight_ih_l1_reverse.shape == (16, 8)  # layer 2 reads both directions


def test_output_shapes():
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    out, (h, c) = lstm(mg.randn(2, 5, 3))
    assert out.shape == (2, 5, 8) and h.shape == c.shape == (4, 2, 4)
    gru = nn.GRU(3, 4)
    out, h = gru(mg.randn(5, 2, 3))
    assert out.shape == (5, 2, 4) and h.shape == (1, 2, 4)
    np.testing.assert_array_equal(out.data[-1], h.data[0])  # the last output is the final state


def test_dropout_between_layers_in_training():
    mg.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = mg.randn(4, 2, 3)
    eval_out = lstm.eval()(x)[0].data
    train_out = lstm.train()(x)[0].data
    assert not np.allclose(eval_out, train_out)
    single = nn.LSTM(3, 4, num_layers=1, dropout=0.5)  # no layer after the last: dropout never applies
    np.testing.assert_array_equal(single.train()(x)[0].data, single.eval()(x)[0].data)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"LSTM: expected input \(T, B, 3\)"):
        nn.LSTM(3, 4)(mg.randn(5, 2, 4))
    with pytest.raises(ValueError, match="initial state has shape"):
        nn.GRU(3, 4)(mg.randn(5, 2, 3), mg.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="GRUCell: expected input"):
        nn.GRUCell(3, 4)(mg.randn(2, 5))


def test_backward_twice_with_retain_graph_accumulates():
    """The per-step slices share one gradient buffer; a second backward must start from a fresh one."""
    gru = nn.GRU(3, 4, num_layers=2)
    x = mg.randn(5, 2, 3, requires_grad=True)
    out, _ = gru(x)
    g = random_array(out.shape).astype(np.float32)
    out.backward(g, retain_graph=True)
    first = x.grad.data.copy()
    out.backward(g)
    np.testing.assert_allclose(x.grad.data, 2 * first, rtol=1e-6)
