"""nn.MultiheadAttention against torch.nn.MultiheadAttention with torch's weights.

torch's state_dict loads into the minigrad module; the output, the attention weights and the gradients of
query, key, value and every parameter are compared in float64 and float32 under random upstream gradients,
across layouts (batch_first, unbatched), kdim/vdim, bias options, masks (bool and float, padding and
attention) and weight averaging.
"""
import pytest
import torch

import minigrad as mg
from minigrad import nn
from minigrad.backend import np
from book.testing import check_against_torch, random_array

E, H = 12, 3


def check_mha(kwargs, q_shape, kv_shapes, masks=None, forward_kwargs=None, seed=0, learned_masks=False):
    """masks: dict of forward mask arguments (numpy arrays, bool or float), passed to both modules; with
    learned_masks the float ones require grad and their gradients are compared too."""
    masks, forward_kwargs = masks or {}, forward_kwargs or {}
    torch.manual_seed(seed)
    torch_mha = torch.nn.MultiheadAttention(E, H, **kwargs).double().eval()
    mg_mha = nn.MultiheadAttention(E, H, **kwargs).double().eval()
    mg_mha.load_state_dict(torch_mha.state_dict())
    names = [n for n, _ in torch_mha.named_parameters()]
    assert [n for n, _ in mg_mha.named_parameters()] == names
    params = [p.detach().numpy().copy() for _, p in torch_mha.named_parameters()]
    mask_names = list(masks)

    def call(module, functional_call, args):
        module.to(args[0].dtype)
        q, k, v = args[:3]
        mask_args = dict(zip(mask_names, args[3:3 + len(mask_names)]))
        weights = dict(zip(names, args[3 + len(mask_names):]))
        out = functional_call(module, weights, (q, k, v), {**mask_args, **forward_kwargs})
        return tuple(t for t in out if t is not None)

    inputs = [random_array(q_shape, seed + 1), random_array(kv_shapes[0], seed + 2), random_array(kv_shapes[1], seed + 3),
              *masks.values(), *params]
    float_masks = () if learned_masks else tuple(3 + i for i, m in enumerate(masks.values()) if m.dtype != bool)
    return check_against_torch(lambda *a: call(mg_mha, nn.utils.functional_call, a),
                               lambda *a: call(torch_mha, torch.func.functional_call, a),
                               inputs, no_grad=float_masks)


L, S, N = 5, 7, 2

LAYOUTS = [  # (constructor kwargs, query shape, (key shape, value shape))
    (dict(), (L, N, E), ((S, N, E), (S, N, E))),
    (dict(batch_first=True), (N, L, E), ((N, S, E), (N, S, E))),
    (dict(), (L, E), ((S, E), (S, E))),                                          # unbatched
    (dict(kdim=5, vdim=4, batch_first=True), (N, L, E), ((N, S, 5), (N, S, 4))),  # separate q/k/v weights
    (dict(bias=False), (L, N, E), ((S, N, E), (S, N, E))),
    (dict(add_bias_kv=True), (L, N, E), ((S, N, E), (S, N, E))),
    (dict(add_zero_attn=True, batch_first=True), (N, L, E), ((N, S, E), (N, S, E))),
    (dict(), (1, 1, E), ((1, 1, E), (1, 1, E))),
]


@pytest.mark.parametrize("kwargs, q_shape, kv_shapes", LAYOUTS, ids=[str(i) for i in range(len(LAYOUTS))])
@pytest.mark.parametrize("need_weights, average", [(True, True), (True, False), (False, True)])
def test_mha_matches_torch(kwargs, q_shape, kv_shapes, need_weights, average):
    check_mha(kwargs, q_shape, kv_shapes,
              forward_kwargs=dict(need_weights=need_weights, average_attn_weights=average))


def _keep_one_key(ignore):
    ignore[..., 0] = False  # torch gives NaN when a query ignores every key
    return ignore


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("kwargs", [dict(batch_first=True), dict(batch_first=True, add_bias_kv=True),
                                    dict(batch_first=True, add_zero_attn=True)], ids=["plain", "bias_kv", "zero_attn"])
def test_mha_masks_match_torch(kind, kwargs):
    rng = np.random.default_rng(5)
    padding = _keep_one_key(rng.random((N, S)) > 0.6)     # True = ignore this key
    attention = _keep_one_key(rng.random((L, S)) > 0.7)
    if kind == "float":
        padding = np.where(padding, -np.inf, rng.standard_normal((N, S)))
        attention = np.where(attention, -np.inf, rng.standard_normal((L, S)))
    check_mha(kwargs, (N, L, E), ((N, S, E), (N, S, E)),
              masks=dict(key_padding_mask=padding, attn_mask=attention),
              forward_kwargs=dict(average_attn_weights=False))


@pytest.mark.parametrize("kwargs, q_shape, kv_shapes", [LAYOUTS[0], LAYOUTS[5], LAYOUTS[6]],
                         ids=["plain", "bias_kv", "zero_attn"])
def test_mha_learned_float_masks_get_their_gradients(kwargs, q_shape, kv_shapes):
    """Finite float masks that require grad (learned biases): per-head attn_mask (N*H, L, S) and a float
    key_padding_mask, their gradients against torch's, also when extra keys are appended."""
    masks = dict(attn_mask=random_array((N * H, L, S), seed=11), key_padding_mask=random_array((N, S), seed=12))
    check_mha(kwargs, q_shape, kv_shapes, masks=masks, learned_masks=True)


def test_mha_per_head_attn_mask_and_causal_hint():
    per_head = _keep_one_key(np.random.default_rng(6).random((N * H, L, S)) > 0.5)
    check_mha(dict(), (L, N, E), ((S, N, E), (S, N, E)), masks=dict(attn_mask=per_head))
    causal = np.triu(np.ones((L, L), dtype=bool), 1)
    check_mha(dict(batch_first=True), (N, L, E), ((N, L, E), (N, L, E)), masks=dict(attn_mask=causal),
              forward_kwargs=dict(is_causal=True, need_weights=False))


def test_mha_unbatched_padding_mask():
    padding = _keep_one_key(np.random.default_rng(7).random(S) > 0.5)
    check_mha(dict(), (L, E), ((S, E), (S, E)), masks=dict(key_padding_mask=padding))


def test_mha_fully_masked_query_gives_zeros_not_nan():
    mha = nn.MultiheadAttention(E, H, batch_first=True).double()
    q = mg.tensor(random_array((N, L, E), 1), requires_grad=True)
    attention = np.zeros((L, S), dtype=bool)
    attention[2] = True
    out, weights = mha(q, mg.tensor(random_array((N, S, E), 2)), mg.tensor(random_array((N, S, E), 3)),
                       attn_mask=attention)
    out.backward(random_array(out.shape, 4))
    np.testing.assert_array_equal(weights.data[:, 2], 0)
    np.testing.assert_allclose(out.data[:, 2], np.broadcast_to(mha.out_proj.bias.data, (N, E)))  # only the bias
    np.testing.assert_array_equal(q.grad.data[:, 2], 0)
    assert np.isfinite(mha.in_proj_weight.grad.data).all()


def test_mha_dropout_only_in_training():
    mha = nn.MultiheadAttention(E, H, dropout=0.5, batch_first=True)
    x = mg.randn(N, L, E)
    mha.eval()
    out_eval, w_eval = mha(x, x, x, average_attn_weights=False)            # (N, H, L, L)
    np.testing.assert_allclose(w_eval.sum(-1).data, 1, rtol=1e-5)
    mha.train()
    out_train, w_train = mha(x, x, x, average_attn_weights=False)
    dropped = w_train.data == 0
    assert 0.3 < dropped.mean() < 0.7  # about half of the weights are dropped ...
    np.testing.assert_allclose(w_train.data[~dropped], 2 * w_eval.data[~dropped], rtol=1e-5)  # ... the rest doubled
    assert not np.allclose(out_train.data, out_eval.data)


def test_mha_default_init_statistics_match_torch():
    """Same init scheme as torch: xavier_uniform_ in_proj (bound sqrt(6 / (E + 3E))), zero biases."""
    big = nn.MultiheadAttention(256, 4)
    bound = np.sqrt(6 / (256 + 3 * 256))
    w = big.in_proj_weight.data
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02)
    assert not big.in_proj_bias.data.any() and not big.out_proj.bias.data.any()


@pytest.mark.parametrize("make_call, message", [
    (lambda m: m(mg.randn(L, N, E), mg.randn(S, N, E + 1), mg.randn(S, N, E)), "feature sizes"),
    (lambda m: m(mg.randn(L, N, E), mg.randn(S, N, E), mg.randn(S + 1, N, E)), "same batch and sequence"),
    (lambda m: m(mg.randn(L, N, E), mg.randn(S, N + 1, E), mg.randn(S, N + 1, E)), "different batch sizes"),
    (lambda m: m(mg.randn(N, L, E, 1), mg.randn(S, N, E), mg.randn(S, N, E)), r"2-D \(unbatched\) or 3-D"),
    (lambda m: m(mg.randn(L, N, E), mg.randn(S, N, E), mg.randn(S, N, E), key_padding_mask=np.zeros((S, N), bool)),
     "key_padding_mask must be"),
    (lambda m: m(mg.randn(L, N, E), mg.randn(S, N, E), mg.randn(S, N, E), attn_mask=np.zeros((S, L), bool)),
     "attn_mask must be"),
    (lambda m: m(mg.randn(L, N, E), mg.randn(S, N, E), mg.randn(S, N, E), is_causal=True), "is_causal"),
])
def test_mha_bad_input_is_explained(make_call, message):
    with pytest.raises(ValueError, match=message):
        make_call(nn.MultiheadAttention(E, H))


def test_mha_rejects_heads_that_do_not_divide():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        nn.MultiheadAttention(10, 3)
