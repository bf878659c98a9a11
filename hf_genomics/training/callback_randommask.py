"""Drives the RandomMask phase schedule from the Trainer's progress and logs what the masking did."""

from __future__ import annotations

from transformers import TrainerCallback

from ..data.collator_randommask import DataCollatorForRandomMask


class RandomMaskCallback(TrainerCallback):
    """Keeps a :class:`~hf_genomics.DataCollatorForRandomMask` in step with training and logs its statistics.

    The phase is a pure function of ``state.global_step / state.max_steps``, pushed into the collator's
    shared memory at ``on_train_begin`` (so a resumed run starts in the phase of its checkpoint) and after
    every optimizer step (so DataLoader workers, which hold copies of the collator, follow). Every rank of
    a multi-process run does the same from its identical ``global_step``.

    At each training log it adds ``randommask_phase``, ``randommask_boundary`` (current ``m``),
    ``randommask_masked_fraction`` (masked / maskable tokens) and ``randommask_hidden_nucleotides``
    (hidden nucleotides per sequence), the last two over this process's batches collated since the
    previous log; batches collated during evaluation are left out. Batches are collated a few steps ahead
    of use (DataLoader prefetching), so a phase change reaches training that many steps late.

    Trainer puts reporting callbacks (``report_to``) before user callbacks; to have them record these
    metrics too, insert this callback first: ``trainer.callback_handler.callbacks.insert(0, callback)``.
    ``state.log_history`` and the progress bar always get them.
    """

    def __init__(self, collator: DataCollatorForRandomMask):
        if not isinstance(collator, DataCollatorForRandomMask):
            raise ValueError(f"RandomMaskCallback needs a DataCollatorForRandomMask, got {type(collator).__name__}.")
        self.collator = collator
        self._since_last_log = collator.statistics()

    def on_train_begin(self, args, state, control, **kwargs):
        self.collator.set_progress(state.global_step, state.max_steps)
        self._since_last_log = self.collator.statistics()

    def on_step_end(self, args, state, control, **kwargs):
        self.collator.set_progress(state.global_step, state.max_steps)

    def on_evaluate(self, args, state, control, **kwargs):
        self._since_last_log = self.collator.statistics()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        current, previous = self.collator.statistics(), self._since_last_log
        self._since_last_log = current
        maskable = current["maskable_tokens"] - previous["maskable_tokens"]
        sequences = current["sequences"] - previous["sequences"]
        metrics = {
            "randommask_phase": self.collator.phase,
            "randommask_boundary": self.collator.mask_boundary,
            "randommask_masked_fraction": (current["masked_tokens"] - previous["masked_tokens"]) / max(maskable, 1),
            "randommask_hidden_nucleotides": (current["hidden_nucleotides"] - previous["hidden_nucleotides"])
            / max(sequences, 1),
        }
        logs.update(metrics)
        # Trainer.log appended a copy of `logs` to the history before calling back.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)
