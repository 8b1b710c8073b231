"""MEAP, from Mask-Enhanced Autoregressive Prediction: Pay Less Attention to Learn More (Zhuang et al., 2025,
arXiv:2502.07490): a fraction of a decoder-only model's inputs masked during next-token training.

    inputs_t  = [MASK] for t in M_b, tokens_t otherwise         (t = 0..T-1; M_b drawn for each row b)
    targets_t = tokens_{t+1}                                     (the ORIGINAL next token, masked or not)
    L         = -1/N sum_{b, t} log p(targets_t | inputs_<=t)    (plain next-token cross-entropy, all positions)

|M_b| = max(1, int(r * L_b)) positions, r = 0.15, drawn uniformly without replacement among the row's L_b input
positions that have a real target (padding excluded). The model, the attention (causal) and the loss are those of
next-token prediction; only the inputs change. A [MASK] id is added to the vocabulary for it.

The official code (scitix/MEAP, MEAP-Pretain/pretrained/*.py) has a bug that this module avoids: it draws ONE
set of positions per step with Python's `random.sample` and writes it into every row of the batch
(`input_ids[:, mask_positions] = mask_id`), after seeding `random` with 50 + step % 51, so the whole run cycles
through only 51 distinct mask patterns, shared by all rows. Here each row gets its own positions, from a NumPy
Generator that is never reseeded. (It also draws among positions 0..T-2 only; here every input position with a
target may be masked.)

    mask = draw_meap_mask(B, T, rng, lengths=lengths)
    inputs, targets = apply_meap_mask(tokens, mask, mask_token_id, lengths)      # tokens: (B, T + 1)
    logits, _ = gpt(mg.tensor(inputs))
    loss = meap_loss(logits, targets)
"""
from minigrad import backend
from minigrad.backend import np
from book.objectives.mlm import IGNORE_INDEX, as_array, token_cross_entropy


def _lengths(op, lengths, batch_size, length):
    if lengths is None:
        return np.full(batch_size, length, dtype=np.int64)
    lengths = np.asarray(as_array(lengths))
    if lengths.shape != (batch_size,) or lengths.dtype.kind not in "iu" or lengths.min(initial=1) < 1 \
            or lengths.max(initial=0) > length:
        raise ValueError(f"{op}: lengths must be ({batch_size},) integers in [1, {length}] (input positions with a "
                         f"target per row), got {lengths.dtype} {lengths.shape}: {lengths.tolist()[:8]}")
    return lengths


def draw_meap_mask(batch_size, length, rng, ratio=0.15, lengths=None):
    """bool (B, T): for each row b independently, max(1, int(ratio * L_b)) positions among its first L_b
    (lengths[b], default T), uniformly without replacement."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"draw_meap_mask: ratio must be in [0, 1), got {ratio}")
    lengths = _lengths("draw_meap_mask", lengths, batch_size, length)
    mask = np.zeros((batch_size, length), dtype=np.bool_)
    for b, L in enumerate(lengths.tolist()):
        count = max(1, int(ratio * L)) if ratio > 0 else 0
        mask[b, rng.choice(L, size=count, replace=False)] = True
    return mask


def apply_meap_mask(tokens, mask, mask_token_id, lengths=None):
    """(inputs, targets), int64 (B, T), from tokens (B, T + 1): inputs = tokens[:, :T] with mask_token_id where
    mask is True; targets = tokens[:, 1:], IGNORE_INDEX at positions t >= lengths[b] (no real next token)."""
    tokens = as_array(tokens)
    if tokens.ndim != 2 or tokens.shape[1] < 2 or tokens.dtype.kind not in "iu":
        raise ValueError(f"apply_meap_mask: tokens must be integer ids (B, T + 1) with T >= 1, got {tokens.dtype} "
                         f"{tokens.shape}")
    B, T = tokens.shape[0], tokens.shape[1] - 1
    mask = as_array(mask)
    if mask.dtype != backend.bool_ or mask.shape != (B, T):
        raise ValueError(f"apply_meap_mask: mask must be a bool array (B, T) = {(B, T)} for tokens of shape "
                         f"{tokens.shape}, got {mask.dtype} {mask.shape}")
    xp = backend.array_module(tokens)
    has_target = xp.arange(T)[None, :] < xp.asarray(_lengths("apply_meap_mask", lengths, B, T))[:, None]  # (B, T)
    if bool((mask & ~has_target).any()):
        raise ValueError("apply_meap_mask: the mask covers positions past a row's length (padding)")
    inputs = xp.where(mask, mask_token_id, tokens[:, :T]).astype(np.int64)
    targets = xp.where(has_target, tokens[:, 1:], IGNORE_INDEX).astype(np.int64)
    return inputs, targets


def meap_loss(logits, targets):
    """Next-token cross-entropy, mean over the targets that are not IGNORE_INDEX. logits (B, T, V)."""
    return token_cross_entropy("meap_loss", logits, targets)
