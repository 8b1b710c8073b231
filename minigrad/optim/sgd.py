"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay.

PyTorch's formulation (Sutskever et al., 2013, with the velocity folded into the step):
    g   <- grad + weight_decay * p
    buf <- g                                  (first step)
    buf <- momentum * buf + (1 - dampening) * g
    g   <- g + momentum * buf   (nesterov)   or   buf
    p   <- p - lr * g
"""
from minigrad.optim.optimizer import Optimizer
from minigrad.tensor import Tensor


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _update(self, param, grad, group, state):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param.data
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = Tensor(grad.copy())
            else:
                buf.data *= momentum
                buf.data += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf.data if group["nesterov"] else buf.data
        param.data -= group["lr"] * grad
