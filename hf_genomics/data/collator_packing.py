"""Packed (unpadded) batches: whole sequences concatenated into rows, with per-sequence position ids."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

# Values the row tails are padded with, per key (0 for every other key).
_FILL = {"special_tokens_mask": 1}


@dataclass
class DataCollatorForPacking:
    """Wraps a padding collator and packs its batch: whole sequences, concatenated into rows without padding.

    The inner ``collator`` runs first, on the features as they are (so MLM masking, RandomMask's phase and its
    per-batch generator are those of the unpacked batch); its batch must hold ``input_ids`` and ``attention_mask``
    (left or right padding). Each sequence's real tokens (its own special tokens included) are then placed whole in
    one row, and the packed batch has:

    - ``input_ids`` ``(R, W)``: rows of concatenated sequences, padded with ``pad_token_id`` to the longest row
      (rounded up to ``pad_to_multiple_of``);
    - ``attention_mask`` ``(R, W)``: 1 on real tokens, 0 on the tails;
    - ``position_ids`` ``(R, W)`` int64: ``0, 1, ..., n - 1`` along every sequence, restarting at 0 where the next
      begins (transformers' ``DataCollatorWithFlattening`` convention; the model keeps attention and ALiBi distances
      within each sequence). A row's padded tail continues its last sequence's count, as padding does in an
      unpacked batch, so 0 marks exactly the sequence starts.

    Sequences are numbered in packed order: row 0 left to right, then row 1, ... The other keys of the inner batch:

    - ``labels`` with ``pack_labels=True`` (masked-LM labels, shaped like ``input_ids``) are packed like
      ``input_ids``, padded with ``label_pad_token_id``; with ``pack_labels=False`` (sequence labels ``(B, ...)``,
      token-aligned labels ``(B, L, ...)`` or pair maps ``(B, L, L)``) they stay per sequence, reordered to the
      packed order, which is the order of the per-sequence outputs of the sequence, token and pair heads, and
      token-aligned ones are cut to the longest sequence and left-aligned, the width of those outputs;
    - any other tensor shaped ``(B, L, ...)`` like ``input_ids`` (``token_type_ids``, ``special_tokens_mask``) is
      packed (tails 0, 1 for ``special_tokens_mask``); any other tensor ``(B, ...)`` is per sequence, reordered;
    - anything else (and ``position_ids``, which packing makes) is a ``ValueError``.

    Args:
        collator: the inner collator, e.g. :class:`~hf_genomics.DataCollatorForRandomMask`,
            :class:`~transformers.DataCollatorForLanguageModeling` or :class:`~hf_genomics.DataCollatorForBeacon`.
        max_length: row capacity in tokens. ``None`` (default): one row holding the whole batch (what flex attention
            wants), in batch order. A number: rows of at most ``max_length`` tokens, filled first-fit decreasing
            (longest sequence first, each into the first row with room); sequences keep batch order within a row
            and rows are ordered by their first sequence. A longer sequence is a ``ValueError``.
        pack_labels: ``True`` for labels aligned with ``input_ids`` (masked LM), ``False`` for sequence- and
            token-level labels (see above).
        pad_token_id: the id the row tails are padded with; default: the inner collator's ``tokenizer.pad_token_id``.
        pad_to_multiple_of: round the row width up to a multiple of this (rows still hold at most ``max_length``
            real tokens).
        label_pad_token_id: what packed labels are padded with.

    Only real tokens are packed, so padding no longer inflates the work; ``attention_mask.sum()`` counts them, which is
    what ``TrainingArguments(include_num_input_tokens_seen="non_padding")`` reports.

    >>> import torch
    >>> def pad(features):
    ...     ids = [feature["input_ids"] for feature in features]
    ...     width = max(map(len, ids))
    ...     return {"input_ids": torch.tensor([row + [0] * (width - len(row)) for row in ids]),
    ...             "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids]),
    ...             "labels": torch.tensor([feature["label"] for feature in features])}
    >>> features = [{"input_ids": [1, 8, 9, 9, 2], "label": 0}, {"input_ids": [1, 5, 6, 2], "label": 1},
    ...             {"input_ids": [1, 7, 2], "label": 2}]
    >>> packed = DataCollatorForPacking(pad, max_length=8, pack_labels=False, pad_token_id=0)(features)
    >>> packed["input_ids"]
    tensor([[1, 8, 9, 9, 2, 1, 7, 2],
            [1, 5, 6, 2, 0, 0, 0, 0]])
    >>> packed["position_ids"]
    tensor([[0, 1, 2, 3, 4, 0, 1, 2],
            [0, 1, 2, 3, 4, 5, 6, 7]])
    >>> packed["labels"]  # the sequences in packed order: 0, 2, 1
    tensor([0, 2, 1])
    """

    collator: Callable[[list], Mapping[str, Any]]
    max_length: int | None = None
    pack_labels: bool = True
    pad_token_id: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100

    def __post_init__(self):
        for name in ("max_length", "pad_to_multiple_of"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be None or a positive int, got {value!r}.")
        if self.pad_token_id is None:
            self.pad_token_id = getattr(getattr(self.collator, "tokenizer", None), "pad_token_id", None)
        if self.pad_token_id is None:
            raise ValueError(
                "DataCollatorForPacking needs pad_token_id: pass it, or wrap a collator whose tokenizer has a pad "
                "token."
            )

    @property
    def tokenizer(self):
        """The inner collator's tokenizer (Trainer saves it with checkpoints when it has no processing_class)."""
        return getattr(self.collator, "tokenizer", None)

    def __call__(self, features: list) -> dict[str, torch.Tensor]:
        return self.pack(self.collator(features))

    def pack(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The packed form of a padded ``batch`` (the inner collator's output)."""
        if "input_ids" not in batch or "attention_mask" not in batch:
            missing = [key for key in ("input_ids", "attention_mask") if key not in batch]
            raise ValueError(
                f"DataCollatorForPacking needs input_ids and attention_mask from the inner collator, which returned "
                f"no {' and no '.join(missing)} (keys: {sorted(batch)}); its sequence boundaries come from the "
                "attention mask (give the inner collator dict features so that it returns one)."
            )
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        if not isinstance(input_ids, torch.Tensor) or not isinstance(attention_mask, torch.Tensor):
            raise ValueError("DataCollatorForPacking packs PyTorch tensors (use an inner collator returning 'pt').")
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be (batch, length); got {tuple(input_ids.shape)} and "
                f"{tuple(attention_mask.shape)}."
            )
        filled = attention_mask.bool()
        lengths, first = self._check_lengths(filled)
        rows = self._assign_rows(lengths.tolist())
        layout = _Layout(rows, lengths, first, filled.shape[1], self.pad_to_multiple_of)

        packed = {}
        for key, value in batch.items():
            packed[key] = self._pack_value(key, value, layout, input_ids.shape)
        packed["position_ids"] = layout.position_ids
        return packed

    def _check_lengths(self, filled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens per sequence and the column of the first; each sequence must be one run of real tokens (left or
        right padding)."""
        batch_size, width = filled.shape
        lengths = filled.sum(dim=1)
        first = filled.int().argmax(dim=1)
        last = width - 1 - filled.flip(1).int().argmax(dim=1)
        holes = lengths != last - first + 1
        if (lengths == 0).any() or holes.any():
            index = int(((lengths == 0) | holes).int().argmax())
            problem = "has no real token" if lengths[index] == 0 else "has padding between its real tokens"
            raise ValueError(
                f"DataCollatorForPacking: sequence {index} of the batch {problem} (attention_mask "
                f"{filled[index].int().tolist()}); packing takes one run of real tokens per sequence."
            )
        if self.max_length is not None and (lengths > self.max_length).any():
            index = int((lengths > self.max_length).int().argmax())
            raise ValueError(
                f"DataCollatorForPacking: sequence {index} of the batch has {int(lengths[index])} tokens, more than "
                f"max_length={self.max_length} (a row's capacity); raise max_length or truncate the sequences."
            )
        return lengths, first

    def _assign_rows(self, lengths: list[int]) -> list[list[int]]:
        """The sequences (batch indices) of each row, in packed order."""
        if self.max_length is None:
            return [list(range(len(lengths)))]
        rows, room = [], []
        # First-fit decreasing; `sorted` is stable, so equal lengths are placed in batch order.
        for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
            for row, free in enumerate(room):
                if lengths[index] <= free:
                    rows[row].append(index)
                    room[row] -= lengths[index]
                    break
            else:
                rows.append([index])
                room.append(self.max_length - lengths[index])
        for row in rows:
            row.sort()
        return sorted(rows, key=lambda row: row[0])

    def _pack_value(self, key: str, value: Any, layout: _Layout, shape: torch.Size) -> torch.Tensor:
        batch_size, width = shape
        if key == "position_ids":
            raise ValueError(
                "DataCollatorForPacking makes position_ids itself; the inner collator must not return them."
            )
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"DataCollatorForPacking packs tensors; the inner collator's {key!r} is a {type(value).__name__}."
            )
        token_aligned = value.dim() >= 2 and value.shape[:2] == shape
        if key == "labels" and self.pack_labels:
            if not token_aligned:
                raise ValueError(
                    f"pack_labels=True packs labels shaped like input_ids {tuple(shape)} (masked LM); got labels "
                    f"{tuple(value.shape)}. Use pack_labels=False for sequence- and token-level labels."
                )
            return layout.pack(value, self.label_pad_token_id)
        if token_aligned and key != "labels":
            fill = self.pad_token_id if key == "input_ids" else _FILL.get(key, 0)
            return layout.pack(value, fill)
        if key == "labels" and value.dim() >= 2 and value.shape[1] == width:
            value = layout.per_sequence_labels(value, width, self.label_pad_token_id)
        if value.dim() >= 1 and value.shape[0] == batch_size:
            return value.index_select(0, layout.order.to(value.device))
        raise ValueError(
            f"DataCollatorForPacking: the inner collator's {key!r} has shape {tuple(value.shape)}, neither per token "
            f"({batch_size}, {width}, ...) nor per sequence ({batch_size}, ...)."
        )


class _Layout:
    """Where every slot of the packed rows reads from in the padded batch, computed once and applied to every key."""

    def __init__(self, rows: list[list[int]], lengths: torch.Tensor, first: torch.Tensor, inner_width: int,
                 multiple: int | None):
        self.lengths, self.first = lengths, first
        self.order = torch.tensor([index for row in rows for index in row], dtype=torch.long)
        row_of = torch.tensor([r for r, row in enumerate(rows) for _ in row], dtype=torch.long)
        packed_lengths = lengths.take(self.order)
        row_lengths = torch.zeros(len(rows), dtype=torch.long).index_add_(0, row_of, packed_lengths)
        width = int(row_lengths.max())
        if multiple:
            width = -(-width // multiple) * multiple
        self.shape = (len(rows), width)
        # A sequence's first column in its row: its start in the concatenation of all rows, less its row's start.
        row_starts = row_lengths.cumsum(0) - row_lengths
        columns = packed_lengths.cumsum(0) - packed_lengths - row_starts[row_of]

        # Every slot belongs to the latest sequence starting at or before it (a row's padded tail to its last one):
        # mark each start with (packed index, column), both increasing along a row, and carry them right with cummax.
        latest = torch.zeros(self.shape, dtype=torch.long)
        latest.view(-1)[row_of * width + columns] = torch.arange(len(self.order)) * width + columns
        latest = latest.cummax(dim=1).values
        slot = torch.arange(width)
        self.position_ids = slot - latest % width
        self.tail = (slot >= row_lengths[:, None]).flatten()
        # Each real slot reads row `b` of the padded batch at its first real column plus the slot's position.
        sequence = self.order.take(latest // width)
        source = sequence * inner_width + first.take(sequence) + self.position_ids
        self.source = source.flatten().masked_fill_(self.tail, 0)

    def per_sequence_labels(self, labels: torch.Tensor, inner_width: int, fill) -> torch.Tensor:
        """Token-aligned labels cut to the longest sequence and left-aligned, as the token and pair heads return
        packed outputs: `(B, longest, ...)`, and a pair map `(B, inner_width, inner_width)` on both token axes."""
        longest = int(self.lengths.max())
        offsets = torch.arange(longest, device=labels.device)
        columns = (self.first.to(labels.device)[:, None] + offsets).clamp(max=inner_width - 1)
        beyond = offsets[None, :] >= self.lengths.to(labels.device)[:, None]

        def cut(values: torch.Tensor) -> torch.Tensor:
            tail = [1] * (values.dim() - 2)
            gathered = values.gather(1, columns.view(*columns.shape, *tail).expand(*columns.shape, *values.shape[2:]))
            return gathered.masked_fill(beyond.view(*beyond.shape, *tail), fill)

        labels = cut(labels)
        if labels.dim() == 3 and labels.shape[2] == inner_width:
            labels = cut(labels.transpose(1, 2)).transpose(1, 2)
        return labels

    def pack(self, value: torch.Tensor, fill) -> torch.Tensor:
        device = value.device
        packed = value.flatten(0, 1).index_select(0, self.source.to(device))
        tail = self.tail.to(device).view(-1, *([1] * (value.dim() - 2)))
        return packed.masked_fill_(tail, fill).view(*self.shape, *value.shape[2:])
