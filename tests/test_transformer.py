"""nn.Transformer and its layers against torch.nn.Transformer itself, with torch's weights; SwiGLU and the FFN
against torch formulations.

torch's state_dict loads into the minigrad module; the output and the gradients of every input and every
parameter are compared in float64 (tight) and float32 (realistic) under a random upstream gradient, through
functional_call on both sides. Sizes are odd (d_model 10, 2 heads of 5, feed-forward 7, S 5, T 4, N 3), the
LayerNorm weights are randomized (ones and zeros would hide mistakes), and the cases cover batch_first both
ways, norm_first both ways, relu/gelu, bias=False, unbatched inputs and every mask argument.
"""
import pytest
import torch

import minigrad as mg
from minigrad import nn
from minigrad.backend import np
from minigrad.nn.transformer import (FeedForward, SwiGLU, Transformer, TransformerDecoder, TransformerDecoderLayer,
                                     TransformerEncoder, TransformerEncoderLayer, generate_square_subsequent_mask,
                                     swiglu_hidden_size)
from book.testing import check_against_torch, random_array

pytestmark = [pytest.mark.filterwarnings("ignore:enable_nested_tensor is True"),
              pytest.mark.filterwarnings("ignore:Support for mismatched")]  # masks of both types on purpose

E, H, FF, S, T, N = 10, 2, 7, 5, 4, 3


def _randomize_norms(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_((torch.rand(p.shape, generator=gen) + 0.5) if name.endswith("weight")
                        else 0.1 * torch.randn(p.shape, generator=gen))


def check_twin(torch_module, mg_module, arrays, masks=None, forward_kwargs=None):
    """arrays: the tensor inputs (src / tgt / memory); masks: dict of mask arguments (bool or float arrays)."""
    masks, forward_kwargs = masks or {}, forward_kwargs or {}
    torch_module = torch_module.double().eval()
    _randomize_norms(torch_module)
    mg_module.double().eval().load_state_dict(torch_module.state_dict())
    names = [n for n, _ in torch_module.named_parameters()]
    assert [n for n, _ in mg_module.named_parameters()] == names
    params = [p.detach().numpy().copy() for p in torch_module.parameters()]
    mask_names, n_in = list(masks), len(arrays)

    def call(module, functional_call, args):
        module.to(args[0].dtype)
        mask_args = dict(zip(mask_names, args[n_in:n_in + len(mask_names)]))
        weights = dict(zip(names, args[n_in + len(mask_names):]))
        return functional_call(module, weights, tuple(args[:n_in]), {**mask_args, **forward_kwargs})

    float_masks = tuple(n_in + i for i, m in enumerate(masks.values()) if m.dtype != bool)
    check_against_torch(lambda *a: call(mg_module, nn.utils.functional_call, a),
                        lambda *a: call(torch_module, torch.func.functional_call, a),
                        [*arrays, *masks.values(), *params], no_grad=float_masks)


def _shape(length, batch_first, batched=True):
    if not batched:
        return (length, E)
    return (N, length, E) if batch_first else (length, N, E)


def _causal(n):
    return np.triu(np.full((n, n), -np.inf), 1)


def _padding(n, seed):
    pad = np.random.default_rng(seed).random((N, n)) > 0.6   # True = ignore this key
    pad[:, 0] = False                                        # torch gives NaN when a query sees no key
    return pad


LAYER_OPTIONS = [dict(batch_first=bf, norm_first=nf) for bf in (False, True) for nf in (False, True)] + [
    dict(activation="gelu", bias=False, layer_norm_eps=1e-3, batch_first=True)]
IDS = ["-".join(f"{k}={v}" for k, v in o.items()) for o in LAYER_OPTIONS]


@pytest.mark.parametrize("options", LAYER_OPTIONS, ids=IDS)
def test_encoder_layer_matches_torch(options):
    kwargs = dict(dim_feedforward=FF, dropout=0.0, **options)
    torch.manual_seed(0)
    bf = options.get("batch_first", False)
    check_twin(torch.nn.TransformerEncoderLayer(E, H, **kwargs), TransformerEncoderLayer(E, H, **kwargs),
               [random_array(_shape(S, bf), 1)],
               masks=dict(src_mask=random_array((S, S), 2), src_key_padding_mask=_padding(S, 3)))


@pytest.mark.parametrize("options", LAYER_OPTIONS, ids=IDS)
def test_decoder_layer_matches_torch(options):
    kwargs = dict(dim_feedforward=FF, dropout=0.0, **options)
    torch.manual_seed(0)
    bf = options.get("batch_first", False)
    check_twin(torch.nn.TransformerDecoderLayer(E, H, **kwargs), TransformerDecoderLayer(E, H, **kwargs),
               [random_array(_shape(T, bf), 1), random_array(_shape(S, bf), 2)],
               masks=dict(tgt_mask=_causal(T), memory_key_padding_mask=_padding(S, 3),
                          tgt_key_padding_mask=_padding(T, 4)),
               forward_kwargs=dict(tgt_is_causal=True))


@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_match_torch(norm_first):
    kwargs = dict(dim_feedforward=FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(E, H, **kwargs)
    encoder = torch.nn.TransformerEncoder(layer, 3, norm=torch.nn.LayerNorm(E) if norm_first else None,
                                          enable_nested_tensor=False)
    for p in encoder.parameters():  # torch's clones start equal; make the layers differ
        torch.nn.init.normal_(p, std=0.3)
    ours = TransformerEncoder(TransformerEncoderLayer(E, H, **kwargs), 3, norm=nn.LayerNorm(E) if norm_first else None)
    check_twin(encoder, ours, [random_array((N, S, E), 1)], masks=dict(mask=_causal(S)))

    decoder = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(E, H, **kwargs), 2,
                                          norm=torch.nn.LayerNorm(E))
    for p in decoder.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ours = TransformerDecoder(TransformerDecoderLayer(E, H, **kwargs), 2, norm=nn.LayerNorm(E))
    memory_mask = np.random.default_rng(3).random((T, S)) > 0.7
    memory_mask[:, 0] = False
    check_twin(decoder, ours, [random_array((N, T, E), 1), random_array((N, S, E), 2)],
               masks=dict(tgt_mask=_causal(T), memory_mask=memory_mask))


TRANSFORMER_CASES = [  # (constructor options, batched, masks builder)
    (dict(), True, "causal"),
    (dict(batch_first=True), True, "causal"),
    (dict(norm_first=True), True, "all"),
    (dict(batch_first=True, norm_first=True, activation="gelu"), True, "all"),
    (dict(batch_first=True, bias=False), True, "bool"),
    (dict(), False, "causal"),                                    # unbatched (S, E), (T, E)
]


def _transformer_masks(kind, batched):
    if kind == "causal":
        return dict(tgt_mask=_causal(T))
    if kind == "bool":
        return dict(tgt_mask=np.triu(np.ones((T, T), bool), 1), src_key_padding_mask=_padding(S, 5),
                    memory_key_padding_mask=_padding(S, 5))
    memory_mask = np.random.default_rng(6).random((T, S)) > 0.6
    memory_mask[:, 0] = False
    return dict(src_mask=random_array((S, S), 7), tgt_mask=_causal(T), memory_mask=memory_mask,
                src_key_padding_mask=_padding(S, 8), tgt_key_padding_mask=_padding(T, 9),
                memory_key_padding_mask=_padding(S, 8))


def _case_id(options, batched, masks):
    return "-".join([*(f"{k}={v}" for k, v in options.items()), "batched" if batched else "unbatched", masks])


@pytest.mark.parametrize("options, batched, masks", TRANSFORMER_CASES, ids=[_case_id(*c) for c in TRANSFORMER_CASES])
def test_transformer_matches_torch(options, batched, masks):
    kwargs = dict(num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=FF, dropout=0.0, **options)
    torch.manual_seed(0)
    bf = options.get("batch_first", False)
    check_twin(torch.nn.Transformer(E, H, **kwargs), Transformer(E, H, **kwargs),
               [random_array(_shape(S, bf, batched), 1), random_array(_shape(T, bf, batched), 2)],
               masks=_transformer_masks(masks, batched))


def test_names_shapes_and_init_follow_torch():
    ours, theirs = Transformer(16, 4, 2, 3, 24), torch.nn.Transformer(16, 4, 2, 3, 24)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    for name, p in ours.named_parameters():  # xavier_uniform_ on every matrix, zero attention biases, LN at (1, 0)
        if p.ndim > 1:
            fan_out, fan_in = p.shape
            bound = np.sqrt(6 / (fan_in + fan_out))
            assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.9 * bound, name
        elif name.endswith("in_proj_bias") or name.endswith("out_proj.bias") or "norm" in name and "bias" in name:
            assert not p.data.any(), name
    layer = TransformerEncoderLayer(8, 2, 16)
    stack = TransformerEncoder(layer, 3)
    first = stack.layers[0].linear1.weight.data
    assert all(np.array_equal(lay.linear1.weight.data, first) for lay in stack.layers)  # clones start equal, as torch
    assert stack.layers[1].linear1.weight is not stack.layers[0].linear1.weight          # ... but are not shared


def test_square_subsequent_mask_and_causal_detection():
    ours = Transformer.generate_square_subsequent_mask(5)
    theirs = torch.nn.Transformer.generate_square_subsequent_mask(5)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours.data, theirs.numpy())
    np.testing.assert_array_equal(generate_square_subsequent_mask(3, dtype=mg.float64).data, _causal(3))
    from torch.nn.modules.transformer import _detect_is_causal_mask
    from minigrad.nn.transformer import _is_causal_mask
    for mask in [_causal(4), np.triu(np.ones((4, 4), bool), 1), np.zeros((4, 4)), _causal(3), None]:
        t_mask = None if mask is None else torch.from_numpy(mask)
        for hint in (None, True, False):
            assert _is_causal_mask(mask, hint, 4) == _detect_is_causal_mask(t_mask, hint, 4), (mask, hint)


def test_dropout_only_in_training():
    model = Transformer(8, 2, 1, 1, 16, dropout=0.5, batch_first=True)
    src, tgt = mg.randn(2, 5, 8), mg.randn(2, 4, 8)
    model.eval()
    np.testing.assert_array_equal(model(src, tgt).data, model(src, tgt).data)
    model.train()
    assert not np.allclose(model(src, tgt).data, model(src, tgt).data)


@pytest.mark.parametrize("make_call, error, message", [
    (lambda: TransformerEncoderLayer(E, H, activation="tanh"), ValueError, "'relu' or 'gelu'"),
    (lambda: TransformerEncoderLayer(E, H)(mg.randn(S, N, E + 1)), ValueError, r"src must be \(T, N, 10\)"),
    (lambda: Transformer(E, H, 1, 1, FF)(mg.randn(S, N, E), mg.randn(T, N + 1, E)), ValueError, "batch sizes"),
    (lambda: Transformer(E, H, 1, 1, FF)(mg.randn(S, N, E), mg.randn(T, E)), ValueError, "both be batched"),
    (lambda: TransformerDecoderLayer(E, H)(mg.randn(T, N, E), mg.randn(S, N, E), tgt_is_causal=True), ValueError,
     "is_causal"),
])
def test_bad_input_is_explained(make_call, error, message):
    with pytest.raises(error, match=message):
        make_call()


# ---- feed-forward blocks ----------------------------------------------------------------------

def _torch_swiglu(x, w1, w3, w2):
    """Shazeer (2020), FFN_SwiGLU(x) = (Swish_1(x W) * x V) W_2, with torch's (out, in) weights."""
    return torch.nn.functional.silu(x @ w1.T) * (x @ w3.T) @ w2.T


@pytest.mark.parametrize("shape", [(2, 5, 6), (7, 6), (6,)])
def test_swiglu_matches_torch(shape):
    module = SwiGLU(6, 9)
    weights = [random_array((9, 6), 1), random_array((9, 6), 2), random_array((6, 9), 3)]  # w1, w3, w2

    def ours(x, w1, w3, w2):
        module.to(x.dtype)
        return nn.utils.functional_call(module, {"w1.weight": w1, "w3.weight": w3, "w2.weight": w2}, (x,))
    check_against_torch(ours, _torch_swiglu, [random_array(shape, 4), *weights])
    assert [n for n, _ in module.named_parameters()] == ["w1.weight", "w3.weight", "w2.weight"]


def test_swiglu_with_bias_and_feedforward_match_torch():
    torch.manual_seed(0)
    ref = torch.nn.ModuleDict(dict(w1=torch.nn.Linear(6, 9), w3=torch.nn.Linear(6, 9), w2=torch.nn.Linear(9, 6)))
    ref = ref.double()
    ours = SwiGLU(6, 9, bias=True).double()
    ours.load_state_dict(ref.state_dict())
    x = random_array((3, 6), 1)
    want = ref.w2(torch.nn.functional.silu(ref.w1(torch.from_numpy(x))) * ref.w3(torch.from_numpy(x)))
    np.testing.assert_allclose(ours(mg.tensor(x)).data, want.detach().numpy(), rtol=1e-12)
    for activation, module in (("relu", torch.nn.ReLU()), ("gelu", torch.nn.GELU())):
        ffn = torch.nn.Sequential(torch.nn.Linear(6, 11), module, torch.nn.Linear(11, 6)).double()
        ours = FeedForward(6, 11, activation=activation).double()
        ours.load_state_dict({"linear1.weight": ffn[0].weight, "linear1.bias": ffn[0].bias,
                              "linear2.weight": ffn[2].weight, "linear2.bias": ffn[2].bias})
        np.testing.assert_allclose(ours(mg.tensor(x)).data, ffn(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("d_model", [64, 96, 768])
def test_swiglu_hidden_size_matches_the_ffn_parameters(d_model):
    h = swiglu_hidden_size(d_model)
    ffn = sum(p.numel() for p in torch.nn.Sequential(torch.nn.Linear(d_model, 4 * d_model, bias=False),
                                                     torch.nn.Linear(4 * d_model, d_model, bias=False)).parameters())
    swiglu = sum(p.data.size for p in SwiGLU(d_model, h).parameters())
    assert abs(swiglu - ffn) <= 3 * d_model  # within one hidden unit
    assert swiglu_hidden_size(4096, 4 * 4096, multiple_of=256) == 11008  # LLaMA-7B's width
