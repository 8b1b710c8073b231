"""Scaling laws at toy scale: parameter counts, training compute, power-law fits and the compute-optimal model size,
after Scaling Laws for Neural Language Models (Kaplan et al., 2020, arXiv:2001.08361) and Training Compute-Optimal
Large Language Models (Hoffmann et al., 2022, arXiv:2203.15556, "Chinchilla").

Parameters. A GPT block of width d (MLP width 4d) holds the matrices of attention (3d^2 for Q, K, V and d^2 for
the output) and of the MLP (8d^2), 12 d^2 in all, plus 9 d biases and 4 d LayerNorm gains and biases:

    N_kaplan = 12 n_layer d^2                          Kaplan's approximation (embeddings excluded)
    N_non_embedding = n_layer (12 d^2 + 13 d) + 2 d     the exact count without the token and position embeddings
                                                       and the output layer (final LayerNorm included)
    N_total = N_non_embedding + (2 V + T) d             with both vocabulary matrices (untied) and positions

Compute. A forward pass costs about 2 FLOPs per parameter per token (a multiply and an add), the backward pass
twice that, so training on D tokens costs

    C = 6 N D.

Kaplan counts N without embeddings; for a toy model with a vocabulary of a thousand tokens the output layer
(V d multiply-adds per token) is as large as the blocks, so we also count the FLOPs of every matrix a token passes
through, the blocks' 12 n_layer d^2 weights and the output layer's V d (the token embedding is a lookup, no FLOPs),
and attention's scores Q K^T and weighted sum A V, T d multiply-adds each per token and layer:

    C_per_token = 6 (12 n_layer d^2 + V d) + 12 n_layer T d.

(Kaplan's attention term, 6 n_layer T d for training, counts the scores only.)

Fits. A power law y = a x^k is a straight line in log space, log y = log a + k log x, fitted by least squares;
the standard errors come from the residual variance s^2 and (X^T X)^-1. Along the compute frontier (the lowest
loss reached with at most C FLOPs) Kaplan finds L ~ C^-0.050 and N_opt ~ C^0.73; Hoffmann et al. fit

    L(N, D) = E + A / N^alpha + B / D^beta

and minimize it under C = 6 N D, which gives N_opt = G (C / 6)^a, D_opt = (C / 6) / N_opt with
a = beta / (alpha + beta) and G = (alpha A / (beta B))^(1 / (alpha + beta)); they find a ~ 0.50.
"""
from dataclasses import dataclass

from minigrad.backend import np


# ---- counting -------------------------------------------------------------------------------------

def kaplan_parameters(n_layer, n_embd):
    """12 n_layer d^2: Kaplan's non-embedding parameter count (MLP width 4d, biases and norms neglected)."""
    return 12 * n_layer * n_embd ** 2


def gpt_parameter_counts(config):
    """Exact counts of a book.models.gpt.GPT with this GPTConfig: {"non_embedding", "embedding", "total",
    "kaplan"}; "embedding" is the token and position embeddings and the (untied) output layer."""
    d, L, V, T = config.n_embd, config.n_layer, config.vocab_size, config.block_size
    if min(d, L, V, T) < 1:
        raise ValueError(f"gpt_parameter_counts: n_embd {d}, n_layer {L}, vocab_size {V}, block_size {T}; "
                         "expected positive sizes")
    bias = 1 if config.bias else 0
    norm = (1 + bias) * d                                      # a LayerNorm's gain (and bias)
    per_block = 12 * d * d + bias * (3 * d + d + 4 * d + d) + 2 * norm
    non_embedding = L * per_block + norm                       # the blocks and the final LayerNorm
    embedding = V * d + T * d + V * d                          # wte, wpe, lm_head
    return {"non_embedding": non_embedding, "embedding": embedding, "total": non_embedding + embedding,
            "kaplan": kaplan_parameters(L, d)}


def training_flops(n_parameters, n_tokens):
    """C = 6 N D: the FLOPs of training N parameters on D tokens (forward 2ND, backward 4ND)."""
    if np.any(np.asarray(n_parameters) < 0) or np.any(np.asarray(n_tokens) < 0):
        raise ValueError(f"training_flops: N {n_parameters} and D {n_tokens}; expected non-negative counts")
    return 6 * np.asarray(n_parameters, dtype=np.float64) * np.asarray(n_tokens, dtype=np.float64)


def flops_per_token(config, attention=True):
    """Training FLOPs per token of a GPT (the module docstring's C_per_token): 6 x (the weights of its Linear
    layers, 12 n_layer d^2 + V d) plus, with attention=True, 12 n_layer T d for Q K^T and A V."""
    d, L = config.n_embd, config.n_layer
    matrices = 12 * L * d * d + config.vocab_size * d
    return 6 * matrices + (12 * L * config.block_size * d if attention else 0)


# ---- fitting ----------------------------------------------------------------------------------------

@dataclass
class PowerLaw:
    """y = coefficient * x^exponent, fitted in log space; *_se are standard errors from the least-squares fit."""
    exponent: float
    coefficient: float
    exponent_se: float
    log_coefficient_se: float
    points: int

    def __call__(self, x):
        return self.coefficient * np.asarray(x, dtype=np.float64) ** self.exponent


def fit_power_law(x, y):
    """Least squares of log y = log a + k log x. Standard errors: s^2 (X^T X)^-1 with s^2 = RSS / (n - 2)
    (zero when two points fix the line exactly)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2 or np.any(x <= 0) or np.any(y <= 0):
        raise ValueError(f"fit_power_law: x {x.shape} and y {y.shape}; expected two 1-D arrays of the same length "
                         ">= 2 with positive values")
    X = np.stack([np.ones_like(x), np.log(x)], axis=1)                       # (n, 2)
    coef, *_ = np.linalg.lstsq(X, np.log(y), rcond=None)                     # (2,) log a, k
    residual = np.log(y) - X @ coef                                          # (n,)
    dof = len(x) - 2
    s2 = residual @ residual / dof if dof > 0 else 0.0
    cov = s2 * np.linalg.inv(X.T @ X)                                        # (2, 2)
    return PowerLaw(exponent=float(coef[1]), coefficient=float(np.exp(coef[0])),
                    exponent_se=float(np.sqrt(cov[1, 1])), log_coefficient_se=float(np.sqrt(cov[0, 0])),
                    points=len(x))


def compute_frontier(compute, loss):
    """The indices of the runs on the compute frontier, by increasing compute: each has a lower loss than every
    run that used less compute."""
    compute, loss = np.asarray(compute, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    if compute.shape != loss.shape or compute.ndim != 1:
        raise ValueError(f"compute_frontier: compute {compute.shape} and loss {loss.shape}; expected two 1-D arrays "
                         "of the same length")
    frontier, best = [], np.inf
    for i in np.lexsort((loss, compute)):                                    # by compute, ties by loss
        if loss[i] < best:
            frontier.append(int(i))
            best = loss[i]
    return frontier


@dataclass
class LossSurface:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al.'s approach 3), with standard errors from the fit."""
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    covariance: np.ndarray          # of (log E, log A, alpha, log B, beta)
    rms_log_residual: float

    def __call__(self, n_parameters, n_tokens):
        N, D = np.asarray(n_parameters, dtype=np.float64), np.asarray(n_tokens, dtype=np.float64)
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    @property
    def size_exponent(self):
        """a in N_opt ~ C^a: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def size_exponent_se(self):
        """The delta method: the gradient of beta / (alpha + beta) in (alpha, beta) through the covariance."""
        s = self.alpha + self.beta
        grad = np.array([-self.beta / s ** 2, self.alpha / s ** 2])
        cov = self.covariance[np.ix_([2, 4], [2, 4])]
        return float(np.sqrt(grad @ cov @ grad))

    def compute_optimal(self, compute):
        """(N_opt, D_opt) minimizing L(N, D) under 6 N D = compute."""
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        n_opt = G * (np.asarray(compute, dtype=np.float64) / 6) ** self.size_exponent
        return n_opt, np.asarray(compute, dtype=np.float64) / (6 * n_opt)


def log_surface(theta, N, D):
    """log L(N, D) for theta = (log E, log A, alpha, log B, beta); log E = -inf is a surface without a floor."""
    log_e, log_a, alpha, log_b, beta = theta
    return np.logaddexp(np.logaddexp(log_e, log_a - alpha * np.log(N)), log_b - beta * np.log(D))


def fit_loss_surface(n_parameters, n_tokens, loss, starts=None):
    """Least squares of log L(N, D) against log loss over (log E, log A, alpha, log B, beta), from several starting
    points (the best fit is kept, as Hoffmann et al. do); the covariance is s^2 (J^T J)^-1 at the optimum."""
    from scipy.optimize import least_squares

    N, D, L = (np.asarray(v, dtype=np.float64) for v in (n_parameters, n_tokens, loss))
    if not (N.shape == D.shape == L.shape) or N.ndim != 1 or len(N) < 6 or np.any(np.concatenate([N, D, L]) <= 0):
        raise ValueError(f"fit_loss_surface: N {N.shape}, D {D.shape}, loss {L.shape}; expected three 1-D arrays of "
                         "the same length >= 6 with positive values")

    def residual(theta):
        return log_surface(theta, N, D) - np.log(L)

    if starts is None:
        starts = [(np.log(L.min() / 2), la, al, lb, be) for la in (2.0, 6.0) for al in (0.3, 0.6)
                  for lb in (2.0, 6.0) for be in (0.3, 0.6)]
    fits = [least_squares(residual, np.asarray(s, dtype=np.float64), method="lm") for s in starts]
    best = min(fits, key=lambda f: f.cost)
    dof = max(len(L) - 5, 1)
    s2 = 2 * best.cost / dof
    cov = s2 * np.linalg.pinv(best.jac.T @ best.jac)                         # (5, 5)
    log_e, log_a, alpha, log_b, beta = best.x
    return LossSurface(E=float(np.exp(log_e)), A=float(np.exp(log_a)), alpha=float(alpha), B=float(np.exp(log_b)),
                       beta=float(beta), covariance=cov, rms_log_residual=float(np.sqrt(2 * best.cost / len(L))))


def profile_floor(n_parameters, n_tokens, loss, floors):
    """The surface refitted with its floor E held at each of `floors` (least squares on log L over log A, alpha,
    log B, beta from the same starting grid): [{"E", "alpha", "beta", "size_exponent", "rms_log_residual"}].
    When the residual barely changes from one floor to the next while alpha does, the runs do not fix E, and with
    it neither alpha nor N_opt: the errors of a single fit, taken at its optimum, cannot show that."""
    from scipy.optimize import least_squares

    N, D, L = (np.asarray(v, dtype=np.float64) for v in (n_parameters, n_tokens, loss))
    starts = [(la, al, lb, be) for la in (2.0, 6.0) for al in (0.3, 0.6) for lb in (2.0, 6.0) for be in (0.3, 0.6)]
    rows = []
    for E in floors:
        log_e = np.log(E) if E > 0 else -np.inf

        def residual(theta):
            return log_surface((log_e, *theta), N, D) - np.log(L)

        best = min((least_squares(residual, np.asarray(s, dtype=np.float64), method="lm") for s in starts),
                   key=lambda f: f.cost)
        _, alpha, _, beta = best.x
        rows.append({"E": float(E), "alpha": float(alpha), "beta": float(beta),
                     "size_exponent": float(beta / (alpha + beta)),
                     "rms_log_residual": float(np.sqrt(2 * best.cost / len(L)))})
    return rows

