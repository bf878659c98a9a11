"""Base ``Trainer`` for methods with an EMA teacher (self-distillation, LayerMatch's Avg-Clustering)."""

from __future__ import annotations

import math
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainerCallback

from ..tokenizer_compatibility import check_tokenizer_matches_model
from .ema import ModelEMA

TEACHER_STATE_NAME = "teacher_state.safetensors"


def cosine_momentum(step: int, max_steps: int, base: float, final: float = 1.0) -> float:
    """DINO/BYOL cosine schedule: ``final - (final - base) * (cos(pi * step / max_steps) + 1) / 2``."""
    progress = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class _TeacherUpdateCallback(TrainerCallback):
    def __init__(self, trainer: "EMATeacherTrainer"):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        # global_step is incremented after this hook: the step just taken is global_step + 1.
        self.trainer.update_teacher(state.global_step + 1, state.max_steps)


class EMATeacherTrainer(Trainer):
    """A ``Trainer`` that keeps an EMA teacher of the model and checkpoints it.

    After every optimizer step the teacher follows the student with momentum
    ``teacher_momentum(step, max_steps)`` (constant ``teacher_momentum_base`` unless a subclass
    overrides it), capped in the first steps by :class:`ModelEMA`'s warm-up if ``ema_warmup=True``
    (default off; :attr:`last_teacher_momentum` is the momentum actually used). The teacher and its update
    count, plus any tensors returned by :meth:`extra_teacher_state`, are saved in every checkpoint as
    ``teacher_state.safetensors`` and restored by ``resume_from_checkpoint``.
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
        self.add_callback(_TeacherUpdateCallback(self))

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

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            # safetensors refuses tensors that share memory (tied embeddings): clone each one.
            save_file({k: v.clone() for k, v in self._teacher_state_dict().items()},
                      os.path.join(folder, TEACHER_STATE_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, TEACHER_STATE_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{resume_from_checkpoint} has no {TEACHER_STATE_NAME}: it was not written by an "
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
