"""The one padding routine of hf_genomics' collators: where rows of given lengths sit in a padded batch
(`filled_positions`) and the padding of rows of numbers (`pad_rows`). The tokenizers' batch encoder writes its padded
rows itself, in the same single scatter: it ships inside saved checkpoints as remote code, which imports only
transformers, numpy and torch."""

from itertools import chain

import numpy as np


def padded_width(longest: int, pad_to_multiple_of: int | None = None) -> int:
    """The batch width for a longest row of `longest`, rounded up to a multiple of `pad_to_multiple_of` if given."""
    return -(-longest // pad_to_multiple_of) * pad_to_multiple_of if pad_to_multiple_of else longest


def filled_positions(lengths: np.ndarray, width: int, padding_side: str = "right") -> np.ndarray:
    """`(B, width)` bool, True where each row of `lengths` sits: at the left end (`padding_side="right"`) or at the
    right end (`"left"`), as `tokenizer.pad` puts them; the rest is padding."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
    columns = np.arange(width)[None, :]
    lengths = np.asarray(lengths)[:, None]
    return columns >= width - lengths if padding_side == "left" else columns < lengths


def pad_rows(
    rows: list, value, pad_to_multiple_of: int | None = None, padding_side: str = "right", dtype=np.int64
) -> tuple[np.ndarray, np.ndarray]:
    """Stack `rows` (lists, arrays or 1-D tensors of numbers) into `(B, W)` filled with `value`, `W` the longest row
    rounded up to `pad_to_multiple_of`; returns the padded array and where the rows went (the attention mask,
    bool). One scatter for the whole batch: a Python loop over rows costs more than the collators' other work."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    filled = filled_positions(lengths, padded_width(int(lengths.max()), pad_to_multiple_of), padding_side)
    if isinstance(rows[0], (list, tuple)):
        values = np.fromiter(chain.from_iterable(rows), dtype=dtype, count=int(lengths.sum()))
    else:  # arrays or tensors
        values = np.concatenate([np.asarray(row, dtype=dtype).reshape(-1) for row in rows])
    padded = np.full(filled.shape, value, dtype=dtype)
    padded[filled] = values
    return padded, filled
