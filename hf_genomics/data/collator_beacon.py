"""Tokenize BEACON rows (our Hub layout, see `hub_dataset.beacon_features`) and collate them for every head.

Per-nucleotide and pairwise labels are laid out per nucleotide, i.e. for the `seq_len - 2` positions between
`<cls>` and `<eos>` that `BeaconForTokenClassification` / `BeaconForPairwisePrediction` keep: per-nucleotide
labels are padded with -100 and pair matrices with -1.
"""

from dataclasses import dataclass

import numpy as np
import torch

from .beacon import BeaconTask, get_task


def _check_single_nucleotide_tokens(tokenizer, task: BeaconTask) -> None:
    if task.level != "sequence" and getattr(tokenizer, "k", 1) != 1:
        raise ValueError(
            f"{task.name} has {task.level}-level labels, which need one token per nucleotide; "
            f"got a tokenizer with k={tokenizer.k}. Use NucleotideTokenizer."
        )


def encode_beacon_batch(batch: dict[str, list], task: BeaconTask | str, tokenizer, max_length: int = 1026) -> dict:
    """`Dataset.map(..., batched=True)` function: `input_ids` (and `input_ids_b` for CRI-Off) plus `labels` in
    the compact per-example form `DataCollatorForBeacon` expands. Sequences longer than `max_length - 2` are
    truncated and their labels (and pair matrices) cut to match, as in BEACON."""
    task = get_task(task) if isinstance(task, str) else task
    _check_single_nucleotide_tokens(tokenizer, task)
    kwargs = {"truncation": True, "max_length": max_length, "return_attention_mask": False}
    if task.input_kind == "pair":
        return {
            "input_ids": tokenizer(batch["sgrna"], **kwargs)["input_ids"],
            "input_ids_b": tokenizer(batch["target"], **kwargs)["input_ids"],
            "labels": batch["label"],
        }
    input_ids = tokenizer(batch["sequence"], **kwargs)["input_ids"]
    lengths = [len(ids) - 2 for ids in input_ids]
    encoded = {"input_ids": input_ids}
    if task.name in ("SSP", "CMP"):
        column = "pairs" if task.name == "SSP" else "contacts"
        encoded["labels"] = [
            [pair for pair in pairs if pair[0] < n and pair[1] < n] for pairs, n in zip(batch[column], lengths)
        ]
    elif task.name == "DMP":
        encoded["labels"] = [[row[:n] for row in matrix[:n]] for matrix, n in zip(batch["distance_map"], lengths)]
    elif task.name == "SSI":
        # Only positions whose input icSHAPE value is missing (-1) are predicted and scored.
        encoded["labels"] = [
            np.where(np.asarray(struct[:n]) == -1, label[:n], -100.0).tolist()
            for struct, label, n in zip(batch["struct"], batch["label"], lengths)
        ]
    elif task.name == "VDP":
        encoded["labels"] = [
            (np.asarray(label, dtype=np.float32).reshape(-1, task.num_labels) if label else np.zeros((0, 3)))[:n]
            .tolist()
            for label, n in zip(batch["label"], lengths)
        ]
    elif task.level == "nucleotide":
        encoded["labels"] = [label[:n] for label, n in zip(batch["label"], lengths)]
    else:
        encoded["labels"] = batch["label"]
    return encoded


def _pad_ragged(rows: list, width: int, fill: float, dtype, tail: tuple[int, ...] = ()) -> np.ndarray:
    """Stack variable-length rows (each `(n_i, *tail)`) into `(B, width, *tail)`, filling the rest with `fill`."""
    lengths = np.array([len(row) for row in rows])
    out = np.full((len(rows), width, *tail), fill, dtype=dtype)
    if lengths.sum():
        values = np.concatenate([np.asarray(row, dtype=dtype).reshape(-1, *tail) for row in rows if len(row)])
        out[np.arange(width)[None, :] < lengths[:, None]] = values
    return out


@dataclass
class DataCollatorForBeacon:
    """Collate `encode_beacon_batch` outputs for the task's head.

    Pads `input_ids` (right) with the tokenizer's pad id and builds `attention_mask`; for CRI-Off also
    `input_ids_b` / `attention_mask_b`. Labels: class ids or float targets for sequence tasks;
    `(B, L_nt[, T])` per-nucleotide labels padded with -100; `(B, L_nt, L_nt)` pair maps padded with -1,
    built from the stored pair lists with vectorised scatter.
    """

    tokenizer: object
    task: BeaconTask | str

    def __post_init__(self):
        self.task = get_task(self.task) if isinstance(self.task, str) else self.task
        _check_single_nucleotide_tokens(self.tokenizer, self.task)

    def _pad_ids(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in sequences)
        ids = _pad_ragged(sequences, width, self.tokenizer.pad_token_id, np.int64)
        mask = _pad_ragged([[1] * len(s) for s in sequences], width, 0, np.int64)
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        task = self.task
        batch = {}
        batch["input_ids"], batch["attention_mask"] = self._pad_ids([f["input_ids"] for f in features])
        if task.input_kind == "pair":
            batch["input_ids_b"], batch["attention_mask_b"] = self._pad_ids([f["input_ids_b"] for f in features])
        if "labels" not in features[0]:
            return batch
        labels = [f["labels"] for f in features]
        width = batch["input_ids"].shape[1] - 2
        if task.level == "pairwise":
            batch["labels"] = torch.from_numpy(self._pair_labels(labels, [len(f["input_ids"]) - 2 for f in features], width))
        elif task.level == "nucleotide":
            if task.problem_type == "single_label_classification":
                batch["labels"] = torch.from_numpy(_pad_ragged(labels, width, -100, np.int64))
            else:
                tail = (task.num_labels,) if task.num_labels > 1 else ()
                batch["labels"] = torch.from_numpy(_pad_ragged(labels, width, -100.0, np.float32, tail))
        elif task.problem_type == "single_label_classification":
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        else:
            batch["labels"] = torch.tensor(labels, dtype=torch.float32)
        return batch

    def _pair_labels(self, labels: list, lengths: list[int], width: int) -> np.ndarray:
        lengths = np.asarray(lengths)
        inside = np.arange(width)[None, :] < lengths[:, None]
        square = inside[:, :, None] & inside[:, None, :]
        out = np.full((len(labels), width, width), -1.0, dtype=np.float32)
        if self.task.is_regression:
            out[square] = np.concatenate([np.asarray(m, dtype=np.float32).reshape(-1) for m in labels])
            return out
        out[square] = 0.0
        pairs = [np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in labels]
        rows = np.repeat(np.arange(len(pairs)), [len(p) for p in pairs])
        pairs = np.concatenate(pairs) if len(rows) else np.zeros((0, 2), dtype=np.int64)
        out[rows, pairs[:, 0], pairs[:, 1]] = 1.0
        out[rows, pairs[:, 1], pairs[:, 0]] = 1.0
        return out
