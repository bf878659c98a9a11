"""Drives the RandomMask phase schedule from the Trainer's progress and logs what the masking did."""

from __future__ import annotations

import math

from torch.utils.data import IterableDataset
from transformers import TrainerCallback

from ..data.collator_randommask import DataCollatorForRandomMask


class RandomMaskCallback(TrainerCallback):
    """Keeps a :class:`~hf_genomics.DataCollatorForRandomMask` in step with training and logs its statistics.

    At every epoch (and so at the start of a resumed run) it tells the collator, through shared memory that
    DataLoader workers see too, which batch of the run comes next, ``max_steps`` and the accumulation steps; the
    collator counts from there, so each batch is masked in the phase of the optimizer step that trains on it, a
    pure function of ``step / max_steps``, however far ahead it is collated. Evaluation batches collated in the
    main process do not move the count. Every rank of a multi-process run does the same from its identical
    ``global_step``. The epoch also reaches the collator: a seeded collator's masks depend on it and on the batch,
    so a resumed run masks each batch as the uninterrupted run did.

    At each training log it adds ``randommask_phase`` and ``randommask_boundary`` (the phase and ``m`` of the
    logged step), ``randommask_masked_fraction`` (masked / maskable tokens) and ``randommask_hidden_nucleotides``
    (hidden nucleotides per sequence), the last two over this process's batches collated since the previous
    log; batches collated during evaluation are left out. Given the corpus' ``no_context_floor``
    (:meth:`DataCollatorForRandomMask.no_context_floor`), it logs it next to every training loss, with
    ``loss_minus_floor``: a masked-LM loss that does not go below the floor learnt no context.

    Trainer puts reporting callbacks (``report_to``) before user callbacks; to have them record these
    metrics too, insert this callback first: ``trainer.callback_handler.callbacks.insert(0, callback)``.
    ``state.log_history`` and the progress bar always get them.
    """

    def __init__(self, collator: DataCollatorForRandomMask, no_context_floor: float | None = None):
        if not isinstance(collator, DataCollatorForRandomMask):
            raise ValueError(f"RandomMaskCallback needs a DataCollatorForRandomMask, got {type(collator).__name__}.")
        self.collator = collator
        self.no_context_floor = no_context_floor
        self._since_last_log = collator.statistics()
        self._resuming = False
        self._before_evaluation = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._resuming = state.global_step > 0
        self._since_last_log = self.collator.statistics()

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        next_batch = state.global_step * args.gradient_accumulation_steps
        if self._resuming and isinstance(getattr(train_dataloader, "dataset", None), IterableDataset):
            # Trainer cannot index into an iterable: it skips the batches already trained on by collating them
            # again from the start of the stream.
            next_batch = 0
        self._resuming = False
        # state.epoch is fractional inside an epoch (a resumed run begins mid-epoch); its floor is the epoch index.
        self.collator.start_stream(next_batch, state.max_steps, args.gradient_accumulation_steps,
                                   epoch=math.floor(state.epoch or 0))

    def on_step_end(self, args, state, control, **kwargs):
        # Evaluation, if any, runs next: remember where the training stream stands.
        self._before_evaluation = self.collator.stream_position()

    def on_evaluate(self, args, state, control, **kwargs):
        if self._before_evaluation is not None:
            self.collator.restore_stream_position(self._before_evaluation)
        self._since_last_log = self.collator.statistics()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        current, previous = self.collator.statistics(), self._since_last_log
        self._since_last_log = current
        maskable = current["maskable_tokens"] - previous["maskable_tokens"]
        sequences = current["sequences"] - previous["sequences"]
        phase = self.collator.schedule.phase_at(max(state.global_step - 1, 0), state.max_steps)
        metrics = {
            "randommask_phase": phase,
            "randommask_boundary": self.collator.schedule.boundaries[phase],
            "randommask_masked_fraction": (current["masked_tokens"] - previous["masked_tokens"]) / max(maskable, 1),
            "randommask_hidden_nucleotides": (current["hidden_nucleotides"] - previous["hidden_nucleotides"])
            / max(sequences, 1),
        }
        if self.no_context_floor is not None:
            metrics["no_context_floor"] = self.no_context_floor
            metrics["loss_minus_floor"] = logs["loss"] - self.no_context_floor
        logs.update(metrics)
        # Trainer.log appended a copy of `logs` to the history before calling back.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)
