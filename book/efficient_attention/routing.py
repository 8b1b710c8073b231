"""Routing Transformer: Efficient Content-Based Sparse Attention with Routing Transformers (Roy, Saffar, Vaswani &
Grangier, 2020, arXiv:2003.05997): sparse attention inside online k-means clusters.

Each routing head layer-normalizes its queries and keys without gain or bias (so they lie on a sphere of radius
sqrt(d)) and scores them against C centroids mu_c, a buffer that no gradient touches:

    score_tc = x_t . mu_c,        nearest centroid c(t) = argmax_c score_tc        (the official code's distance)

Balanced clusters, the official code's rule: cluster c takes the w tokens with the highest score_tc (top-w along
the sequence), whatever their nearest centroid. Every cluster then holds exactly w tokens, kept in position
order; a token may sit in several clusters or in none. Attention runs inside each cluster (query i sees the
cluster's keys j <= i when causal) and the results are scattered back to their positions:

    out_t = sum_{c : t in Q_c} softmax(scale q_t K_c^T + M) V_c  /  (count_t + 1e-2)

with count_t the number of clusters that routed query t (a token routed nowhere gets 0; the 1e-2 is the official
code's, so a token in one cluster is scaled by 1/1.01). Two forms of the same function (tested equal):

| form | how | memory |
|---|---|---|
| gathered (default) | gather each cluster's w queries, keys, values into (B, H, C, w, d) blocks, attend, | O(C w^2) |
|  | scatter-add the outputs back |  |
| dense | the full (T, S) scores, one softmax per cluster masked to same-cluster pairs, summed | O(C T S) |

Centroids follow an exponential moving average of the vectors assigned to them (VQ-VAE style, as the official
code), in `update_centroids(decay)` outside autograd:

    n_c <- decay n_c + (1 - decay) #{t : c(t) = c},     s_c <- decay s_c + (1 - decay) sum_{t : c(t) = c} x_t
    mu_c = s_c / n~_c,    n~_c = (n_c + eps) / (N + C eps) N,   N = sum_c n_c          (Laplace smoothing)

and a commitment loss beta * mean (x_t - sg(mu_{c(t)}))^2 (beta = 1e-4) pulls the vectors toward their
centroids: the module leaves it in `commitment_loss` after each forward, for the training loop to add.

A pitfall of the method, kept as the paper has it: top-w compares a token with every other one, later tokens
included, so during causal training which tokens a cluster takes depends on the future (the values it attends
to never do: the causal mask inside each cluster is positional, tested in tests/test_efficient_attention_routing.py).

Local heads (the paper mixes both kinds in a layer): the last `local_heads` heads skip the routing and attend to
their last `local_window` positions with `sliding_window_attention` (the paper's local attention is blocked; a
sliding window is the same idea without block edges).
"""
import math

from minigrad import backend
from minigrad.creation import zeros
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.attention import masked_softmax
from minigrad.nn.layers import Linear, empty_parameter
from minigrad.nn.module import Module
from minigrad.nn.sliding_window_attention import sliding_window_attention
from minigrad.ops.shape import cat
from minigrad.tensor import Tensor, no_grad

COUNT_EPS = 1e-2       # the official code divides the scattered sum by count + 1e-2
LAPLACE_EPS = 1e-5     # Laplace smoothing of the EMA counts
NORM_EPS = 1e-6        # layer norm of the routed queries and keys


def route(vectors, centroids, window):
    """vectors (B, H, T, d), centroids (H, C, d) -> (B, H, C, window) int64: the `window` tokens with the
    highest score x_t . mu_c for each centroid, in position order. Arrays or Tensors (no gradient)."""
    x = vectors.data if isinstance(vectors, Tensor) else vectors
    mu = centroids.data if isinstance(centroids, Tensor) else centroids
    if x.ndim != 4 or mu.ndim != 3 or mu.shape[0] != x.shape[1] or mu.shape[2] != x.shape[3]:
        raise ValueError(f"route: expected vectors (B, H, T, d) and centroids (H, C, d), got {tuple(x.shape)} "
                         f"and {tuple(mu.shape)}")
    T = x.shape[2]
    if not 1 <= window <= T:
        raise ValueError(f"route: window (tokens per cluster) must be in [1, T] = [1, {T}], got {window}")
    xp = backend.array_module(x)
    scores = xp.einsum("bhtd,hcd->bhct", x, mu)                                  # (B, H, C, T)
    top = xp.argpartition(-scores, window - 1, axis=-1)[..., :window]            # (B, H, C, w)
    return xp.sort(top, axis=-1).astype(backend.int64)


def membership(clusters, length):
    """clusters (B, H, C, w) positions -> bool (B, H, C, length): is position t in cluster c."""
    xp = backend.array_module(clusters)
    return (clusters[..., :, None] == xp.arange(length)).any(axis=-2)


def _gather(x, clusters):
    """x (B, H, T, d), clusters (B, H, C, w) -> (B, H, C, w, d), differentiable in x."""
    B, H, C, w = clusters.shape
    d = x.shape[-1]
    index = backend.array_module(clusters).broadcast_to(clusters.reshape(B, H, C * w, 1), (B, H, C * w, d))
    return x.gather(2, Tensor(index)).reshape(B, H, C, w, d)


def _check(op, query, key, value, query_clusters, key_clusters):
    ok = query.ndim == key.ndim == value.ndim == 4
    if not ok or key.shape[:2] != query.shape[:2] or key.shape[3] != query.shape[3] or value.shape[:3] != key.shape[:3]:
        raise ValueError(f"{op}: expected query (B, H, T, D), key (B, H, S, D), value (B, H, S, Dv); got "
                         f"{query.shape}, {key.shape}, {value.shape}")
    B, H, T, _ = query.shape
    S = key.shape[2]
    for name, c, n in (("query_clusters", query_clusters, T), ("key_clusters", key_clusters, S)):
        if c.ndim != 4 or tuple(c.shape[:2]) != (B, H) or c.shape[2] != query_clusters.shape[2]:
            raise ValueError(f"{op}: {name} must be (B, H, C, w) = ({B}, {H}, C, w) with the same C for queries and "
                             f"keys; got {tuple(c.shape)} (query_clusters {tuple(query_clusters.shape)})")
        if c.dtype.kind not in "iu" or (c.size and (int(c.min()) < 0 or int(c.max()) >= n)):
            raise ValueError(f"{op}: {name} must hold integer positions in [0, {n}), got {c.dtype} values")


def routing_attention(query, key, value, query_clusters, key_clusters, causal=True, scale=None, dense=False):
    """Attention inside clusters: query (B, H, T, D), key (B, H, S, D), value (B, H, S, Dv) -> (B, H, T, Dv).

    query_clusters (B, H, C, wq), key_clusters (B, H, C, wk): the positions each cluster holds (from `route`), in
    increasing order. causal: query i sees keys j <= i (by position). scale: 1 / sqrt(D) by default. dense: the
    masked full-matrix form instead of the gathered one (same values, see the module doc).
    """
    qc = query_clusters.data if isinstance(query_clusters, Tensor) else query_clusters
    kc = key_clusters.data if isinstance(key_clusters, Tensor) else key_clusters
    _check("routing_attention", query, key, value, qc, kc)
    xp = backend.array_module(qc)
    B, H, T, D = query.shape
    S, Dv, C = key.shape[2], value.shape[3], qc.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    in_query = membership(qc, T)                                                 # (B, H, C, T)
    counts = in_query.sum(axis=2).astype(query.dtype)[..., None]                 # (B, H, T, 1)
    if dense:
        seen = in_query[..., :, None] & membership(kc, S)[..., None, :]          # (B, H, C, T, S)
        if causal:
            seen = seen & xp.tri(T, S, dtype=bool)
        scores = (query @ key.transpose(-1, -2)).unsqueeze(2).expand(B, H, C, T, S)
        weights = masked_softmax(scores, scale, attn_mask=seen)                  # (B, H, C, T, S)
        summed = (weights @ value.unsqueeze(2)).sum(dim=2)                       # (B, H, T, Dv)
    else:
        q, k, v = _gather(query, qc), _gather(key, kc), _gather(value, kc)      # (B, H, C, w, D|Dv)
        seen = qc[..., :, None] >= kc[..., None, :] if causal else None          # (B, H, C, wq, wk)
        weights = masked_softmax(q @ k.transpose(-1, -2), scale, attn_mask=seen)
        out = (weights @ v).reshape(B, H, -1, Dv)                                # (B, H, C wq, Dv)
        index = xp.broadcast_to(qc.reshape(B, H, -1, 1), out.shape)
        summed = zeros(B, H, T, Dv, dtype=query.dtype, device=query.device).scatter_add(2, Tensor(index), out)
    return summed / Tensor(counts + COUNT_EPS)


class RoutingAttention(Module):
    """Multi-head self-attention with routing heads (and optional local heads): x (B, T, E) -> (B, T, E).

    Heads 0 .. H - local_heads - 1 route with `num_clusters` centroids each (buffer `centroids` (Hr, C, d)), each
    cluster taking `window` tokens (None: ceil(T / C), so the clusters can cover the sequence); the last
    `local_heads` heads attend to their last `local_window` positions. shared_qk: keys are the queries (one
    projection: the official code's share_qk option, used for its decoders). Parameters:
    q_proj, k_proj (absent when shared_qk), v_proj, out_proj.
    """

    def __init__(self, embed_dim, num_heads, num_clusters, window=None, local_heads=0, local_window=None,
                 shared_qk=True, causal=True, bias=False, commitment=1e-4, device=None, dtype=None, generator=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"RoutingAttention: embed_dim {embed_dim} must be a positive multiple of num_heads "
                             f"{num_heads}")
        if not 0 <= local_heads < num_heads:
            raise ValueError(f"RoutingAttention: local_heads must be in [0, num_heads) = [0, {num_heads}) so that at "
                             f"least one head routes; got {local_heads}")
        if local_heads and (local_window is None or local_window < 1 or not causal):
            raise ValueError(f"RoutingAttention: local heads need causal=True and local_window >= 1, got causal="
                             f"{causal}, local_window={local_window}")
        if num_clusters < 1 or (window is not None and window < 1):
            raise ValueError(f"RoutingAttention: need num_clusters >= 1 and window >= 1 (or None), got "
                             f"{num_clusters}, {window}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.routing_heads, self.local_heads, self.local_window = num_heads - local_heads, local_heads, local_window
        self.num_clusters, self.window, self.shared_qk, self.causal = num_clusters, window, shared_qk, causal
        self.commitment = commitment
        kw = dict(bias=bias, device=device, dtype=dtype, generator=generator)
        self.q_proj = Linear(embed_dim, embed_dim, **kw)
        if shared_qk:
            self.k_proj = None
        else:
            self.k_proj = Linear(embed_dim, embed_dim, **kw)
        self.v_proj = Linear(embed_dim, embed_dim, **kw)
        self.out_proj = Linear(embed_dim, embed_dim, **kw)
        shape = (self.routing_heads, num_clusters, self.head_dim)
        with no_grad():  # the official initialization: layer-normalized Gaussian centroids
            gaussian = init.normal_(empty_parameter(shape, dtype, device), generator=generator).detach()
            centroids = F.layer_norm(gaussian, (self.head_dim,), eps=NORM_EPS)
        self.register_buffer("centroids", centroids)
        self.register_buffer("ema_count", zeros(*shape[:2], dtype=centroids.dtype, device=device))
        self.register_buffer("ema_sum", Tensor(centroids.data.copy()))
        self.routed = None              # the last forward's normalized queries (and keys), for update_centroids
        self.commitment_loss = None

    def forward(self, x):
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"RoutingAttention: expected x (B, T, {self.embed_dim}), got shape {x.shape}")
        B, T, E = x.shape
        H, D, Hr = self.num_heads, self.head_dim, self.routing_heads

        def heads(t):
            return t.reshape(B, T, H, D).transpose(1, 2)                        # (B, H, T, D)
        q = heads(self.q_proj(x))
        k = q if self.shared_qk else heads(self.k_proj(x))
        v = heads(self.v_proj(x))
        window = self.window or -(-T // self.num_clusters)
        if window > T:
            raise ValueError(f"RoutingAttention: window {window} exceeds the sequence length {T}")
        routed = [F.layer_norm(q[:, :Hr], (D,), eps=NORM_EPS)]                   # (B, Hr, T, D)
        if not self.shared_qk:
            routed.append(F.layer_norm(k[:, :Hr], (D,), eps=NORM_EPS))
        clusters = [route(r.data, self.centroids.data, window) for r in routed]  # (B, Hr, C, w) each
        out = [routing_attention(routed[0], routed[-1], v[:, :Hr], clusters[0], clusters[-1], self.causal)]
        if self.local_heads:
            out.append(sliding_window_attention(q[:, Hr:], k[:, Hr:], v[:, Hr:], self.local_window))
        self.routed = [r.detach() for r in routed]
        self.commitment_loss = self._commitment(routed)
        y = cat(out, dim=1).transpose(1, 2).reshape(B, T, E)                     # (B, T, E)
        return self.out_proj(y)

    def assignments(self, vectors):
        """vectors (B, Hr, N, d) -> (B, Hr, N) int64: the nearest centroid, argmax_c x . mu_c."""
        x = vectors.data if isinstance(vectors, Tensor) else vectors
        return backend.array_module(x).einsum("bhnd,hcd->bhnc", x, self.centroids.data).argmax(axis=-1)

    def _commitment(self, routed):
        """beta * mean (x - sg(mu_c(x)))^2, summed over the routed queries (and keys)."""
        xp = backend.array_module(routed[0].data)
        loss = None
        for r in routed:
            nearest = self.assignments(r.data)                                   # (B, Hr, T)
            mu = self.centroids.data[xp.arange(self.routing_heads)[:, None], nearest]  # (B, Hr, T, D)
            term = ((r - Tensor(mu.astype(r.dtype, copy=False))) ** 2).mean()
            loss = term if loss is None else loss + term
        return loss * self.commitment

    def update_centroids(self, decay=0.999, vectors=None):
        """One EMA step of the centroids (see the module doc) from the last forward's normalized queries and keys,
        or from `vectors`, a list of (B, Hr, N, d) arrays or Tensors. No gradient is involved."""
        if not 0 <= decay < 1:
            raise ValueError(f"RoutingAttention.update_centroids: decay must be in [0, 1), got {decay}")
        vectors = self.routed if vectors is None else vectors
        if not vectors:
            raise ValueError("RoutingAttention.update_centroids: no vectors; run a forward first or pass vectors")
        arrays = [v.data if isinstance(v, Tensor) else v for v in vectors]
        xp = backend.array_module(arrays[0])
        x = xp.concatenate(arrays, axis=2).astype(self.centroids.dtype, copy=False)  # (B, Hr, N, D)
        C = self.num_clusters
        one_hot = (self.assignments(x)[..., None] == xp.arange(C)).astype(x.dtype)  # (B, Hr, N, C)
        count, total = one_hot.sum(axis=(0, 2)), xp.einsum("bhnc,bhnd->hcd", one_hot, x)
        self.ema_count.data[...] = decay * self.ema_count.data + (1 - decay) * count
        self.ema_sum.data[...] = decay * self.ema_sum.data + (1 - decay) * total
        n = self.ema_count.data.sum(axis=-1, keepdims=True)                      # (Hr, 1)
        smoothed = (self.ema_count.data + LAPLACE_EPS) / (n + C * LAPLACE_EPS) * n
        self.centroids.data[...] = self.ema_sum.data / smoothed[..., None]

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, routing_heads={self.routing_heads}, local_heads={self.local_heads}, "
                f"num_clusters={self.num_clusters}, window={self.window}, shared_qk={self.shared_qk}")
