"""Matrix products: matmul (batched, broadcast, 1-D cases as in PyTorch) and einsum.

For C = A @ B:  dA = dC @ B^T,  dB = A^T @ dC  (batch dimensions summed back by the engine).
"""
import string

from minigrad import backend
from minigrad.ops.elementwise import operands
from minigrad.tensor import Tensor, record, tensor_method


@tensor_method
def matmul(a, b):
    a, b = operands(a, b, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    k_a, k_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"(a's last dim {k_a} != b's {'second-to-last' if b.ndim > 1 else 'only'} dim {k_b})")
    try:
        out = a.data @ b.data
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None
    xp = backend.array_module(a.data)

    def backward(g):
        A = a.data if a.ndim > 1 else a.data[None, :]   # (..., n, k)
        B = b.data if b.ndim > 1 else b.data[:, None]   # (..., k, m)
        G = g
        if b.ndim == 1:  # first, so that 1-D @ 1-D (g is 0-d) becomes (1, 1)
            G = xp.expand_dims(G, -1)
        if a.ndim == 1:
            G = xp.expand_dims(G, -2)                    # (..., n, m)
        grad_a = grad_b = None
        if a.requires_grad:
            grad_a = G @ xp.swapaxes(B, -1, -2)          # (..., n, k)
            grad_a = grad_a[..., 0, :] if a.ndim == 1 else grad_a
        if b.requires_grad:
            if b.ndim == 2 and A.ndim > 2:
                # a batch of inputs times one weight matrix: fold the batch into one big GEMM
                grad_b = A.reshape(-1, A.shape[-1]).T @ G.reshape(-1, G.shape[-1])
            else:
                grad_b = xp.swapaxes(A, -1, -2) @ G      # (..., k, m)
            grad_b = grad_b[..., 0] if b.ndim == 1 else grad_b
        return grad_a, grad_b
    return record(out, (a, b), backward, "matmul")


Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = lambda self, other: matmul(other, self)


def _expand_ellipsis(subscripts, ndim, fill):
    if "..." not in subscripts:
        return subscripts
    named = len(subscripts) - 3
    return subscripts.replace("...", fill[len(fill) - (ndim - named):] if ndim - named else "")


def _diagonal(t, subscripts, fresh):
    """An operand whose subscripts repeat a letter ('ii', 'bii', 'iji') as its diagonal with each letter once:
    (Tensor, subscripts). Backward writes g back onto the diagonal: each repeat beyond the first gets a fresh
    letter tied to the first by an identity matrix, grad = einsum('i,ia->ia', g, eye) for 'ii'."""
    unique = "".join(dict.fromkeys(subscripts))
    for c in set(subscripts):
        sizes = {t.shape[k] for k, d in enumerate(subscripts) if d == c}
        if len(sizes) > 1:
            raise ValueError(f"einsum: subscript {c!r} repeats in {subscripts!r} over dims of different sizes "
                             f"{sorted(sizes)} (operand shape {t.shape})")
    xp = backend.array_module(t.data)
    renamed, eyes, seen = "", [], set()
    for c, n in zip(subscripts, t.shape):
        if c in seen:
            f, fresh = fresh[0], fresh[1:]
            renamed += f
            eyes.append((c + f, xp.eye(n, dtype=t.dtype)))
        else:
            seen.add(c)
            renamed += c
    out = xp.einsum(f"{subscripts}->{unique}", t.data)

    def backward(g):
        equation = ",".join([unique] + [e for e, _ in eyes]) + "->" + renamed
        return (xp.einsum(equation, g, *(m for _, m in eyes)),)
    return record(out, (t,), backward, "einsum"), unique


def einsum(equation, *operands_):
    """Einstein summation, e.g. einsum('bhqd,bhkd->bhqk', q, k); a letter repeated within one operand takes
    its diagonal ('ii->i', 'ii->' the trace, '...ii->...').

    The gradient of operand i is itself an einsum: the output gradient contracted with the other
    operands, producing operand i's subscripts (broadcast over letters only operand i has).
    """
    if len(operands_) == 1 and isinstance(operands_[0], (list, tuple)):
        operands_ = tuple(operands_[0])
    tensors = list(operands_)
    for t in tensors[1:]:
        if t.dtype != tensors[0].dtype:
            raise TypeError(f"einsum: mixed dtypes {[str(u.dtype) for u in tensors]}")
    xp = backend.array_module(tensors[0].data)
    equation = equation.replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(tensors):
        raise ValueError(f"einsum: equation {equation!r} names {len(inputs)} operands, got {len(tensors)}")
    unused = "".join(c for c in string.ascii_letters if c not in equation)
    max_ell = max((t.ndim - (len(s) - 3) for s, t in zip(inputs, tensors) if "..." in s), default=0)
    fill = unused[:max_ell]
    inputs = [_expand_ellipsis(s, t.ndim, fill) for s, t in zip(inputs, tensors)]
    if not _:
        letters = "".join(inputs)
        rhs = fill + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in fill))
    else:
        rhs = rhs.replace("...", fill)
    for i, (s, t) in enumerate(zip(inputs, tensors)):
        if len(s) != t.ndim:
            raise ValueError(f"einsum: subscripts {s!r} do not match an operand of shape {t.shape}")
        if len(set(s)) != len(s):
            tensors[i], inputs[i] = _diagonal(t, s, unused[max_ell:])
    out = xp.einsum(f"{','.join(inputs)}->{rhs}", *(t.data for t in tensors), optimize=len(tensors) > 2)

    def backward(g):
        grads = []
        for i, (s, t) in enumerate(zip(inputs, tensors)):
            if not t.requires_grad:
                grads.append(None)
                continue
            others = [(inputs[j], tensors[j].data) for j in range(len(tensors)) if j != i]
            available = set(rhs).union(*(set(o) for o, _ in others))
            kept = "".join(c for c in s if c in available)
            grad = xp.einsum(",".join([rhs] + [o for o, _ in others]) + "->" + kept, g, *(d for _, d in others),
                             optimize=len(others) > 1)
            if kept != s:
                grad = xp.broadcast_to(xp.expand_dims(grad, tuple(k for k, c in enumerate(s) if c not in available)),
                                       t.shape)
            grads.append(grad)
        return tuple(grads)
    return record(out, tuple(tensors), backward, "einsum")
