"""One Adam / AdamW update on the CPU (Numba), a single pass over a float32 parameter.

    m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
    p <- p (1 - lr wd)  [AdamW]   or   g <- g + wd p  [Adam, before the moments]
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

NumPy needs about a dozen passes (and temporaries) over p, g, m and v for this; here each element
is loaded and stored once.
"""
import math

import numba

from kernels.common.cpu import FAST_MATH


@numba.njit(**FAST_MATH)
def adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """Update the flat float32 arrays p, m, v in place; `step` is t, counting from 1."""
    step_size = lr / (1.0 - beta1 ** step)
    bias2_sqrt = math.sqrt(1.0 - beta2 ** step)
    decay = 1.0 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    for i in range(p.size):
        grad = g[i] + l2 * p[i]
        m_i = beta1 * m[i] + (1.0 - beta1) * grad
        v_i = beta2 * v[i] + (1.0 - beta2) * grad * grad
        m[i], v[i] = m_i, v_i
        p[i] = p[i] * decay - step_size * m_i / (math.sqrt(v_i) / bias2_sqrt + eps)
