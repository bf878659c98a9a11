"""Self-distillation pretraining: masked-LM student, EMA teacher, DINO-style distillation between two views."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate.utils import send_to_device
from safetensors.torch import save_file
from torch import nn
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.utils import SAFE_WEIGHTS_NAME, ModelOutput

from ..data.augment import (
    Compose,
    PointMutation,
    RandomMasking,
    RandomShift,
    ReverseComplement,
    nucleotide_letters,
    reverse_complement_probability,
)
from .ema import module_device
from .trainer_teacher import EMATeacherTrainer, cosine_momentum

logger = logging.getLogger(__name__)

POOLING_MODES = ("cls", "mean")


def teacher_probabilities(teacher_output: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """Centred, sharpened teacher distribution ``softmax((t - center) / temperature)``."""
    return F.softmax((teacher_output - center) / temperature, dim=-1)


def distillation_cross_entropy(
    teacher_probs: torch.Tensor, student_output: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``mean_b sum_c -teacher_probs * log_softmax(student / temperature)``."""
    return -(teacher_probs * F.log_softmax(student_output / temperature, dim=-1)).sum(-1).mean()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) along the last dimension."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def default_views(
    tokenizer,
    mlm_probability: float = 0.15,
    mutation_rate: float = 0.01,
    reverse_complement_prob: float | None = None,
    max_shift: int = 20,
) -> tuple[Compose, RandomShift]:
    """FinDNA's views: student = point-mutated, reverse-complemented (``reverse_complement_prob``), then masked
    (writes MLM ``labels``); teacher = the sequence circularly shifted by up to ``max_shift`` positions.

    ``reverse_complement_prob=None``: 0.5 for a DNA tokenizer (genome pretraining: both strands are DNA), 0 for an
    RNA one (``ACGU``: an RNA's reverse complement is another molecule). RNA written in DNA letters (BEACON's
    tokenizer) cannot be told apart here: pass 0."""
    if reverse_complement_prob is None:
        reverse_complement_prob = reverse_complement_probability("U" in nucleotide_letters(tokenizer))
    student = Compose(
        [
            PointMutation(tokenizer, rate=mutation_rate),
            ReverseComplement(tokenizer, p=reverse_complement_prob),
            RandomMasking(tokenizer, rate=mlm_probability, labels_key="labels"),
        ]
    )
    return student, RandomShift(tokenizer, max_shift=max_shift)


class DINOProjectionHead(nn.Module):
    """DINO projection head (Caron et al., 2021): MLP, L2-normalised bottleneck, then a weight-normalised linear
    map to ``out_dim`` with unit-norm rows (DINO's ``norm_last_layer=True``), so every output is a cosine
    similarity in [-1, 1]: the student cannot approach the uniform teacher by shrinking the last layer."""

    def __init__(self, in_dim: int, out_dim: int = 256, hidden_dim: int = 256, bottleneck_dim: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(self.mlp(pooled), dim=-1), F.normalize(self.last_layer.weight, dim=-1))


@dataclass
class SelfDistillationOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    projection: torch.Tensor | None = None


class SelfDistillationModel(nn.Module):
    """A masked-LM model plus a projection head on its pooled last hidden state.

    This is the module the ``Trainer`` optimises (so the head is trained, clipped and DDP-synchronised with
    the encoder) and the module the EMA teacher copies. ``save_pretrained`` saves the masked-LM model only:
    a normal Hub folder.
    """

    def __init__(self, model: nn.Module, head: nn.Module, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}.")
        self.model = model
        self.head = head
        self.pooling = pooling

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> SelfDistillationOutput:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            output_hidden_states=True,
            return_dict=True,
            **kwargs,
        )
        hidden = outputs.hidden_states[-1]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = attention_mask if attention_mask is not None else torch.ones(hidden.shape[:2],
                                                                                   device=hidden.device)
            weights = weights.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        # A bfloat16 encoder may carry a float32 head: the head computes in its own dtype (autocast, if active,
        # still decides the matmul precision).
        head_weight = next(self.head.parameters(), None)
        if head_weight is not None and head_weight.is_floating_point():
            pooled = pooled.to(head_weight.dtype)
        return SelfDistillationOutput(loss=outputs.loss, logits=outputs.logits, projection=self.head(pooled))

    def save_pretrained(self, *args, **kwargs):
        return self.model.save_pretrained(*args, **kwargs)


class SelfDistillationTrainer(EMATeacherTrainer):
    """Self-distillation pretraining (FinDNA: Yu et al., "Self-distillation improves self-supervised learning
    for DNA sequence inference", Neural Networks 2024) for any masked-LM model.

    Each batch of plain token ids (a padding collator, no pre-masked ``labels``) gives two views: the
    student sees ``student_augment(batch)`` (default, :func:`default_views`: point-mutated, reverse-complemented
    unless the tokenizer is RNA, masked; it must write MLM ``labels``), the teacher ``teacher_augment(batch)``
    (default: circular shift). The loss is

        ``mlm_loss + distillation_weight * CE(softmax((t - C) / T_t), softmax(s / T_s))``

    over a projection head on the pooled last hidden state (``"mean"`` over the attended tokens, or ``"cls"``),
    with
    ``T_t = teacher_temperature`` (0.04), ``T_s = student_temperature`` (0.1) and centre
    ``C <- center_momentum * C + (1 - center_momentum) * mean_batch(t)``, the batch mean all-reduced across
    processes. The teacher (encoder + head) follows the student by EMA with momentum on a cosine schedule from
    ``teacher_momentum_base`` (0.996) to 1. Logged: ``mlm_loss``, ``distillation_loss``,
    ``teacher_momentum``, ``teacher_entropy`` (mean per-sample entropy of the teacher distribution) and
    ``teacher_batch_entropy`` (entropy of its batch mean). The two being equal means every sequence gets the
    same teacher output (collapse: to one dimension if near 0, to uniform if near log(projection_dim)).

    Mean pooling is the default because the ``[CLS]`` state of a masked-LM encoder barely depends on the
    sequence (no loss reaches it): its spread across a batch is ~0.2 % of its spread across features in a fresh
    BEACON model, against ~16 % for the mean, so the centred [CLS] teacher is uniform from the first step and
    the distillation term teaches nothing. (FinDNA also mean-pools for fine-tuning.) The teacher is an average
    of past students: with ``teacher_momentum_base`` 0.996 it keeps ``prod_t m_t`` ~ exp(-0.002 T) of its random
    initial weights after T steps, so short runs need a lower base (a warning says so).

    Differences from the released FinDNA code (``wiedersehne/FinDNA``), which has defects: the MLM loss is a
    cross-entropy on the masked positions only (the original's mask broadcast selected wrong positions, and
    it divided MLM logits by the student temperature); reverse complement uses the true complement and runs
    before masking, so MLM targets are those of the reverse-complemented input; views are drawn per batch,
    not once offline; the teacher view is the shift alone (the original's insertion/deletion were nullified
    by a loop bug); the centre update takes one argument and is all-reduced across processes. A DINO
    projection head replaces FinDNA's reuse of the 5-way output layer.

    The teacher's head lives inside the teacher (``teacher.module.head``) and is checkpointed with it; the
    centre is in :meth:`extra_teacher_state`. ``save_model(dir)`` writes the student masked-LM model,
    ``save_model(dir, teacher=True)`` (= ``save_teacher``) the teacher, both as Hub-ready folders.
    """

    def __init__(
        self,
        model: nn.Module,
        args=None,
        *,
        student_augment=None,
        teacher_augment=None,
        projection_head: nn.Module | None = None,
        projection_dim: int = 256,
        pooling: str = "mean",
        distillation_weight: float = 1.0,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        center_momentum: float = 0.9,
        teacher_momentum_base: float = 0.996,
        **kwargs,
    ):
        if student_temperature <= 0 or teacher_temperature <= 0:
            raise ValueError("student_temperature and teacher_temperature must be > 0.")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}.")
        if distillation_weight < 0:
            raise ValueError(f"distillation_weight must be >= 0, got {distillation_weight}.")
        hidden_size = getattr(getattr(model, "config", None), "hidden_size", None)
        if hidden_size is None:
            raise ValueError("The model needs `config.hidden_size` (a transformers masked-LM model).")
        if projection_head is None:
            # float32 like any fresh module, whatever the encoder's dtype; on the encoder's device.
            projection_head = DINOProjectionHead(hidden_size, projection_dim).to(module_device(model) or "cpu")
        head_weight = next(projection_head.parameters())
        with torch.no_grad():
            probe = torch.zeros(1, hidden_size, device=head_weight.device, dtype=head_weight.dtype)
            out_dim = projection_head(probe).shape[-1]
        super().__init__(SelfDistillationModel(model, projection_head, pooling), args,
                         teacher_momentum_base=teacher_momentum_base, **kwargs)
        if student_augment is None or teacher_augment is None:
            if self.processing_class is None:
                raise ValueError("Pass `processing_class=tokenizer` (for the default views) or both augmentations.")
            default_student, default_teacher = default_views(self.processing_class)
            student_augment = student_augment or default_student
            teacher_augment = teacher_augment or default_teacher
        self.student_augment = student_augment
        self.teacher_augment = teacher_augment
        self.distillation_weight = distillation_weight
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.center_momentum = center_momentum
        self.center = torch.zeros(1, out_dim, device=self.args.device)
        # compute_loss returns a per-batch mean: the Trainer divides it by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        self._view_key = None
        self._view_calls = 0
        self._metric_sums: dict[str, float] = {}
        self._metric_count = 0

    @property
    def student(self) -> nn.Module:
        """The masked-LM model being trained (without the projection head)."""
        return self.accelerator.unwrap_model(self.model).model

    def teacher_momentum(self, step: int, max_steps: int) -> float:
        return cosine_momentum(step, max_steps, self.teacher_momentum_base, 1.0)

    def update_teacher(self, step: int, max_steps: int) -> None:
        if step == 1:
            kept = math.prod(self.teacher_momentum(t, max_steps) for t in range(1, max_steps + 1))
            if kept > 0.5:
                logger.warning(
                    "With teacher_momentum_base=%s over %d steps the EMA teacher keeps %.0f%% of its random initial "
                    "weights; lower teacher_momentum_base for short runs (0.996 suits ~100k steps).",
                    self.teacher_momentum_base, max_steps, 100 * kept,
                )
        super().update_teacher(step, max_steps)

    def extra_teacher_state(self) -> dict[str, torch.Tensor]:
        return {"center": self.center}

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """EMA of the teacher outputs' batch mean; sums and counts are all-reduced so every rank agrees."""
        stats = torch.cat([teacher_output.float().sum(0), teacher_output.new_tensor([teacher_output.shape[0]]).float()])
        stats = self.accelerator.reduce(stats, reduction="sum")
        batch_mean = stats[:-1] / stats[-1]
        self.center.mul_(self.center_momentum).add_((1.0 - self.center_momentum) * batch_mean.unsqueeze(0))

    def _reseed_views(self, training: bool) -> None:
        # Views depend only on (seed, step, micro-batch, rank), so a resumed run draws the same views.
        key = (training, self.state.global_step)
        self._view_calls = self._view_calls + 1 if key == self._view_key else 0
        self._view_key = key
        for index, augment in enumerate((self.student_augment, self.teacher_augment)):
            if hasattr(augment, "manual_seed"):
                token = f"{self.args.seed}/{training}/{key[1]}/{self._view_calls}/{self.args.process_index}/{index}"
                augment.manual_seed(int.from_bytes(hashlib.sha256(token.encode()).digest()[:7], "little"))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "labels" in inputs:
            raise ValueError(
                "SelfDistillationTrainer masks the student view itself: feed plain token ids (e.g. "
                "DataCollatorWithPadding), not batches with `labels` (DataCollatorForLanguageModeling)."
            )
        training = model.training
        self._reseed_views(training)
        student_view = self.student_augment(inputs)
        if "labels" not in student_view:
            raise ValueError(
                "student_augment must write MLM `labels` (end it with RandomMasking(..., labels_key='labels'))."
            )
        teacher_view = {k: v for k, v in self.teacher_augment(inputs).items() if k != "labels"}

        student_outputs = model(**student_view)
        teacher = self.teacher.module.to(student_outputs.projection.device)
        with torch.no_grad(), self.teacher_autocast():
            teacher_projection = teacher(**teacher_view).projection
        teacher_projection = teacher_projection.float()
        teacher_probs = teacher_probabilities(teacher_projection, self.center, self.teacher_temperature)
        distillation_loss = distillation_cross_entropy(
            teacher_probs, student_outputs.projection.float(), self.student_temperature
        )
        loss = student_outputs.loss.float() + self.distillation_weight * distillation_loss
        if training:
            self.update_center(teacher_projection)
            self._record(
                mlm_loss=student_outputs.loss.item(),
                distillation_loss=distillation_loss.item(),
                teacher_entropy=entropy(teacher_probs).mean().item(),
                teacher_batch_entropy=entropy(teacher_probs.mean(0)).item(),
            )
        return (loss, student_outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = send_to_device(inputs, self.args.device)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def _record(self, **values: float) -> None:
        for name, value in values.items():
            self._metric_sums[name] = self._metric_sums.get(name, 0.0) + value
        self._metric_count += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._metric_count:
            logs.update({name: total / self._metric_count for name, total in self._metric_sums.items()})
            logs["teacher_momentum"] = self.last_teacher_momentum
            self._metric_sums, self._metric_count = {}, 0
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False, teacher: bool = False) -> None:
        """Save the student (or with ``teacher=True`` the EMA teacher) as a Hub-ready masked-LM folder.

        Trainer writes each checkpoint's weights through ``save_model(folder, _internal_call=True)``: those hold
        the whole :class:`SelfDistillationModel`, projection head included, for an exact resume."""
        output_dir = output_dir or self.args.output_dir
        if _internal_call and (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            super().save_model(output_dir, _internal_call=True)  # the engine gathers the sharded weights
            return
        if not self.args.should_save:
            return
        if _internal_call:
            self._save_checkpoint_weights(output_dir)
        elif teacher:
            self.save_teacher(output_dir)
        else:
            self.student.save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

    def _save_checkpoint_weights(self, output_dir: str) -> None:
        """Write the student and its projection head as Trainer reloads them on resume (``model.safetensors``),
        with the processing class and ``training_args.bin``."""
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        # Clone: safetensors rejects the tied embedding/decoder weights, which share memory.
        save_file({k: v.detach().clone() for k, v in model.state_dict().items()},
                  os.path.join(output_dir, SAFE_WEIGHTS_NAME), metadata={"format": "pt"})
        tokenizer = self.processing_class
        if tokenizer is None:
            tokenizer = getattr(self.data_collator, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
