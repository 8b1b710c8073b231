"""minigrad.nn against torch.nn: every layer with torch's weights loaded, outputs and all gradients; Module
bookkeeping (names, state dicts, buffers, modes, repr); init distributions.

`check_module` loads the torch layer's state_dict into the minigrad layer, then passes the parameters as
extra inputs of `check_against_torch` (through functional_call on both sides), so the gradients of the
inputs AND of every parameter are compared in float64 and float32 under a random upstream gradient.
"""
import math

import pytest
import torch

import minigrad as mg
from minigrad import nn
from minigrad.backend import np
from book.testing import check_against_torch, random_array


def check_module(mg_module, torch_module, inputs, **kwargs):
    torch_module = torch_module.double()  # float64 master copy of the weights, cast per dtype under test
    mg_module.double().load_state_dict(torch_module.state_dict())
    names = [n for n, _ in torch_module.named_parameters()]
    assert [n for n, _ in mg_module.named_parameters()] == names
    params = [p.detach().numpy().copy() for _, p in torch_module.named_parameters()]
    k = len(inputs)

    def dtype_of(args, floating):
        return next(a.dtype for a in args if isinstance(a, (mg.Tensor, torch.Tensor)) and floating(a))

    def mg_fn(*args):
        mg_module.to(dtype_of(args[k:] or args, lambda a: a.dtype.kind == "f"))
        return nn.utils.functional_call(mg_module, dict(zip(names, args[k:])), tuple(args[:k]))

    def torch_fn(*args):
        torch_module.to(dtype_of(args[k:] or args, lambda a: a.dtype.is_floating_point))
        return torch.func.functional_call(torch_module, dict(zip(names, args[k:])), tuple(args[:k]))
    return check_against_torch(mg_fn, torch_fn, list(inputs) + params, **kwargs)


def x(*shape, seed=0):
    return random_array(shape, seed=seed)


# ---- layers vs torch ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5), (5,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(shape, bias):
    check_module(nn.Linear(5, 3, bias=bias), torch.nn.Linear(5, 3, bias=bias), [x(*shape)])


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding(padding_idx):
    idx = np.array([[1, 2, 2, 9], [0, 9, 2, 3], [2, 2, 5, 1]], dtype=np.int64)
    out = check_module(nn.Embedding(10, 4, padding_idx=padding_idx),
                       torch.nn.Embedding(10, 4, padding_idx=padding_idx), [idx])
    assert out[0].shape == (3, 4, 4)


def test_embedding_padding_row_starts_at_zero():
    emb = nn.Embedding(6, 3, padding_idx=4)
    assert emb.padding_idx == 4 and np.all(emb.weight.data[4] == 0) and np.all(emb.weight.data[3] != 0)


@pytest.mark.parametrize("shape,normalized", [((4, 6), 6), ((2, 3, 4), (3, 4)), ((5, 7), [7])])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, True)])
def test_layer_norm(shape, normalized, affine, bias):
    mg_ln = nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias)
    t_ln = torch.nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias)
    if affine:  # non-trivial weights: ones and zeros would hide a swapped weight and bias
        torch.nn.init.normal_(t_ln.weight)
        if bias:
            torch.nn.init.normal_(t_ln.bias)
    check_module(mg_ln, t_ln, [x(*shape)])


@pytest.mark.parametrize("eps", [None, 1e-6])
@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm(eps, affine):
    t_norm = torch.nn.RMSNorm((3, 5), eps=eps, elementwise_affine=affine)
    if affine:
        torch.nn.init.normal_(t_norm.weight)
    check_module(nn.RMSNorm((3, 5), eps=eps, elementwise_affine=affine), t_norm, [x(2, 3, 5)])


def _batch_norms(momentum=0.1, affine=True, track=True):
    t_bn = torch.nn.BatchNorm1d(3, momentum=momentum, affine=affine, track_running_stats=track)
    if affine:
        torch.nn.init.normal_(t_bn.weight)
        torch.nn.init.normal_(t_bn.bias)
    return nn.BatchNorm1d(3, momentum=momentum, affine=affine, track_running_stats=track), t_bn


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_training_outputs_grads_and_running_stats(shape, momentum):
    mg_bn, t_bn = _batch_norms(momentum)
    check_module(mg_bn, t_bn, [x(*shape)])  # two training forwards (float64, float32) on both sides
    assert mg_bn.training and t_bn.training
    for name, buf in t_bn.named_buffers():
        np.testing.assert_allclose(getattr(mg_bn, name).data, buf.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert mg_bn.num_batches_tracked.dtype == np.int64 and mg_bn.num_batches_tracked.item() == 2


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_eval_uses_running_stats(affine):
    mg_bn, t_bn = _batch_norms(affine=affine)
    t_bn.running_mean.normal_()
    t_bn.running_var.uniform_(0.5, 2.0)
    mg_bn.eval(), t_bn.eval()
    check_module(mg_bn, t_bn, [x(5, 3, 2)])
    np.testing.assert_array_equal(mg_bn.running_mean.data, t_bn.running_mean.numpy())  # not updated in eval


def test_batch_norm_without_running_stats():
    mg_bn, t_bn = _batch_norms(track=False)
    assert mg_bn.running_mean is None and "running_mean" not in mg_bn.state_dict()
    mg_bn.eval(), t_bn.eval()  # no running stats: batch statistics even in eval mode
    check_module(mg_bn, t_bn, [x(5, 3)])


def test_batch_norm_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected input \(N, 3\)"):
        nn.BatchNorm1d(3)(mg.randn(4, 5))


@pytest.mark.parametrize("mg_cls,t_cls,kwargs", [
    (nn.ReLU, torch.nn.ReLU, {}),
    (nn.GELU, torch.nn.GELU, {}),
    (nn.GELU, torch.nn.GELU, {"approximate": "tanh"}),
    (nn.SiLU, torch.nn.SiLU, {}),
    (nn.Tanh, torch.nn.Tanh, {}),
    (nn.Sigmoid, torch.nn.Sigmoid, {}),
    (nn.Softmax, torch.nn.Softmax, {"dim": 1}),
    (nn.Softmax, torch.nn.Softmax, {"dim": -1}),
    (nn.Identity, torch.nn.Identity, {}),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_activations(mg_cls, t_cls, kwargs):
    check_module(mg_cls(**kwargs), t_cls(**kwargs), [x(3, 4, 5)])


def test_dropout_with_a_given_mask_matches_the_formula():
    mask = np.random.default_rng(3).uniform(size=(4, 6)) > 0.3
    check_module(nn.Dropout(0.3), _MaskedTorchDropout(0.3, mask), [x(4, 6), mask])


class _MaskedTorchDropout(torch.nn.Module):
    """torch's dropout with a given keep-mask: x * mask / (1 - p)."""

    def __init__(self, p, mask):
        super().__init__()
        self.p, self.mask = p, torch.from_numpy(mask)

    def forward(self, x, mask):
        return x * mask / (1 - self.p)


def test_dropout_train_and_eval():
    mg.manual_seed(0)
    drop = nn.Dropout(0.25)
    ones = mg.ones(200, 100)
    y = drop(ones).data
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01
    drop.eval()
    assert drop(ones) is ones
    assert nn.Sequential(nn.Dropout(0.5)).eval()[0].training is False


def test_sequential_matches_torch_and_loads_torch_names():
    mg_seq = nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 3))
    t_seq = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.GELU(), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
    check_module(mg_seq, t_seq, [x(2, 4, 5)])
    assert list(mg_seq.state_dict()) == list(t_seq.state_dict())


# ---- containers ---------------------------------------------------------------------------------

def test_sequential_indexing_and_ordered_dict():
    from collections import OrderedDict
    seq = nn.Sequential(OrderedDict(fc=nn.Linear(2, 3), act=nn.ReLU(), out=nn.Linear(3, 1)))
    assert isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.Linear) and len(seq) == 3
    assert [n for n, _ in seq.named_parameters()] == ["fc.weight", "fc.bias", "out.weight", "out.bias"]
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and list(head._modules) == ["fc", "act"]
    assert head(mg.randn(4, 2)).shape == (4, 3)
    with pytest.raises(IndexError, match="out of range"):
        seq[3]


def test_module_list_and_dict_register_their_entries():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.ReLU())
    layers.insert(0, nn.Identity())
    assert len(layers) == 5 and isinstance(layers[0], nn.Identity) and isinstance(layers[-1], nn.ReLU)
    assert [n for n, _ in layers.named_parameters()][:2] == ["1.weight", "1.bias"]
    del layers[0]
    assert [n for n, _ in layers.named_parameters()][0] == "0.weight" and len(layers) == 4
    heads = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(2, 3)})
    heads["c"] = nn.Tanh()
    assert list(heads) == ["a", "b", "c"] and "b" in heads and len(heads) == 3
    assert [n for n, _ in heads.named_parameters()] == ["a.weight", "a.bias", "b.weight", "b.bias"]
    t_list = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)] + [torch.nn.ReLU()])
    assert repr(layers) == repr(t_list)  # "(0-2): 3 x Linear(...)", as torch compresses repeats


# ---- Module bookkeeping -------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 4)
        self.register_buffer("mask", mg.tril(mg.ones(3, 3)))
        self.register_buffer("cache", mg.zeros(2), persistent=False)
        self.scale = mg.Parameter(np.ones(1, dtype=np.float32))

    def forward(self, x):
        return self.fc(self.norm(x)) * self.scale


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(4)
        self.fc = torch.nn.Linear(4, 4)
        self.register_buffer("mask", torch.tril(torch.ones(3, 3)))
        self.register_buffer("cache", torch.zeros(2), persistent=False)
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.fc(self.norm(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(4, 2)


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([TorchBlock(), TorchBlock()])
        self.head = torch.nn.Linear(4, 2)


def test_names_match_torch():
    net, ref = Net(), TorchNet()
    assert [n for n, _ in net.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in net.named_buffers()] == [n for n, _ in ref.named_buffers()]  # incl. non-persistent
    assert list(net.state_dict()) == list(ref.state_dict())  # non-persistent buffers left out
    assert [n for n, _ in net.named_modules()] == [n for n, _ in ref.named_modules()]
    assert [n for n, _ in net.named_children()] == [n for n, _ in ref.named_children()]
    assert len(list(net.modules())) == len(list(ref.modules()))
    assert [p.shape for p in net.parameters()] == [tuple(p.shape) for p in ref.parameters()]


def test_state_dict_round_trips_through_torch():
    net, ref = Net(), TorchNet()
    for p in ref.parameters():
        torch.nn.init.normal_(p)
    net.load_state_dict(ref.state_dict())  # torch tensors
    back = TorchNet()
    back.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in net.state_dict().items()})
    for (k, a), b in zip(ref.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k
    copy = Net()
    copy.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()})  # NumPy arrays
    h = mg.randn(2, 3, 4)
    for a, b in zip(net.blocks, copy.blocks):
        np.testing.assert_array_equal(a(h).data, b(h).data)


def test_state_dict_shares_memory_and_load_copies_in_place():
    lin = nn.Linear(2, 2)
    weight = lin.weight
    sd = lin.state_dict()
    assert not sd["weight"].requires_grad and sd["weight"].data is lin.weight.data
    lin.load_state_dict({"weight": np.zeros((2, 2)), "bias": np.ones(2)})
    assert lin.weight is weight and lin.weight.dtype == np.float32  # same Parameter, cast to its dtype
    np.testing.assert_array_equal(sd["weight"].data, np.zeros((2, 2)))
    assert lin.state_dict(keep_vars=True)["weight"] is lin.weight


def test_load_state_dict_errors_list_every_problem():
    net = Net()
    good = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    bad = dict(good)
    del bad["head.bias"], bad["blocks.1.mask"]
    bad["head.extra"] = np.zeros(1)
    bad["blocks.0.fc.weight"] = np.zeros((4, 5))
    before = net.blocks[0].norm.weight.data.copy()
    bad["blocks.0.norm.weight"] = before + 1
    with pytest.raises(RuntimeError) as err:
        net.load_state_dict(bad)
    message = str(err.value)
    assert message.startswith("Error(s) in loading state_dict for Net:")
    assert 'Missing key(s) in state_dict: "blocks.1.mask", "head.bias".' in message
    assert 'Unexpected key(s) in state_dict: "head.extra".' in message
    assert ("size mismatch for blocks.0.fc.weight: copying a param with shape (4, 5) from checkpoint, "
            "the shape in current model is (4, 4).") in message
    np.testing.assert_array_equal(net.blocks[0].norm.weight.data, before)  # nothing copied on error
    del bad["blocks.0.fc.weight"]
    missing, unexpected = net.load_state_dict(bad, strict=False)
    assert missing == ["blocks.0.fc.weight", "blocks.1.mask", "head.bias"] and unexpected == ["head.extra"]
    np.testing.assert_array_equal(net.blocks[0].norm.weight.data, before + 1)
    with pytest.raises(RuntimeError, match="size mismatch"):  # a shape mismatch is an error even when not strict
        net.load_state_dict({"head.weight": np.zeros((3, 4))}, strict=False)


def test_attribute_registration_rules():
    m = nn.Module()
    m.w = mg.Parameter(np.ones(2))
    m.sub = nn.Linear(1, 1)
    m.plain = mg.ones(2)  # a plain Tensor attribute is neither parameter nor buffer
    assert [n for n, _ in m.named_parameters()] == ["w", "sub.weight", "sub.bias"]
    assert list(m.named_buffers()) == []
    with pytest.raises(TypeError, match="cannot assign a Tensor to parameter 'w'"):
        m.w = mg.ones(2)
    m.w = None
    assert m.w is None and [n for n, _ in m.named_parameters()] == ["sub.weight", "sub.bias"]
    del m.sub
    assert not hasattr(m, "sub") and list(m.parameters()) == []
    m.register_buffer("stat", mg.zeros(3))
    m.stat = mg.ones(3)
    assert np.all(m.stat.data == 1) and "stat" in m.state_dict()
    with pytest.raises(TypeError, match="buffer 'stat'"):
        m.stat = 3.0
    with pytest.raises(KeyError, match="without '.'"):
        m.register_buffer("a.b", mg.zeros(1))

    class Forgetful(nn.Module):
        def __init__(self):
            self.w = mg.Parameter(np.ones(1))
    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Forgetful()


def test_tied_weights_appear_once_in_parameters_and_twice_in_state_dict():
    m = nn.Module()
    m.emb = nn.Embedding(5, 3)
    m.head = nn.Linear(3, 5, bias=False)
    m.head.weight = m.emb.weight
    assert [n for n, _ in m.named_parameters()] == ["emb.weight"]
    assert list(m.state_dict()) == ["emb.weight", "head.weight"]
    m.load_state_dict({"emb.weight": np.zeros((5, 3)), "head.weight": np.zeros((5, 3))})
    assert m.head.weight is m.emb.weight


def test_train_eval_zero_grad_apply_requires_grad():
    net = Net()
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    out = net.head(net.blocks[1](net.blocks[0](mg.randn(2, 4)))).sum()
    out.backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.data == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    visited = []
    net.apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Net" and visited.count("Linear") == 3
    net.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    assert np.all(net.head.weight.data == 0)
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_to_dtype_keeps_objects_and_integer_buffers():
    bn = nn.BatchNorm1d(3)
    weight = bn.weight
    bn.double()
    assert bn.weight is weight and bn.weight.dtype == np.float64 and bn.running_mean.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64
    bn.to(mg.float32)
    assert bn.weight.dtype == np.float32
    assert bn.to("cpu") is bn
    with pytest.raises(TypeError, match="floating-point"):
        bn.to(mg.int64)


def test_deepcopy_gives_an_independent_module():
    import copy
    net = Net()
    twin = copy.deepcopy(net)
    assert twin.head.weight is not net.head.weight and isinstance(twin.head.weight, mg.Parameter)
    np.testing.assert_array_equal(twin.head.weight.data, net.head.weight.data)
    nn.init.zeros_(twin.head.weight)
    assert np.any(net.head.weight.data != 0)


def test_repr_matches_torch():
    def build(n):
        return n.Sequential(
            n.Embedding(10, 4, padding_idx=0), n.Linear(4, 6), n.GELU(approximate="tanh"), n.LayerNorm(6),
            n.Sequential(n.Linear(6, 6, bias=False), n.ReLU(), n.SiLU()), n.BatchNorm1d(6), n.Softmax(dim=-1),
            n.RMSNorm(6), n.LSTM(6, 5, num_layers=2, batch_first=True, bidirectional=True), n.GRU(6, 5, bias=False),
            n.LSTMCell(3, 2), n.GRUCell(3, 2), n.ModuleDict({"t": n.Tanh(), "s": n.Sigmoid()}), n.Identity())
    assert repr(build(nn)) == repr(build(torch.nn))
    assert repr(nn.Dropout(0.1)) == "Dropout(p=0.1)"


def test_functional_call_follows_tied_weights_and_restores():
    m = nn.Module()
    m.emb = nn.Embedding(5, 3)
    m.head = nn.Linear(3, 5, bias=False)
    m.head.weight = m.emb.weight
    m.forward = lambda idx: m.head(m.emb(idx))
    w = mg.randn(5, 3, requires_grad=True)
    idx = mg.tensor(np.array([0, 3]))
    out = nn.utils.functional_call(m, {"emb.weight": w}, (idx,))
    out.sum().backward()
    assert w.grad is not None and m.emb.weight.grad is None
    np.testing.assert_allclose(out.data, (w.data[[0, 3]] @ w.data.T), rtol=1e-6)
    assert m.head.weight is m.emb.weight and m.emb._parameters["weight"] is m.head.weight
    with pytest.raises(KeyError, match="no parameter or buffer named 'emb.bias'"):
        nn.utils.functional_call(m, {"emb.bias": w}, (idx,))


# ---- initialization -----------------------------------------------------------------------------

@pytest.mark.parametrize("nonlinearity,param", [
    ("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
    ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None)])
def test_calculate_gain(nonlinearity, param):
    want = torch.nn.init.calculate_gain(nonlinearity, param)
    assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(want)


@pytest.mark.parametrize("shape", [(3, 4), (5, 2, 3), (4, 3, 2, 2), (1, 7)])
def test_fan_in_and_fan_out(shape):
    assert nn.init._calculate_fan_in_and_fan_out(mg.zeros(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape))


def test_fan_needs_two_dims():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(mg.zeros(5))


INITS = [
    ("uniform_", dict(a=-0.3, b=0.7)),
    ("normal_", dict(mean=0.5, std=0.2)),
    ("xavier_uniform_", dict(gain=2.0)),
    ("xavier_normal_", dict()),
    ("kaiming_uniform_", dict(a=math.sqrt(5))),
    ("kaiming_uniform_", dict(mode="fan_out", nonlinearity="relu")),
    ("kaiming_normal_", dict()),
    ("kaiming_normal_", dict(mode="fan_out", nonlinearity="tanh")),
]


@pytest.mark.parametrize("name,kwargs", INITS, ids=[f"{n}{k}" for n, k in INITS])
def test_init_distribution_matches_torch(name, kwargs):
    """Same support, mean and standard deviation as torch's init on a (200, 300) tensor (60000 draws)."""
    ours = getattr(nn.init, name)(mg.zeros(200, 300), **kwargs, generator=mg.Generator(1)).data.astype(np.float64)
    theirs = getattr(torch.nn.init, name)(torch.zeros(200, 300), **kwargs).double().numpy()
    scale = theirs.std()
    assert ours.mean() == pytest.approx(theirs.mean(), abs=0.03 * scale)
    assert ours.std() == pytest.approx(scale, rel=0.02)
    if "uniform" in name:
        assert theirs.min() - 0.01 * scale <= ours.min() and ours.max() <= theirs.max() + 0.01 * scale
        assert ours.min() == pytest.approx(theirs.min(), abs=0.01 * scale)


def test_init_in_place_constants_and_generator():
    t = mg.zeros(3, 4, dtype=mg.float64)
    data = t.data
    assert nn.init.ones_(t) is t and t.data is data and np.all(t.data == 1)
    nn.init.constant_(t, 0.25)
    assert np.all(t.data == 0.25) and t.dtype == np.float64
    a = nn.init.normal_(mg.zeros(5), generator=mg.Generator(7)).data
    b = nn.init.normal_(mg.zeros(5), generator=mg.Generator(7)).data
    np.testing.assert_array_equal(a, b)


def _pooled_draws(module, draws=50):
    """name -> every value each parameter took over `draws` calls of reset_parameters()."""
    pooled = {}
    for _ in range(draws):
        for name, p in module.named_parameters():
            value = p.detach().double().numpy() if isinstance(p, torch.Tensor) else p.data.astype(np.float64)
            pooled.setdefault(name, []).append(value.ravel())
        for m in module.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return {name: np.concatenate(values) for name, values in pooled.items()}


@pytest.mark.parametrize("make", [
    lambda n: n.Linear(30, 20),
    lambda n: n.Embedding(30, 20),
    lambda n: n.LSTM(6, 5, num_layers=2),
    lambda n: n.GRU(6, 5, bidirectional=True),
    lambda n: n.LSTMCell(6, 5),
    lambda n: n.GRUCell(6, 5),
    lambda n: n.LayerNorm(7),
    lambda n: n.RMSNorm(7),
    lambda n: n.BatchNorm1d(7),
], ids=["Linear", "Embedding", "LSTM", "GRU", "LSTMCell", "GRUCell", "LayerNorm", "RMSNorm", "BatchNorm1d"])
def test_layer_init_matches_torch_defaults(make):
    """Each parameter, pooled over 50 re-initializations: same support and standard deviation as torch's."""
    mg.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = make(nn), make(torch.nn)
    assert [(n, p.shape, p.dtype) for n, p in ours.named_parameters()] == \
        [(n, tuple(t.shape), np.float32) for n, t in theirs.named_parameters()]
    for (name, b), t in zip(ours.named_buffers(), theirs.buffers()):
        np.testing.assert_array_equal(b.data, t.numpy(), err_msg=name)
    ours, theirs = _pooled_draws(ours), _pooled_draws(theirs)
    for name, t in theirs.items():
        w = ours[name]
        if t.std() == 0:  # ones / zeros
            np.testing.assert_array_equal(w, t, err_msg=name)
            continue
        se = 1 / math.sqrt(w.size)  # standard error of the mean (in std units); the std's is about se / sqrt(2)
        assert w.std() == pytest.approx(t.std(), rel=5 * se), name
        assert w.mean() == pytest.approx(t.mean(), abs=5 * se * t.std()), name
        if np.abs(t).max() < 2 * t.std():  # uniform: the same bound (a normal reaches past 2 std)
            assert np.abs(t).max() * 0.97 <= np.abs(w).max() <= np.abs(t).max() * 1.03, name


def test_layers_take_a_generator_and_a_dtype():
    a = nn.Linear(4, 3, generator=mg.Generator(5), dtype=mg.float64)
    b = nn.Linear(4, 3, generator=mg.Generator(5), dtype=mg.float64)
    assert a.weight.dtype == np.float64 and a.bias.dtype == np.float64
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    mg.manual_seed(3)
    c = nn.LSTM(3, 4)
    mg.manual_seed(3)
    d = nn.LSTM(3, 4)
    np.testing.assert_array_equal(c.weight_hh_l0.data, d.weight_hh_l0.data)
