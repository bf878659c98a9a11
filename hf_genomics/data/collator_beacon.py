"""Tokenize BEACON rows (our Hub layout, see `BeaconTask.features`) and collate them for every head.

Per-nucleotide and pairwise labels are aligned with `input_ids`, like transformers' token-classification labels:
`(B, L[, T])` or `(B, L, L)` for `L` tokens, with -100 at `<cls>`, `<eos>`, padding and unlabelled positions.
"""

from dataclasses import dataclass

import numpy as np
import torch

from .beacon import IGNORE_INDEX, BeaconTask, get_task
from .padding import pad_rows


def _check_single_nucleotide_tokens(tokenizer, task: BeaconTask) -> None:
    if task.level != "sequence" and getattr(tokenizer, "k", 1) != 1:
        raise ValueError(
            f"{task.name} has {task.level}-level labels, which need one token per nucleotide; "
            f"got a tokenizer with k={tokenizer.k}. Use NucleotideTokenizer."
        )


def encode_beacon_batch(batch: dict[str, list], task: BeaconTask | str, tokenizer, max_length: int = 1026) -> dict:
    """`Dataset.map(..., batched=True)` function: `BeaconTask.encode` after checking that the tokenizer gives one
    token per nucleotide where the task's labels are per nucleotide."""
    task = get_task(task) if isinstance(task, str) else task
    _check_single_nucleotide_tokens(tokenizer, task)
    return task.encode(batch, tokenizer, max_length)


def _nucleotide_columns(lengths: np.ndarray, width: int) -> np.ndarray:
    """`(B, width)`, True at the nucleotide tokens of each row: tokens 1 .. n, after <cls>."""
    columns = np.arange(width)[None, :]
    return (columns >= 1) & (columns <= lengths[:, None])


def _scatter(values: np.ndarray, lengths: np.ndarray, width: int, fill: float, dtype) -> np.ndarray:
    """Consecutive runs of `lengths[i]` rows of `values` (`(sum(lengths), *tail)`) into tokens 1 .. lengths[i] of
    `(B, width, *tail)`, the rest filled with `fill`."""
    out = np.full((len(lengths), width, *values.shape[1:]), fill, dtype=dtype)
    out[_nucleotide_columns(lengths, width)] = values
    return out


def _not_ids_below(values: np.ndarray, limit, ignore: int | None = None) -> np.ndarray:
    """Where `values` are not integers in `[0, limit)` (`limit` broadcasts against `values`), `ignore` excepted."""
    bad = (values < 0) | (values >= limit)
    if values.dtype.kind == "f":
        bad |= values != np.round(values)  # NaN too
    if ignore is not None:
        bad &= values != ignore
    return bad


@dataclass
class DataCollatorForBeacon:
    """Collate `encode_beacon_batch` outputs for the task's head.

    Pads `input_ids` (right) with the tokenizer's pad id to the batch's longest row (rounded up to a multiple of
    `pad_to_multiple_of` if given, e.g. 8 for GPU kernels) and builds `attention_mask`; for CRI-Off also
    `input_ids_b` / `attention_mask_b`. Labels: class ids or float targets for sequence tasks;
    `(B, L[, T])` per-nucleotide labels and `(B, L, L)` pair maps aligned with `input_ids`, -100 wherever there
    is no nucleotide or no label; pair maps are built from the stored pair lists with vectorised scatter.

    Token ids outside the tokenizer's vocabulary and labels the head cannot use (non-finite targets, class ids out of
    range or not integers, wrong shapes, pairs outside the sequence) raise a `ValueError` naming the feature's index
    in the batch.
    """

    tokenizer: object
    task: BeaconTask | str
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        if self.pad_to_multiple_of is not None and not (
            isinstance(self.pad_to_multiple_of, int) and self.pad_to_multiple_of >= 1
        ):
            raise ValueError(f"pad_to_multiple_of must be a positive integer or None, got {self.pad_to_multiple_of!r}.")
        self.task = get_task(self.task) if isinstance(self.task, str) else self.task
        _check_single_nucleotide_tokens(self.tokenizer, self.task)
        self._vocab_size = len(self.tokenizer)

    def _fail(self, index: int, problem: str, accepted: str):
        raise ValueError(
            f"DataCollatorForBeacon ({self.task.name}): feature {index} of the batch {problem}; accepted: {accepted}."
        )

    def _pad_ids(self, sequences: list[list[int]], key: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = pad_rows(sequences, self.tokenizer.pad_token_id, self.pad_to_multiple_of)
        outside = _not_ids_below(ids, self._vocab_size)
        if outside.any():
            index = int(outside.any(axis=1).argmax())
            self._fail(
                index,
                f"has {key} containing {ids[index][outside[index]][0]}",
                f"ids 0..{self._vocab_size - 1} of the tokenizer's vocabulary (was it encoded with another tokenizer?)",
            )
        return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        task = self.task
        batch = {}
        batch["input_ids"], batch["attention_mask"] = self._pad_ids([f["input_ids"] for f in features], "input_ids")
        if task.input_kind == "pair":
            batch["input_ids_b"], batch["attention_mask_b"] = self._pad_ids(
                [f["input_ids_b"] for f in features], "input_ids_b"
            )
        if "labels" not in features[0]:
            return batch
        labels = [f["labels"] for f in features]
        # Nucleotides per row: the tokens between <cls> and <eos>.
        lengths = np.array([len(f["input_ids"]) - 2 for f in features])
        width = batch["input_ids"].shape[1]
        if task.level == "sequence":
            batch["labels"] = torch.from_numpy(self._sequence_labels(labels))
            return batch
        # Aligned with input_ids: <cls>, <eos> and padding columns (and rows) hold the ignore value.
        expand = self._pair_labels if task.level == "pairwise" else self._nucleotide_labels
        batch["labels"] = torch.from_numpy(expand(labels, lengths, width))
        return batch

    def _label_dtype(self):
        # Regression targets are read as float32, what the head gets; class ids and pairs keep their own dtype, so
        # that a fractional value is caught rather than truncated.
        return np.float32 if self.task.is_regression else None

    def _raise_at_first_bad_row(self, labels: list, shapes: list[tuple], accepted: str) -> None:
        """Only once a check on the whole batch failed: names the first feature whose labels are not a numeric array
        of its shape in `shapes` (a leading None: any number of rows, an empty list included)."""
        for index, (label, expected) in enumerate(zip(labels, shapes)):
            try:
                row = np.asarray(label, dtype=self._label_dtype())
            except (TypeError, ValueError):  # ragged nested lists, text
                self._fail(index, "has labels that are not an array of numbers", accepted)
            if row.dtype.kind not in "biuf":
                self._fail(index, f"has labels that are not numbers (dtype {row.dtype})", accepted)
            fits = row.ndim == len(expected) and all(e in (None, n) for e, n in zip(expected, row.shape))
            if not (fits or (row.size == 0 and expected[:1] == (None,))):
                wanted = str(tuple("n" if e is None else e for e in expected)).replace("'", "")
                self._fail(index, f"has labels of shape {row.shape} where {wanted} is expected", accepted)

    def _stack(self, labels: list, tail: tuple[int, ...], accepted: str) -> tuple[np.ndarray, np.ndarray]:
        """The features' label rows (`(n_i, *tail)` each; an empty list has none) concatenated, and how many rows
        each feature gave."""
        try:
            rows = [np.asarray(label, dtype=self._label_dtype()) for label in labels]
            values = np.concatenate([row for row in rows if row.size] or [np.zeros((0, *tail))])
        except (TypeError, ValueError):  # ragged nested lists, scalars, text
            values = None
        if values is None or values.shape[1:] != tail or values.dtype.kind not in "biuf":
            self._raise_at_first_bad_row(labels, [(None, *tail)] * len(labels), accepted)
        return values, np.array([len(row) if row.size else 0 for row in rows])

    def _check_values(self, values: np.ndarray, counts: np.ndarray, bad: np.ndarray, accepted: str) -> None:
        """`values` are the features' labels concatenated (`counts[i]` rows from feature i); raises naming the feature
        of the first True in `bad`."""
        if bad.any():
            first = np.unravel_index(int(bad.argmax()), bad.shape)
            index = int(np.searchsorted(np.cumsum(counts), first[0], side="right"))
            self._fail(index, f"has the label value {values[first].item()!r}", accepted)

    def _check_label_values(self, values: np.ndarray, counts: np.ndarray) -> None:
        task = self.task
        if task.is_regression:
            ignored = ", -100 where a nucleotide has no label" if task.level == "nucleotide" else ""
            self._check_values(values, counts, ~np.isfinite(values), f"finite numbers{ignored}")
        elif task.problem_type == "single_label_classification":
            accepted = f"integer class ids 0..{task.num_labels - 1}, -100 where there is no label"
            self._check_values(values, counts, _not_ids_below(values, task.num_labels, ignore=-100), accepted)
        else:
            self._check_values(values, counts, ~((values >= 0) & (values <= 1)), "multi-hot targets in [0, 1]")

    def _sequence_labels(self, labels: list) -> np.ndarray:
        task = self.task
        classes = task.problem_type == "single_label_classification"
        tail = (task.num_labels,) if task.num_labels > 1 and not classes else ()
        try:
            values = np.asarray(labels, dtype=self._label_dtype())
        except (TypeError, ValueError):  # ragged nested lists, text
            values = None
        if values is None or values.shape != (len(labels), *tail) or values.dtype.kind not in "biuf":
            accepted = f"a list of {task.num_labels} numbers per feature" if tail else "one number per feature"
            self._raise_at_first_bad_row(labels, [tail] * len(labels), accepted)
        self._check_label_values(values, np.ones(len(labels), dtype=np.int64))
        return values.astype(np.int64 if classes else np.float32)

    def _nucleotide_labels(self, labels: list, lengths: np.ndarray, width: int) -> np.ndarray:
        task = self.task
        tail = (task.num_labels,) if task.is_regression and task.num_labels > 1 else ()
        prefix = task.labels_cover_prefix
        accepted = (
            f"{'at most ' if prefix else ''}one label{f' row of {tail[0]} values' if tail else ''} per nucleotide "
            "(token between <cls> and <eos>)"
        )
        values, counts = self._stack(labels, tail, accepted)
        wrong = counts > lengths if prefix else counts != lengths
        if wrong.any():
            index = int(wrong.argmax())
            self._fail(index, f"has {counts[index]} labels for {lengths[index]} nucleotides", accepted)
        self._check_label_values(values, counts)
        if task.problem_type == "single_label_classification":
            return _scatter(values, counts, width, IGNORE_INDEX, np.int64)
        return _scatter(values, counts, width, IGNORE_INDEX, np.float32)

    def _pair_labels(self, labels: list, lengths: np.ndarray, width: int) -> np.ndarray:
        inside = _nucleotide_columns(lengths, width)
        square = inside[:, :, None] & inside[:, None, :]
        out = np.full((len(labels), width, width), IGNORE_INDEX, dtype=np.float32)
        if self.task.is_regression:
            shapes = [(n, n) for n in lengths.tolist()]
            try:
                matrices = [np.asarray(m, dtype=np.float32) for m in labels]
            except (TypeError, ValueError):  # ragged nested lists, text
                matrices = None
            if matrices is None or [m.shape for m in matrices] != shapes:
                self._raise_at_first_bad_row(labels, shapes, "an L x L matrix of numbers for L nucleotides")
            values = np.concatenate([m.reshape(-1) for m in matrices])
            self._check_label_values(values, lengths**2)
            out[square] = values
            return out
        out[square] = 0.0
        accepted = "a list of [i, j] pairs of integer positions 0..L-1 for L nucleotides"
        pairs, counts = self._stack(labels, (2,), accepted)
        self._check_values(pairs, counts, _not_ids_below(pairs, np.repeat(lengths, counts)[:, None]), accepted)
        rows = np.repeat(np.arange(len(counts)), counts)
        pairs = pairs.astype(np.int64) + 1  # nucleotide k is token k + 1
        out[rows, pairs[:, 0], pairs[:, 1]] = 1.0
        out[rows, pairs[:, 1], pairs[:, 0]] = 1.0
        return out
