"""Variable-length rows of token ids made into one batch array."""
from minigrad.backend import np


def pad_rows(rows, pad_id, length=None):
    """int64 (B, L): the 1-D rows, right-padded with pad_id to the longest (or to `length`)."""
    length = max(len(r) for r in rows) if length is None else length
    out = np.full((len(rows), length), pad_id, dtype=np.int64)
    for b, row in enumerate(rows):
        if len(row) > length:
            raise ValueError(f"pad_rows: row {b} has {len(row)} tokens, more than length {length}")
        out[b, :len(row)] = row
    return out
