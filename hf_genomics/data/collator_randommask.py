"""RandomMask span masking for k-mer masked language modelling, with an expanding mask boundary."""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping
from itertools import chain
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling

from ..metrics.mlm_floor import no_context_mlm_loss
from .padding import pad_rows

_NUCLEOTIDES = frozenset("ACGTU")
# One statistics row per writer: the main process (row 0) and DataLoader workers 0..62 (rows 1..63).
# Each row is written by a single process, so no two processes ever race on the same counters.
_MAX_STATISTIC_WRITERS = 64
# A batch's fingerprint reads this many ids of every row.
_FINGERPRINT_COLUMNS = 8
# Example fields the collator pads itself; anything else goes through tokenizer.pad.
_PADDED_KEYS = frozenset({"input_ids", "attention_mask", "special_tokens_mask"})
_BATCHES, _SEQUENCES, _MASKABLE, _MASKED, _HIDDEN = range(5)
_NUM_COUNTERS = 5
# The shared stream description is [index of the next training batch, max_steps, accumulation steps, epoch,
# generation]; the generation number tells every copy of the collator that the stream was restarted.
_EPOCH, _GENERATION = 3, 4


@dataclass(frozen=True)
class RandomMaskSchedule:
    """Mask boundaries ``m`` per training phase, the phase being a pure function of ``global_step / max_steps``.

    Args:
        boundaries: the mask boundary (span width in tokens) of each phase.
        phase_lengths: relative lengths of the phases (default: equal).
        sample_boundary: if ``True``, every centre draws its own ``m`` uniformly from
            ``[min(boundaries), boundaries[phase]]`` instead of using ``boundaries[phase]``.

    >>> schedule = RandomMaskSchedule.expanding(6)
    >>> schedule.boundaries, [schedule.phase_at(step, 10) for step in range(11)]
    ((6, 8, 10, 12, 14), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4])
    >>> RandomMaskSchedule.fixed(6).boundary_at(999, 1000)
    6
    """

    boundaries: tuple[int, ...]
    phase_lengths: tuple[float, ...] | None = None
    sample_boundary: bool = False

    def __post_init__(self):
        boundaries = tuple(self.boundaries)
        if not boundaries or any(not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in boundaries):
            raise ValueError(f"boundaries must be a non-empty sequence of positive ints, got {self.boundaries!r}.")
        object.__setattr__(self, "boundaries", boundaries)
        lengths = (1.0,) * len(boundaries) if self.phase_lengths is None else tuple(self.phase_lengths)
        if len(lengths) != len(boundaries) or any(not length > 0 for length in lengths):
            raise ValueError(
                f"phase_lengths must hold one positive length per boundary ({len(boundaries)}), "
                f"got {self.phase_lengths!r}."
            )
        object.__setattr__(self, "phase_lengths", lengths)

    @classmethod
    def expanding(
        cls, start: int, num_phases: int = 5, increment: int = 2, sample_boundary: bool = False
    ) -> RandomMaskSchedule:
        """RandomMask's default: ``num_phases`` equal phases with ``m = start, start + increment, ...``."""
        if num_phases < 1 or increment < 0:
            raise ValueError(f"num_phases must be >= 1 and increment >= 0, got {num_phases} and {increment}.")
        return cls(tuple(start + increment * phase for phase in range(num_phases)), sample_boundary=sample_boundary)

    @classmethod
    def fixed(cls, boundary: int) -> RandomMaskSchedule:
        """One phase with a constant boundary: DNABERT's masking when ``boundary == k``."""
        return cls((boundary,))

    @property
    def num_phases(self) -> int:
        return len(self.boundaries)

    @property
    def min_boundary(self) -> int:
        return min(self.boundaries)

    @lru_cache(maxsize=64)
    def phase_at(self, global_step: int, max_steps: int) -> int:
        """Phase index at ``global_step`` of ``max_steps`` (phase 0 while ``max_steps`` is unknown)."""
        if max_steps <= 0:
            return 0
        # Exact rational arithmetic: with floats, step 6 of 10 would fall just short of the 0.6 boundary.
        progress = Fraction(min(global_step, max_steps), max_steps)
        lengths = [Fraction(length).limit_denominator(10**9) for length in self.phase_lengths]
        total, cumulative = sum(lengths), Fraction(0)
        for phase, length in enumerate(lengths[:-1]):
            cumulative += length
            if progress < cumulative / total:
                return phase
        return self.num_phases - 1

    def boundary_at(self, global_step: int, max_steps: int) -> int:
        return self.boundaries[self.phase_at(global_step, max_steps)]


@dataclass
class DataCollatorForRandomMask(DataCollatorForLanguageModeling):
    """RandomMask (Liang et al., 2023, "Rethinking the BERT-like Pretraining for DNA Sequences").

    A drop-in replacement for :class:`~transformers.DataCollatorForLanguageModeling` (same padding,
    ``seed``, ``mask_replace_prob`` / ``random_replace_prob``) that masks contiguous spans: each
    maskable token ``i`` becomes a *centre* with probability ``mlm_probability`` (DNABERT's meaning of
    that flag; default 0.025) and tokens ``[i - m/2 + 1, i + m/2]`` are masked, clipped to the sequence
    and never covering special or pad tokens. ``m`` comes from ``schedule`` and the optimizer step that will
    train on the batch: the collator counts the training batches it collates from a starting point that
    :class:`~hf_genomics.RandomMaskCallback` sets at each epoch (in shared memory, so DataLoader workers, which
    take every ``num_workers``-th batch, count too). Prefetching therefore does not delay a phase change.

    Spans are in token units. The schedule's starting width is the number of tokens covering one
    nucleotide, ``ceil(k / stride)``: ``k`` for overlapping k-mers (``m = 6`` with 6-mers is DNABERT's
    ``[i-2, i+3]`` span and hides exactly one nucleotide), and 1 for single nucleotides and
    non-overlapping k-mers, where tokens share no nucleotides, every masked token hides all of its
    own, and a span of ``m`` tokens hides ``m * k`` nucleotides.

    Args:
        schedule: ``"expanding"`` (5 equal phases, ``m = w, w+2, ..., w+8`` with ``w = ceil(k / stride)``),
            ``"fixed"`` (``m = w`` throughout: DNABERT's masking) or a :class:`RandomMaskSchedule`.

    Masked tokens are corrupted 80/10/10 ([MASK] / random / unchanged); random replacements are real
    k-mer tokens (``k`` nucleotide letters), never specials. The tokenizer must expose ``k`` and
    ``stride`` (:class:`~hf_genomics.NucleotideTokenizer`, :class:`~hf_genomics.KmerTokenizer`).

    With a ``seed``, each batch draws from its own generator, seeded by the seed, the epoch (set by the
    callback) and the batch's token ids: a batch is masked the same way whichever process or DataLoader worker
    collates it, whatever was collated before it (evaluation batches included), and in a run resumed from a
    checkpoint. Without a seed, torch's global generator is used.
    """

    mlm_probability: float | None = 0.025
    schedule: RandomMaskSchedule | str = "expanding"
    _progress: torch.Tensor = field(init=False, repr=False)
    _statistics: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        if self.return_tensors != "pt":
            raise ValueError(
                f"DataCollatorForRandomMask only returns PyTorch tensors; got return_tensors={self.return_tensors!r}."
            )
        if not self.mlm or self.whole_word_mask:
            raise ValueError(
                "DataCollatorForRandomMask is a masked-LM collator: use mlm=True and whole_word_mask=False."
            )
        super().__post_init__()
        k, stride = getattr(self.tokenizer, "k", None), getattr(self.tokenizer, "stride", None)
        if not isinstance(k, int) or not isinstance(stride, int) or k < 1 or stride < 1:
            raise ValueError(
                "DataCollatorForRandomMask needs a tokenizer with integer attributes `k` and `stride` "
                f"(NucleotideTokenizer or KmerTokenizer); got k={k!r}, stride={stride!r}."
            )
        self.k, self.stride = k, stride
        self.min_span = math.ceil(k / stride)
        self.schedule = self._resolve_schedule(self.schedule)

        vocab = self.tokenizer.get_vocab()
        size = max(len(self.tokenizer), max(vocab.values()) + 1)
        nucleotide_length = torch.zeros(size, dtype=torch.long)
        special_ids = set(self.tokenizer.all_special_ids)
        for token, token_id in vocab.items():
            if token_id not in special_ids and set(token.upper()) <= _NUCLEOTIDES:
                nucleotide_length[token_id] = len(token)
        self._nucleotide_length = nucleotide_length
        self._kmer_ids = torch.nonzero(nucleotide_length == k).flatten()
        if self._kmer_ids.numel() == 0:
            raise ValueError(
                f"The tokenizer vocabulary has no {k}-mer tokens made of A/C/G/T to draw random replacements from."
            )
        self._mask_token_id = self.tokenizer.convert_tokens_to_ids(self.tokenizer.mask_token)
        self._pad_token_id = self.tokenizer.pad_token_id
        # Which ids may be masked: never specials, never padding.
        self._maskable_id = torch.ones(size, dtype=torch.bool)
        self._maskable_id[sorted(special_ids | {self._pad_token_id} - {None})] = False

        # Shared memory: forked or spawned DataLoader workers keep references to these very buffers, so the
        # callback's progress updates reach them and their statistics reach the callback.
        self._progress = torch.tensor([0, 0, 1, 0, 0], dtype=torch.long).share_memory_()
        self._statistics = torch.zeros(
            _MAX_STATISTIC_WRITERS, _NUM_COUNTERS + self.schedule.num_phases, dtype=torch.float64
        ).share_memory_()
        self._stream_position = (None, None, 0)  # (pid, generation, batches collated): per process, not shared
        self._batch_rng = None

    def _resolve_schedule(self, schedule: RandomMaskSchedule | str) -> RandomMaskSchedule:
        if isinstance(schedule, RandomMaskSchedule):
            return schedule
        if schedule == "expanding":
            return RandomMaskSchedule.expanding(self.min_span)
        if schedule == "fixed":
            return RandomMaskSchedule.fixed(self.min_span)
        raise ValueError(f"schedule must be 'expanding', 'fixed' or a RandomMaskSchedule, got {schedule!r}.")

    # ----- schedule state shared with the callback and DataLoader workers -----

    def set_progress(self, global_step: int, max_steps: int) -> None:
        """The next batch collated will be trained at optimizer step ``global_step + 1`` of ``max_steps``."""
        self.start_stream(global_step, max_steps)

    def start_stream(self, next_batch: int, max_steps: int, gradient_accumulation_steps: int = 1,
                     epoch: int | None = None) -> None:
        """Where the coming training batches sit: the next one collated is batch ``next_batch`` of the run
        (``gradient_accumulation_steps`` batches per optimizer step); called by RandomMaskCallback at every epoch."""
        if next_batch < 0 or max_steps < 0 or gradient_accumulation_steps < 1:
            raise ValueError(f"next_batch and max_steps must be >= 0 and gradient_accumulation_steps >= 1, got "
                             f"{next_batch}, {max_steps} and {gradient_accumulation_steps}.")
        epoch = int(self._progress[_EPOCH]) if epoch is None else epoch
        generation = int(self._progress[_GENERATION]) + 1
        self._progress.copy_(torch.tensor([next_batch, max_steps, gradient_accumulation_steps, epoch, generation]))

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose batches come next (a seeded collator masks the same batch differently in each)."""
        self._progress[_EPOCH] = epoch

    def _batch_step(self, first_batch: int, accumulation: int, generation: int, advance: bool) -> int:
        """The 0-based optimizer step that trains on the batch this process collates next. Worker ``w`` of ``W``
        collates batches ``w, w + W, ...`` of the stream (DataLoader hands batches out in turn)."""
        pid, seen, collated = self._stream_position
        if pid != os.getpid() or seen != generation:
            collated = 0  # a new stream, or a fresh copy in a worker
        worker = torch.utils.data.get_worker_info()
        offset, stride = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        if advance:
            self._stream_position = (os.getpid(), generation, collated + 1)
        return (first_batch + offset + collated * stride) // accumulation

    def stream_position(self) -> tuple:
        """This process's place in the stream, to put back after collating batches that are not training batches."""
        return self._stream_position

    def restore_stream_position(self, position: tuple) -> None:
        self._stream_position = position

    @property
    def phase(self) -> int:
        """The phase of the next batch this process collates."""
        first_batch, max_steps, accumulation, _, generation = self._progress.tolist()
        return self.schedule.phase_at(self._batch_step(first_batch, accumulation, generation, False), max_steps)

    @property
    def mask_boundary(self) -> int:
        return self.schedule.boundaries[self.phase]

    def statistics(self) -> dict[str, Any]:
        """Cumulative counters over every batch collated so far, summed over the main process and workers."""
        totals = self._statistics.sum(dim=0)
        return {
            "batches": int(totals[_BATCHES]),
            "sequences": int(totals[_SEQUENCES]),
            "maskable_tokens": int(totals[_MASKABLE]),
            "masked_tokens": int(totals[_MASKED]),
            "hidden_nucleotides": int(totals[_HIDDEN]),
            "batches_per_phase": [int(count) for count in totals[_NUM_COUNTERS:]],
        }

    def no_context_floor(self, input_ids) -> float:
        """The lowest loss this collator's masking allows without context (:func:`no_context_mlm_loss`), from the
        maskable tokens of ``input_ids`` (id rows, e.g. a tokenized corpus' ``input_ids`` column)."""
        rows = list(input_ids)
        flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=sum(len(row) for row in rows))
        counts = np.bincount(flat, minlength=len(self._maskable_id)) * self._maskable_id.numpy()
        return no_context_mlm_loss(counts, self._kmer_ids.numpy(), self.mask_replace_prob, self.random_replace_prob)

    # ----- random generator -----

    def batch_generator(self, input_ids: torch.Tensor) -> torch.Generator | None:
        """The generator that masks the batch `input_ids` (padded, before masking): seeded by ``seed``, the epoch
        and a fingerprint of the ids, so the masks do not depend on where in a stream the batch is collated."""
        return self._generator_for(input_ids, int(self._progress[_EPOCH]))

    def _generator_for(self, input_ids: torch.Tensor, epoch: int) -> torch.Generator | None:
        if self.seed is None:
            return None
        ids = input_ids.numpy().reshape(len(input_ids), -1) if input_ids.dim() else input_ids.numpy().reshape(1, 1)
        # Eight ids spread over every row (batches of different sequences differ there; identical batches are masked
        # alike, which is harmless), hashed with CRC-32 from a start set by the seed and epoch: few calls, since the
        # collator runs once per batch and its speed is a target. The generator is reseeded, not made anew, likewise.
        start = (self.seed * 1_000_003 + epoch) & 0xFFFFFFFF
        seed = zlib.crc32(ids[:, :: max(ids.shape[1] // _FINGERPRINT_COLUMNS, 1)].tobytes(), start)
        if self._batch_rng is None:
            self._batch_rng = torch.Generator()
        return self._batch_rng.manual_seed(seed)

    # ----- padding -----

    def torch_call(self, examples: list) -> dict[str, torch.Tensor]:
        ids_only = not isinstance(examples[0], Mapping)
        if not ids_only and any(set(example) - _PADDED_KEYS for example in examples):
            return super().torch_call(examples)  # other fields: let the tokenizer pad them
        rows = examples if ids_only else [example["input_ids"] for example in examples]
        input_ids, filled = self._pad(rows, self._pad_token_id)
        batch = {"input_ids": input_ids} if ids_only else {"input_ids": input_ids, "attention_mask": filled.long()}
        special_tokens_mask = None
        if not ids_only and "special_tokens_mask" in examples[0]:
            special_tokens_mask = self._pad([example["special_tokens_mask"] for example in examples], 1)[0]
        batch["input_ids"], batch["labels"] = self.torch_mask_tokens(batch["input_ids"], special_tokens_mask)
        return batch

    def _pad(self, rows: list, value: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pads id lists as ``tokenizer.pad`` does (``padding_side``, ``pad_to_multiple_of``) with
        :func:`~hf_genomics.data.padding.pad_rows`; also returns where the values went (the attention mask)."""
        if self._pad_token_id is None:
            raise ValueError("Padding needs a tokenizer with a pad token.")
        padded, filled = pad_rows(rows, value, self.pad_to_multiple_of, self.tokenizer.padding_side)
        return torch.from_numpy(padded), torch.from_numpy(filled)

    # ----- masking -----

    def torch_mask_tokens(
        self, inputs: torch.Tensor, special_tokens_mask: Any | None = None, offset_mapping: Any | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = torch.aminmax(inputs)
        if low < 0 or high >= len(self._maskable_id):
            self._reject_ids(inputs)
        first_batch, max_steps, accumulation, epoch, generation = self._progress.tolist()
        generator = self._generator_for(inputs, epoch)
        maskable = self._maskable_id.take(inputs)
        if special_tokens_mask is not None:
            maskable &= ~torch.as_tensor(special_tokens_mask, dtype=torch.bool)

        phase = self.schedule.phase_at(self._batch_step(first_batch, accumulation, generation, True), max_steps)
        boundary = self.schedule.boundaries[phase]
        # The centres are the same draw as DNABERT's mask_tokens: the fixed schedule masks exactly what it masks.
        centre_probability = maskable.to(torch.float32).mul_(self.mlm_probability)
        centres = torch.bernoulli(centre_probability, generator=generator)
        if self.schedule.sample_boundary:
            span = torch.randint(self.schedule.min_boundary, boundary + 1, inputs.shape, generator=generator)
        else:
            span = boundary
        masked = self._dilate(centres, span) & maskable

        # One uniform draw splits the masked tokens 80/10/10; masked_fill_/where/take rather than boolean or
        # advanced indexing: several times faster on CPU.
        labels = inputs.masked_fill(~masked, -100)
        original = inputs.clone()
        draw = torch.rand(inputs.shape, generator=generator)
        inputs.masked_fill_(masked & (draw < self.mask_replace_prob), self._mask_token_id)
        if self.random_replace_prob > 0:
            randomised = masked & (draw >= self.mask_replace_prob)
            randomised &= draw < self.mask_replace_prob + self.random_replace_prob
            random_kmers = self._kmer_ids.take(
                torch.randint(len(self._kmer_ids), inputs.shape, generator=generator)
            )
            torch.where(randomised, random_kmers, inputs, out=inputs)

        self._record(phase, original, maskable, masked)
        return inputs, labels

    def _reject_ids(self, inputs: torch.Tensor) -> None:
        """Name the example with an id outside the vocabulary: `take` would wrap negative ids around silently (and
        name no row for ids past the end)."""
        size = len(self._maskable_id)
        outside = (inputs < 0) | (inputs >= size)
        index = int(outside.any(dim=1).int().argmax())
        value = int(inputs[index][outside[index]][0])
        raise ValueError(
            f"DataCollatorForRandomMask: example {index} of the batch has input id {value}; accepted: ids "
            f"0..{size - 1} of the tokenizer's vocabulary (was it tokenized with another tokenizer?)."
        )

    @staticmethod
    def _dilate(centres: torch.Tensor, span: torch.Tensor | int) -> torch.Tensor:
        """Union of the intervals ``[i - (m-1)//2, i + m//2]`` around every centre ``i`` (width ``m``: ``span`` or
        ``span[i]``).

        A difference array: +1 where an interval opens, -1 just after it closes, then a cumulative sum;
        one scatter per side, whatever the number of centres or their widths.
        """
        batch, length = centres.shape
        positions = torch.arange(length).expand(batch, length)
        starts = (positions - (span - 1) // 2).clamp_(0, length)
        ends = (positions + span // 2 + 1).clamp_(0, length)
        difference = torch.zeros(batch, length + 1, dtype=centres.dtype)
        difference.scatter_add_(1, starts, centres).scatter_add_(1, ends, -centres)
        return difference[:, :length].cumsum_(1) > 0

    def hidden_nucleotides(self, input_ids: torch.Tensor, masked: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
        """Per sequence, the nucleotides every covering token of which is masked (not readable from a visible one).

        ``input_ids`` are the uncorrupted ids. The ``n``-th k-mer of a sequence covers nucleotides
        ``[n*stride, n*stride + k - 1]``, so an isolated span of ``m`` stride-1 k-mers hides ``m - k + 1``
        nucleotides, and a masked non-overlapping k-mer hides its ``k``. The single-nucleotide tokens after
        the last k-mer overlap nothing and hide themselves. Specials and padding neither hide nor reveal.
        """
        token_length = self._nucleotide_length.take(input_ids)
        window = token_length == self.k
        single = (token_length == 1) & ~window
        counts = torch.stack((masked & window, maskable & ~masked & window)).to(torch.int32)
        # before[..., t]: masked / visible k-mers at token positions < t. Spread so that entry x stands for token
        # x // stride and padded by k - stride at both ends, nucleotide n's covering tokens are counted by
        # spread[..., n + k] - spread[..., n]: two slices instead of a gather.
        before = torch.nn.functional.pad(counts.cumsum_(-1), (1, 0))
        spread = before.repeat_interleave(self.stride, dim=-1) if self.stride > 1 else before
        edge = (*spread.shape[:-1], self.k - self.stride)
        spread = torch.cat((spread.new_zeros(edge), spread, spread[..., -1:].expand(edge)), dim=-1)
        cover = spread[..., self.k :] - spread[..., : spread.shape[-1] - self.k]
        return ((cover[0] > 0) & (cover[1] == 0)).sum(dim=1) + (masked & single).sum(dim=1)

    def _record(self, phase: int, input_ids: torch.Tensor, maskable: torch.Tensor, masked: torch.Tensor) -> None:
        worker = torch.utils.data.get_worker_info()
        row = 0 if worker is None else worker.id + 1
        if row >= _MAX_STATISTIC_WRITERS:
            raise ValueError(
                f"DataCollatorForRandomMask keeps statistics for at most {_MAX_STATISTIC_WRITERS - 1} "
                "DataLoader workers."
            )
        counters = torch.zeros(_NUM_COUNTERS + self.schedule.num_phases, dtype=torch.float64)
        counters[_BATCHES] = 1
        counters[_SEQUENCES] = masked.shape[0]
        counters[_MASKABLE] = maskable.sum()
        counters[_MASKED] = masked.sum()
        counters[_HIDDEN] = self.hidden_nucleotides(input_ids, masked, maskable).sum()
        counters[_NUM_COUNTERS + phase] = 1
        self._statistics[row] += counters
