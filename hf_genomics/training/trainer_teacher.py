"""Base ``Trainer`` for methods with an EMA teacher (self-distillation, LayerMatch's Avg-Clustering)."""

from __future__ import annotations

import math
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from ..tokenizer_compatibility import check_tokenizer_matches_model
from .checkpoints import checkpoint_folder
from .ema import ModelEMA

TEACHER_STATE_NAME = "teacher_state.safetensors"


def cosine_momentum(step: int, max_steps: int, base: float, final: float = 1.0) -> float:
    """DINO/BYOL cosine schedule: ``final - (final - base) * (cos(pi * step / max_steps) + 1) / 2``."""
    progress = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class _TeacherCallback(TrainerCallback):
    """Moves the EMA teacher after each optimizer step, writes it into each checkpoint and restores it on resume."""

    def __init__(self, trainer: "EMATeacherTrainer"):
        self.trainer = trainer
        # The checkpoint `train()` resumes from (callbacks are not told it).
        self.resume_from: str | os.PathLike | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.resume_from is not None:
            self.trainer.load_teacher_state(self.resume_from)

    def on_optimizer_step(self, args, state, control, **kwargs):
        # global_step is incremented after this hook: the step just taken is global_step + 1.
        self.trainer.update_teacher(state.global_step + 1, state.max_steps)

    def on_save(self, args, state, control, **kwargs):
        if not args.should_save:
            return
        folder = checkpoint_folder(args, state)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Trainer saved no {folder} to put the EMA teacher in: "
                                    f"{type(self.trainer).__name__} needs checkpoints in args.output_dir "
                                    "(hyperparameter search is not supported).")
        self.trainer.save_teacher_state(folder)


class EMATeacherTrainer(Trainer):
    """A ``Trainer`` that keeps an EMA teacher of the model and checkpoints it.

    After every optimizer step the teacher follows the student with momentum
    ``teacher_momentum(step, max_steps)`` (constant ``teacher_momentum_base`` unless a subclass
    overrides it), capped in the first steps by :class:`ModelEMA`'s warm-up if ``ema_warmup=True``
    (default off; :attr:`last_teacher_momentum` is the momentum actually used). The teacher and its update
    count, plus any tensors returned by :meth:`extra_teacher_state`, are saved in every checkpoint (by an ``on_save``
    callback, into ``args.output_dir/checkpoint-<step>``) as ``teacher_state.safetensors`` and restored by
    ``train(resume_from_checkpoint=...)``.
    The teacher never receives gradients; it keeps float32 weights on the student's device (:class:`ModelEMA`)
    and subclasses run its forward passes under :meth:`teacher_autocast`. A `processing_class` whose vocabulary
    or special ids disagree with the model's config is refused unless `allow_tokenizer_mismatch=True`.
    """

    def __init__(self, *args, teacher_momentum_base: float = 0.996, ema_warmup: bool = False,
                 allow_tokenizer_mismatch: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        check_tokenizer_matches_model(self.processing_class, self.model, allow_mismatch=allow_tokenizer_mismatch)
        self.teacher_momentum_base = teacher_momentum_base
        self.teacher = ModelEMA(self.model, warmup=ema_warmup)
        self.last_teacher_momentum = teacher_momentum_base
        self._teacher_callback = _TeacherCallback(self)
        self.add_callback(self._teacher_callback)

    def teacher_momentum(self, step: int, max_steps: int) -> float:
        return self.teacher_momentum_base

    def update_teacher(self, step: int, max_steps: int) -> None:
        # ModelEMA follows the student's device (DeepSpeed/FSDP place the model after the teacher was copied).
        self.last_teacher_momentum = self.teacher.update(self.accelerator.unwrap_model(self.model),
                                                         self.teacher_momentum(step, max_steps))

    def teacher_autocast(self):
        """The mixed-precision context the Trainer's model forward runs in (``bf16``/``fp16``; a no-op otherwise).

        transformers 5 leaves autocast to accelerate, which wraps only ``model.forward``
        (``Trainer.autocast_smart_context_manager`` is a ``nullcontext``): the teacher, a separate module, needs
        it explicitly to run in the same precision as the student."""
        return self.accelerator.autocast()

    def extra_teacher_state(self) -> dict[str, nn.Module | torch.Tensor]:
        """Modules or tensors saved and restored with the teacher (e.g. a centre). Override to add."""
        return {}

    def _teacher_state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}
        for name, obj in self.extra_teacher_state().items():
            if isinstance(obj, nn.Module):
                state.update({f"{name}.{k}": v for k, v in obj.state_dict().items()})
            else:
                state[name] = obj
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def _load_teacher_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.teacher.load_state_dict({k[len("teacher."):]: v for k, v in state.items() if k.startswith("teacher.")})
        for name, obj in self.extra_teacher_state().items():
            if isinstance(obj, nn.Module):
                prefix = f"{name}."
                obj.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            else:
                obj.copy_(state[name])

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """``Trainer.train``; a resumed run also restores the EMA teacher from the checkpoint."""
        if resume_from_checkpoint is True:
            # Trainer resolves `True` alike; with no checkpoint it stays `True` so that Trainer raises its own error.
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir) or True
        resumes = resume_from_checkpoint is not None and not isinstance(resume_from_checkpoint, bool)
        self._teacher_callback.resume_from = resume_from_checkpoint if resumes else None
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def save_teacher_state(self, folder: str) -> None:
        """Save the teacher, its update count and :meth:`extra_teacher_state` in ``folder`` (for a resume)."""
        # safetensors refuses tensors that share memory (tied embeddings): clone each one.
        save_file({k: v.clone() for k, v in self._teacher_state_dict().items()},
                  os.path.join(folder, TEACHER_STATE_NAME))

    def load_teacher_state(self, folder: str) -> None:
        """Restore what :meth:`save_teacher_state` wrote to ``folder``."""
        path = os.path.join(folder, TEACHER_STATE_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{folder} has no {TEACHER_STATE_NAME}: it was not written by an "
                f"{type(self).__name__}, so the EMA teacher cannot be restored."
            )
        self._load_teacher_state_dict(load_file(path))

    def save_teacher(self, output_dir: str) -> None:
        """Save the teacher as a normal Hub-ready model folder (what users fine-tune)."""
        teacher = self.teacher.module
        if hasattr(teacher, "save_pretrained"):
            teacher.save_pretrained(output_dir)
        else:
            os.makedirs(output_dir, exist_ok=True)
            save_file({k: v.clone() for k, v in teacher.state_dict().items()},
                      os.path.join(output_dir, "model.safetensors"))
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
