"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), as in torch.optim.

    m_t = beta1 m_{t-1} + (1 - beta1) g_t                     (first moment)
    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2                   (second moment)
    p_t = p_{t-1} - lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

eps is added after the bias-corrected square root, as PyTorch does. Weight decay: Adam adds
weight_decay * p to the gradient (an L2 penalty, rescaled by the adaptive denominator); AdamW
decays the weights directly, p <- p (1 - lr weight_decay), before the Adam step. amsgrad uses the
running maximum of v_t in the denominator.
"""
import math

from minigrad import backend
from minigrad.optim.optimizer import Optimizer
from minigrad.tensor import Tensor


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 decoupled_weight_decay=False):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: lr, eps and weight_decay must be >= 0, "
                             f"got {lr}, {eps}, {weight_decay}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, param, grad, group, state):
        xp = backend.array_module(param.data)
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = Tensor(xp.zeros_like(param.data))
            state["exp_avg_sq"] = Tensor(xp.zeros_like(param.data))
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = Tensor(xp.zeros_like(param.data))
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"].data, state["exp_avg_sq"].data
        arrays = (param.data, grad, m, v)
        if not group["amsgrad"] and backend.uses_cpu_kernels(*arrays) and all(a.flags.c_contiguous for a in arrays):
            from kernels.adam import adam_step  # one fused pass instead of a dozen NumPy passes
            adam_step(*(a.reshape(-1) for a in arrays), lr, beta1, beta2, eps, wd, group["decoupled_weight_decay"], t)
            return
        if wd and group["decoupled_weight_decay"]:
            param.data *= 1 - lr * wd
        elif wd:
            grad = grad + wd * param.data
        m += (1 - beta1) * (grad - m)
        v *= beta2
        v += (1 - beta2) * grad * grad
        if group["amsgrad"]:
            v_max = state["max_exp_avg_sq"].data
            xp.maximum(v_max, v, out=v_max)
            v = v_max
        denom = xp.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps
        param.data -= (lr / (1 - beta1 ** t)) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01, as in PyTorch)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True)
