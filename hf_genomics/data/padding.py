"""The one padding routine of hf_genomics' collators: variable-length rows of numbers into a padded array."""

from itertools import chain

import numpy as np


def pad_rows(
    rows: list, value, pad_to_multiple_of: int | None = None, padding_side: str = "right", dtype=np.int64
) -> tuple[np.ndarray, np.ndarray]:
    """Stack `rows` (lists, arrays or 1-D tensors of numbers) into `(B, W)` filled with `value`, `W` the longest row
    rounded up to `pad_to_multiple_of`, each row at the left (`padding_side="right"`) or right end; returns the
    padded array and where the rows went (the attention mask, bool). One scatter for the whole batch: a Python
    loop over rows costs more than the collators' other work."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max()) if len(rows) else 0
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    if isinstance(rows[0], (list, tuple)):
        values = np.fromiter(chain.from_iterable(rows), dtype=dtype, count=int(lengths.sum()))
    else:  # arrays or tensors
        values = np.concatenate([np.asarray(row, dtype=dtype).reshape(-1) for row in rows])
    columns = np.arange(width)[None, :]
    filled = columns >= (width - lengths)[:, None] if padding_side == "left" else columns < lengths[:, None]
    padded = np.full((len(rows), width), value, dtype=dtype)
    padded[filled] = values
    return padded, filled
