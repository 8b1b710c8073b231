"""RoutingAttention and routing_attention against a PyTorch twin written here from the paper and the official code.

The twin routes with torch.topk over the same centroids, gathers with torch.gather, attends with its own masked
softmax and scatters back with scatter_add; the minigrad module gets the twin's state_dict (centroids included).
Outputs, the commitment loss and the gradients of the input and every parameter are compared in float64 and
float32 under random upstream gradients, at odd lengths.
"""
import math

import pytest
import torch
import torch.nn.functional as TF

import minigrad as mg
from minigrad.backend import np
from book.efficient_attention import RoutingAttention, route, routing_attention
from book.testing import check_against_torch, check_module_against_torch, random_array


# ---- the twin -----------------------------------------------------------------------------------

def torch_masked_attention(q, k, v, seen, scale):
    """softmax(scale q k^T) v over the keys `seen` allows; a query that sees no key gets 0 (not NaN)."""
    scores = (scale * q @ k.transpose(-1, -2)).masked_fill(~seen, -torch.inf)
    any_seen = seen.any(dim=-1, keepdim=True)
    return torch.softmax(scores.masked_fill(~any_seen, 0.0), dim=-1) * any_seen @ v


def torch_route(x, centroids, window):
    scores = torch.einsum("bhtd,hcd->bhct", x, centroids)
    return scores.topk(window, dim=-1).indices.sort(dim=-1).values               # (B, H, C, w)


def torch_routing_attention(q, k, v, q_idx, k_idx, causal=True):
    """Gather each cluster, attend with the positional causal mask, scatter-add back, divide by count + 1e-2."""
    B, H, T, D = q.shape
    C, w = q_idx.shape[2:]

    def gather(x, idx):
        return x.gather(2, idx.reshape(B, H, -1, 1).expand(-1, -1, -1, x.shape[-1])).reshape(B, H, C, -1, x.shape[-1])
    seen = q_idx[..., :, None] >= k_idx[..., None, :] if causal else torch.ones(B, H, C, w, k_idx.shape[-1],
                                                                                  dtype=torch.bool)
    out = torch_masked_attention(gather(q, q_idx), gather(k, k_idx), gather(v, k_idx), seen, D ** -0.5)
    flat = q_idx.reshape(B, H, -1, 1)
    summed = torch.zeros(B, H, T, v.shape[-1], dtype=q.dtype).scatter_add(
        2, flat.expand(-1, -1, -1, v.shape[-1]), out.reshape(B, H, -1, v.shape[-1]))
    counts = torch.zeros(B, H, T, dtype=q.dtype).scatter_add(2, flat[..., 0], torch.ones(flat[..., 0].shape,
                                                                                          dtype=q.dtype))
    return summed / (counts[..., None] + 1e-2)


class TorchRouting(torch.nn.Module):
    def __init__(self, E, H, C, window=None, local_heads=0, local_window=None, shared_qk=True, causal=True):
        super().__init__()
        self.H, self.D, self.Hr, self.C, self.window = H, E // H, H - local_heads, C, window
        self.local_window, self.shared_qk, self.causal = local_window, shared_qk, causal
        self.q_proj = torch.nn.Linear(E, E, bias=False)
        self.k_proj = None if shared_qk else torch.nn.Linear(E, E, bias=False)
        self.v_proj = torch.nn.Linear(E, E, bias=False)
        self.out_proj = torch.nn.Linear(E, E, bias=False)
        centroids = TF.layer_norm(torch.randn(self.Hr, C, self.D), (self.D,))
        self.register_buffer("centroids", centroids)
        self.register_buffer("ema_count", torch.zeros(self.Hr, C))
        self.register_buffer("ema_sum", centroids.clone())

    def forward(self, x):
        B, T, E = x.shape
        H, D, Hr = self.H, self.D, self.Hr

        def heads(t):
            return t.reshape(B, T, H, D).transpose(1, 2)
        q = heads(self.q_proj(x))
        k = q if self.shared_qk else heads(self.k_proj(x))
        v = heads(self.v_proj(x))
        qr = TF.layer_norm(q[:, :Hr], (D,), eps=1e-6)
        kr = qr if self.shared_qk else TF.layer_norm(k[:, :Hr], (D,), eps=1e-6)
        window = self.window or math.ceil(T / self.C)
        q_idx = torch_route(qr.detach(), self.centroids, window)
        k_idx = q_idx if self.shared_qk else torch_route(kr.detach(), self.centroids, window)
        out = [torch_routing_attention(qr, kr, v[:, :Hr], q_idx, k_idx, self.causal)]
        if Hr < H:
            i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
            band = (j <= i) & (i - j < self.local_window)
            out.append(torch_masked_attention(q[:, Hr:], k[:, Hr:], v[:, Hr:], band, D ** -0.5))
        self.commitment_loss = 0
        for r in [qr] if self.shared_qk else [qr, kr]:
            nearest = torch.einsum("bhtd,hcd->bhtc", r, self.centroids).argmax(-1)
            mu = self.centroids[torch.arange(Hr)[:, None], nearest]
            self.commitment_loss = self.commitment_loss + 1e-4 * ((r - mu) ** 2).mean()
        return self.out_proj(torch.cat(out, dim=1).transpose(1, 2).reshape(B, T, E))


# ---- the module against the twin ----------------------------------------------------------------

CONFIGS = {  # (H, C, window, local_heads, local_window, shared_qk, causal)
    "shared-causal": (2, 3, None, 0, None, True, True),
    "separate-qk": (2, 3, None, 0, None, False, True),
    "local-heads": (4, 3, 6, 2, 5, True, True),
    "overlapping-clusters": (2, 4, 9, 0, None, True, True),
    "non-causal": (2, 3, None, 0, None, False, False),
}


@pytest.mark.parametrize("T", [13, 40])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_routing_attention_module_matches_torch(config, T):
    H, C, window, local_heads, local_window, shared_qk, causal = CONFIGS[config]
    E = 8 * H
    torch.manual_seed(T)
    twin = TorchRouting(E, H, C, window, local_heads, local_window, shared_qk, causal)
    module = RoutingAttention(E, H, C, window, local_heads, local_window, shared_qk, causal)
    check_module_against_torch(module, twin, random_array((2, T, E), seed=T),
                 outputs=lambda m, out: (out, m.commitment_loss))


def _routing_inputs(T=13, C=3, window=5, shared=True, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((2, 2, T, 4)) for _ in range(3))
    centroids = rng.standard_normal((2, C, 4))
    q_idx = route(q, centroids, window)
    k_idx = q_idx if shared else route(k, centroids, window)
    return q, k, v, q_idx, k_idx


@pytest.mark.parametrize("dense", [False, True], ids=["gathered", "dense"])
@pytest.mark.parametrize("shared, causal", [(True, True), (False, True), (False, False)])
def test_routing_attention_forms_match_torch(dense, shared, causal):
    q, k, v, q_idx, k_idx = _routing_inputs(T=40, C=4, window=13, shared=shared)
    check_against_torch(
        lambda q, k, v, qi, ki: routing_attention(q, k, v, qi, ki, causal=causal, dense=dense),
        lambda q, k, v, qi, ki: torch_routing_attention(q, k, v, qi, ki, causal=causal),
        [q, k, v, q_idx, k_idx])


def test_dense_and_gathered_forms_are_equal():
    q, k, v, q_idx, k_idx = _routing_inputs(T=13, C=3, window=6, shared=False, seed=3)
    results = []
    for dense in (False, True):
        tensors = [mg.tensor(a, requires_grad=True) for a in (q, k, v)]
        out = routing_attention(*tensors, q_idx, k_idx, dense=dense)
        out.backward(random_array(out.shape, seed=4))
        results.append([out.data] + [t.grad.data for t in tensors])
    for gathered, dense in zip(*results):
        np.testing.assert_allclose(gathered, dense, rtol=1e-12, atol=1e-12)


def test_one_cluster_holding_everything_is_causal_attention():
    """C = 1, w = T: every token in the one cluster, so the output is causal attention / (1 + 1e-2)."""
    q, k, v, _, _ = _routing_inputs(T=13)
    everything = np.broadcast_to(np.arange(13), (2, 2, 1, 13))
    check_against_torch(lambda q, k, v: routing_attention(q, k, v, everything, everything),
                        lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True) / (1 + 1e-2),
                        [q, k, v])


def test_route_takes_the_top_w_tokens_per_centroid_in_position_order():
    rng = np.random.default_rng(1)
    x, centroids = rng.standard_normal((2, 3, 17, 4)), rng.standard_normal((3, 5, 4))
    clusters = route(x, centroids, 6)
    assert clusters.shape == (2, 3, 5, 6) and clusters.dtype == np.int64
    assert (np.diff(clusters, axis=-1) > 0).all()                       # distinct, increasing positions
    scores = np.einsum("bhtd,hcd->bhct", x, centroids)
    chosen = np.take_along_axis(scores, clusters, axis=-1)
    threshold = np.sort(scores, axis=-1)[..., -6]                       # the 6th-highest score per cluster
    assert (chosen >= threshold[..., None]).all()


def test_tokens_routed_nowhere_get_zero_output_and_gradient():
    q, k, v, _, _ = _routing_inputs(T=13)
    clusters = np.broadcast_to(np.array([[0, 2, 4], [5, 6, 7]]), (2, 2, 2, 3))  # positions 1, 3, 8.. unrouted
    tensors = [mg.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = routing_attention(*tensors, clusters, clusters)
    out.backward(random_array(out.shape, seed=2))
    unrouted = [1, 3, 8, 9, 10, 11, 12]
    assert not out.data[:, :, unrouted].any() and not tensors[0].grad.data[:, :, unrouted].any()


def test_update_centroids_is_the_laplace_smoothed_ema_of_assigned_vectors():
    module = RoutingAttention(8, 2, num_clusters=3)
    before = {n: b.data.copy() for n, b in module.named_buffers()}
    x = random_array((2, 2, 11, 4), seed=5).astype("float32")
    module.update_centroids(decay=0.9, vectors=[x])
    nearest = np.einsum("bhnd,hcd->bhnc", x, before["centroids"]).argmax(-1)
    for h in range(2):
        count = np.array([(nearest[:, h] == c).sum() for c in range(3)], dtype=float)
        total = np.stack([x[:, h][nearest[:, h] == c].sum(axis=0) for c in range(3)])
        ema_count = 0.9 * before["ema_count"][h] + 0.1 * count
        ema_sum = 0.9 * before["ema_sum"][h] + 0.1 * total
        n = ema_count.sum()
        smoothed = (ema_count + 1e-5) / (n + 3e-5) * n
        np.testing.assert_allclose(module.ema_count.data[h], ema_count, rtol=1e-6)
        np.testing.assert_allclose(module.centroids.data[h], ema_sum / smoothed[:, None], rtol=1e-5, atol=1e-6)


def test_update_centroids_uses_the_last_forward_and_no_gradient():
    module = RoutingAttention(8, 2, num_clusters=3, shared_qk=False)
    x = mg.randn(2, 9, 8, requires_grad=True)
    module(x).sum().backward()
    assert len(module.routed) == 2 and not any(r.requires_grad for r in module.routed)
    before = module.centroids.data.copy()
    module.update_centroids(0.5)
    assert not np.allclose(before, module.centroids.data)
    assert not module.centroids.requires_grad and "centroids" not in dict(module.named_parameters())


@pytest.mark.parametrize("make, message", [
    (lambda: RoutingAttention(10, 3, 2), "multiple of num_heads"),
    (lambda: RoutingAttention(8, 2, 2, local_heads=2, local_window=3), "at least one head routes"),
    (lambda: RoutingAttention(8, 2, 2, local_heads=1), "local_window"),
    (lambda: RoutingAttention(8, 2, 2, window=20)(mg.randn(1, 5, 8)), "exceeds the sequence length"),
    (lambda: RoutingAttention(8, 2, 2)(mg.randn(1, 5, 6)), r"expected x \(B, T, 8\)"),
    (lambda: RoutingAttention(8, 2, 2).update_centroids(), "run a forward first"),
    (lambda: RoutingAttention(8, 2, 2).update_centroids(1.0, [np.zeros((1, 2, 3, 4))]), "decay"),
    (lambda: route(np.zeros((1, 2, 5, 4)), np.zeros((3, 2, 4)), 2), "centroids"),
    (lambda: route(np.zeros((1, 2, 5, 4)), np.zeros((2, 2, 4)), 6), "window"),
    (lambda: routing_attention(mg.randn(1, 2, 5, 4), mg.randn(1, 2, 5, 4), mg.randn(1, 2, 5, 3),
                               np.zeros((1, 2, 2, 2), int), np.full((1, 2, 2, 2), 9)), r"positions in \[0, 5\)"),
    (lambda: routing_attention(mg.randn(1, 2, 5, 4), mg.randn(1, 2, 5, 3), mg.randn(1, 2, 5, 3),
                               np.zeros((1, 2, 2, 2), int), np.zeros((1, 2, 2, 2), int)), "expected query"),
])
def test_bad_input_is_explained(make, message):
    with pytest.raises(ValueError, match=message):
        make()
