"""TransNormerLLM, from Scaling TransNormer to 175 Billion Parameters (Qin et al., 2023, arXiv:2307.14995): a
transformer block whose attention is linear, decayed and normalized.

Token mixer (gated linear attention with decay), per head h, x the normalized input (B, T, E):

    q, k, v, u = split(x W_qkvu)                 q, k <- SiLU(q), SiLU(k)          (v, u unchanged)
    LRPE:  x_t -> [x_t cos(theta t), x_t sin(theta t)]    (the head dim doubles; theta (H, D) learned)
           so  q'_s . k'_t = sum_i q_si k_ti cos(theta_i (s - t)):  a relative position, linear in the length
    O = lightning_attention(q', k', v, slopes)      (decayed causal linear attention, lambda_h = e^(-slope_h))
    y = W_o( SRMSNorm(O) * u ),      SRMSNorm(x) = x / sqrt(mean(x^2) + eps)   (no gain, over the E features)

theta starts at 10000^(-2 i / (H D)), i = 0 .. H D - 1 (reshaped (H, D)); the slopes are TransNormerLLM's fixed
ones, `transnormer_slopes(H, layer, num_layers)` (ALiBi's, lower layers decaying faster). No 1/sqrt(d), no
softmax, no denominator: SRMSNorm keeps the output's scale. The attention's equations, in each of its forms,
are in kernels/lightning_attention/__init__.py.

Channel mixer, SGLU (a GLU without activation): W_3((x W_1) * (x W_2)). The block is pre-norm:

    x = x + token_mixer(SRMSNorm(x));    x = x + channel_mixer(SRMSNorm(x))

The attention core has three forms, `form=` in forward (equal up to rounding, tested):

| form | computes | cost |
|---|---|---|
| "naive" | the masked (T, T) decay matrix, in minigrad ops | O(T^2) |
| "blocked" | `lightning_attention` (Lightning Attention-2 kernels: intra-block mask, inter-block KV state) | O(T) |
| "recurrent" | the decayed KV state, one position at a time (`step`) | O(T), (2D, D) |

Parameter names follow nanoTransNormer (Doraemonzzz): token_mixer.qkvu_proj, token_mixer.lrpe.theta,
token_mixer.out_proj, channel_mixer.l1 / l2 / l3.
"""
from minigrad import backend
from minigrad.nn import functional as F
from minigrad.nn.layers import Linear, empty_parameter
from minigrad.nn.lightning_attention import lightning_attention, transnormer_slopes
from minigrad.nn.module import Module
from minigrad.ops.elementwise import cos, sin
from minigrad.ops.shape import cat, stack
from minigrad.tensor import Tensor

FORMS = ("naive", "blocked", "recurrent")


class SimpleRMSNorm(Module):
    """SRMSNorm(x) = x / sqrt(mean(x^2) + eps) over the last dim: RMSNorm without the gain."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x):
        return F.rms_norm(x, (self.dim,), None, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"


class LRPE(Module):
    """Linearized relative positional encoding: x (B, H, T, D) at positions offset .. offset + T - 1 ->
    [x cos(theta t), x sin(theta t)] (B, H, T, 2D), theta (H, 1, D) learned, init 10000^(-2 i / (H D))."""

    def __init__(self, num_heads, head_dim, base=10000.0, device=None, dtype=None):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.theta = empty_parameter((num_heads, 1, head_dim), dtype, device)
        xp = backend.array_module(self.theta.data)
        i = xp.arange(num_heads * head_dim, dtype=backend.float64)
        self.theta.data[...] = (base ** (-2 * i / (num_heads * head_dim))).reshape(num_heads, 1, head_dim)

    def forward(self, x, offset=0):
        if x.ndim != 4 or x.shape[1] != self.num_heads or x.shape[3] != self.head_dim:
            raise ValueError(f"LRPE: expected x (B, {self.num_heads}, T, {self.head_dim}), got shape {x.shape}")
        xp = backend.array_module(x.data)
        positions = Tensor(xp.arange(offset, offset + x.shape[2], dtype=x.dtype)[:, None])   # (T, 1)
        angles = self.theta * positions                                          # (H, T, D)
        return cat([x * cos(angles), x * sin(angles)], dim=-1)                   # (B, H, T, 2D)


class SGLU(Module):
    """Simple GLU: l3((l1 x) * (l2 x)), no activation; hidden 2 E by default (nanoTransNormer's)."""

    def __init__(self, embed_dim, hidden_features=None, bias=False, device=None, dtype=None, generator=None):
        super().__init__()
        hidden = 2 * embed_dim if hidden_features is None else hidden_features
        kw = dict(bias=bias, device=device, dtype=dtype, generator=generator)
        self.l1, self.l2 = Linear(embed_dim, hidden, **kw), Linear(embed_dim, hidden, **kw)
        self.l3 = Linear(hidden, embed_dim, **kw)

    def forward(self, x):
        return self.l3(self.l1(x) * self.l2(x))


class TransNormerAttention(Module):
    """The gated, decayed linear attention of the module doc: x (B, T, E) -> (B, T, E).

    layer, num_layers: pick this layer's slopes (`transnormer_slopes`). use_lrpe: the LRPE (else q, k keep D).
    """

    def __init__(self, embed_dim, num_heads, layer=0, num_layers=1, use_lrpe=True, bias=False, eps=1e-6,
                 device=None, dtype=None, generator=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"TransNormerAttention: embed_dim {embed_dim} must be a positive multiple of num_heads "
                             f"{num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.slopes = transnormer_slopes(num_heads, layer, num_layers)           # fixed, one per head
        kw = dict(bias=bias, device=device, dtype=dtype, generator=generator)
        self.qkvu_proj = Linear(embed_dim, 4 * embed_dim, **kw)
        self.lrpe = LRPE(num_heads, self.head_dim, device=device, dtype=dtype) if use_lrpe else None
        self.norm = SimpleRMSNorm(embed_dim, eps)
        self.out_proj = Linear(embed_dim, embed_dim, **kw)

    def _project(self, x, offset):
        """x (B, T, E) -> q, k (B, H, T, 2D or D), v (B, H, T, D), u (B, T, E)."""
        B, T, E = x.shape
        q, k, v, u = self.qkvu_proj(x).split(E, dim=-1)                          # 4 x (B, T, E)

        def heads(t):
            return t.reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        q, k, v = F.silu(heads(q)), F.silu(heads(k)), heads(v)
        if self.lrpe is not None:
            q, k = self.lrpe(q, offset), self.lrpe(k, offset)                    # (B, H, T, 2D)
        return q, k, v, u

    def _output(self, o, u):
        """o (B, H, T, D), u (B, T, E) -> W_o(SRMSNorm(o) * u) (B, T, E)."""
        B, H, T, D = o.shape
        return self.out_proj(self.norm(o.transpose(1, 2).reshape(B, T, H * D)) * u)

    def _slopes_array(self, xp, dtype):
        return xp.asarray(self.slopes, dtype=dtype)                             # (H,)

    def forward(self, x, form="blocked"):
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"TransNormerAttention: expected x (B, T, {self.embed_dim}), got shape {x.shape}")
        if form not in FORMS:
            raise ValueError(f"TransNormerAttention: form must be one of {FORMS}, got {form!r}")
        if form == "recurrent":
            state, out = None, []
            for t in range(x.shape[1]):
                y, state = self.step(x[:, t], state)
                out.append(y)
            return stack(out, dim=1)                                             # (B, T, E)
        q, k, v, u = self._project(x, 0)
        if form == "blocked":
            return self._output(lightning_attention(q, k, v, self.slopes), u)
        xp, T = backend.array_module(x.data), x.shape[1]
        distance = xp.arange(T)[:, None] - xp.arange(T)[None, :]                 # t - s
        slopes = self._slopes_array(xp, x.dtype)[:, None, None]
        mask = xp.where(distance >= 0, xp.exp(-slopes * xp.maximum(distance, 0)), 0).astype(x.dtype)  # (H, T, T)
        return self._output(((q @ k.transpose(-1, -2)) * Tensor(mask)) @ v, u)

    def step(self, x, state=None):
        """One position: x (B, E) -> (y (B, E), state). state: None first, then what the last step returned,
        (kv (B, H, 2D, D), position), kv the recurrent form's state (kernels/lightning_attention/__init__.py)."""
        if x.ndim != 2 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"TransNormerAttention.step: expected x (B, {self.embed_dim}), got shape {x.shape}")
        kv, position = (None, 0) if state is None else state
        q, k, v, u = self._project(x.unsqueeze(1), position)                     # (B, H, 1, .), (B, 1, E)
        update = k.transpose(-1, -2) @ v                                         # (B, H, 2D, D)
        if kv is not None:
            xp = backend.array_module(x.data)
            decay = xp.exp(-self._slopes_array(xp, x.dtype))[:, None, None]     # lambda (H, 1, 1)
            update = kv * Tensor(decay) + update
        return self._output(q @ update, u)[:, 0], (update, position + 1)

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, slopes={[round(s, 4) for s in self.slopes]}"


class TransNormerBlock(Module):
    """Pre-norm block: x + token_mixer(SRMSNorm(x)), then + channel_mixer(SRMSNorm(x)). x (B, T, E) -> (B, T, E)."""

    def __init__(self, embed_dim, num_heads, layer=0, num_layers=1, use_lrpe=True, hidden_features=None, bias=False,
                 eps=1e-6, device=None, dtype=None, generator=None):
        super().__init__()
        kw = dict(bias=bias, device=device, dtype=dtype, generator=generator)
        self.token_norm = SimpleRMSNorm(embed_dim, eps)
        self.token_mixer = TransNormerAttention(embed_dim, num_heads, layer, num_layers, use_lrpe, eps=eps, **kw)
        self.channel_norm = SimpleRMSNorm(embed_dim, eps)
        self.channel_mixer = SGLU(embed_dim, hidden_features, **kw)

    def forward(self, x, form="blocked"):
        if x.ndim != 3 or x.shape[-1] != self.token_mixer.embed_dim:
            raise ValueError(f"TransNormerBlock: expected x (B, T, {self.token_mixer.embed_dim}), got shape {x.shape}")
        x = x + self.token_mixer(self.token_norm(x), form)
        return x + self.channel_mixer(self.channel_norm(x))

    def step(self, x, state=None):
        """One position x (B, E) -> (y (B, E), state), the token mixer's recurrent state."""
        if x.ndim != 2 or x.shape[-1] != self.token_mixer.embed_dim:
            raise ValueError(f"TransNormerBlock.step: expected x (B, {self.token_mixer.embed_dim}), got shape "
                             f"{x.shape}")
        y, state = self.token_mixer.step(self.token_norm(x), state)
        x = x + y
        return x + self.channel_mixer(self.channel_norm(x)), state
