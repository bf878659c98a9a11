"""Semi-supervised fine-tuning of sequence classifiers: supervised-only, FixMatch and LayerMatch."""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers.trainer_utils import unwrap_peft_model

from ..data.augment import Compose, PointMutation, RandomMasking, RandomShift, ReverseComplement
from .trainer_teacher import EMATeacherTrainer

MODES = ("supervised", "fixmatch", "layermatch")
AVG_CLUSTERING_SOURCES = ("ema_teacher", "prediction_ema")
# Padding value of each batch key when labeled and unlabeled batches of different lengths are joined.
_PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0}


def select_pseudo_labels(probs: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch hard pseudo-labels: ``argmax`` of ``probs`` (N, C), kept where ``max >= threshold``."""
    confidence, pseudo_labels = probs.max(dim=-1)
    return pseudo_labels, confidence >= threshold


def linear_classifier(model: nn.Module) -> nn.Linear:
    """The linear classifier of a ``...ForSequenceClassification`` model: its ``classifier`` if that
    is an ``nn.Linear``, otherwise the last ``nn.Linear`` inside ``classifier`` (earlier layers of a
    multi-layer head count as feature extractor)."""
    head = getattr(model, "classifier", None)
    if head is None:
        raise ValueError(
            f"{type(model).__name__} has no `classifier` module; LayerMatch needs a sequence-classification "
            "model whose head is named `classifier` (e.g. BeaconForSequenceClassification)."
        )
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"`{type(model).__name__}.classifier` contains no nn.Linear layer.")
    return linears[-1]


def default_views(tokenizer, reverse_complement_prob: float = 0.0) -> tuple[Compose, Compose]:
    """Weak view (shift by up to 3 tokens + 2% point mutations) and strong view (10% point mutations,
    15% masking, reverse complement with probability ``reverse_complement_prob``) of a tokenized batch.

    Reverse complement is off by default: it keeps the label only of tasks that hold on both DNA strands (see
    :func:`~hf_genomics.data.augment.reverse_complement_probability`, and the tasks' ``strand_specific``)."""
    weak = Compose([RandomShift(tokenizer, max_shift=3, seed=0), PointMutation(tokenizer, rate=0.02, seed=0)])
    strong = Compose(
        [
            PointMutation(tokenizer, rate=0.1, seed=0),
            RandomMasking(tokenizer, rate=0.15, seed=0),
            ReverseComplement(tokenizer, p=reverse_complement_prob, seed=0),
        ]
    )
    return weak, strong


@dataclass
class SemiSupervisedLosses:
    """The two loss terms of one step and the pseudo-labels behind the unlabeled one."""

    loss_supervised: torch.Tensor
    loss_unsupervised: torch.Tensor | None = None
    pseudo_labels: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    pseudo_label_probs: torch.Tensor | None = None


class _EpochPermutationSampler(Sampler[int]):
    """A seeded permutation per epoch, trimmed to whole global batches so every rank gets full,
    disjoint batches; ``start(epoch, skip_batches)`` can begin mid-epoch (resume)."""

    def __init__(self, num_samples: int, global_batch_size: int, seed: int):
        self.num_samples = num_samples
        self.global_batch_size = global_batch_size
        self.batches_per_epoch = num_samples // global_batch_size
        self.num_used = self.batches_per_epoch * global_batch_size
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def start(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch = epoch
        self.skip = skip_batches * self.global_batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator)[self.skip : self.num_used].tolist())

    def __len__(self) -> int:
        return self.num_used - self.skip


class _IndexedDataset(Dataset):
    """Yields ``(index, item)`` so a per-sample state (prediction EMA) can follow each sequence."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset[index]


class LayerMatchTrainer(EMATeacherTrainer):
    """Semi-supervised ``Trainer`` for sequence classification: LayerMatch (Liang et al., 2024,
    "LayerMatch: Do Pseudo-labels Benefit All Layers?", arXiv:2406.14207) and its FixMatch baseline.

    Each step takes a labeled batch of ``B`` sequences from ``train_dataset`` and ``mu * B`` sequences
    from ``unlabeled_dataset`` (a second, cycled dataloader, sharded across processes by
    ``accelerator.prepare``). Each unlabeled sequence gets a weak and a strong augmented view; the
    labeled batch and both views go through the model in one forward pass (as in USB's FixMatch).

    - ``mode="supervised"``: cross-entropy on the labeled batch only.
    - ``mode="fixmatch"``: pseudo-label = argmax of the weak-view prediction, kept if its confidence is
      ``>= threshold``; ``loss = L_s + lambda_u * L_u`` with ``L_u`` the masked cross-entropy of the
      strong view averaged over all ``mu * B`` sequences.
    - ``mode="layermatch"``: FixMatch plus two switches (each can be turned off alone for ablations):

      * ``grad_relu``: the unlabeled loss trains the feature extractor but not the linear classifier.
        The strong-view logits are recomputed from the classifier's input features with the
        classifier's weight and bias detached (by a forward hook, inside the model's forward and so
        inside its mixed-precision autocast), so ``classifier`` gets gradient from ``L_s`` only, in
        the same single backward pass. For a multi-layer head the last ``nn.Linear`` of
        ``classifier`` is "the linear classifier" (:func:`linear_classifier`).
      * ``avg_clustering``: pseudo-labels come from an average of consistent outputs. The paper's
        exact formula was not available to us; this is our reconstruction. With
        ``avg_clustering_source="ema_teacher"`` (default) the pseudo-label distribution is the mean of
        the EMA teacher's and the current model's weak-view softmax. With ``"prediction_ema"`` it is
        the mean of the current weak-view softmax and a per-sequence EMA (momentum
        ``prediction_ema_momentum``) of its past weak-view softmax outputs.

    The EMA teacher (``teacher_momentum_base``, default 0.99 because our runs are short) starts with
    :class:`ModelEMA`'s warm-up (``ema_warmup=True``: momentum ``min(m, (1 + t) / (10 + t))`` at update ``t``), so it
    leaves its initial weights (a fresh classifier head is random) within the first steps. Without it the teacher
    keeps ``0.99^t`` of them, and the average passes ``threshold=0.95`` only where the teacher alone is 0.9
    confident: no pseudo-label is kept, however confident the model. The teacher and the prediction EMA are
    saved in every checkpoint and restored on resume.

    ``evaluate`` and ``predict`` report the EMA teacher's metrics next to the model's: the same data and
    ``compute_metrics`` with the teacher's weights, under ``<prefix>_ema_*`` (``eval_accuracy`` and
    ``eval_ema_accuracy``); the predictions are the model's, and ``<prefix>_runtime`` covers both passes.

    The unlabeled dataset may keep a ``labels`` column: it is removed before anything is computed from the
    batch and used only to log ``pseudo_label_accuracy``. Logged with each training loss: ``loss_supervised``,
    ``loss_unsupervised``, ``mask_rate`` (fraction of pseudo-labels kept) and, when labels are there,
    ``pseudo_label_accuracy`` (of the kept pseudo-labels).

    ``weak_augment`` / ``strong_augment`` are callables ``batch -> batch`` on token-id batches; by
    default they are :func:`default_views` of ``processing_class``. Views with a ``manual_seed`` method
    (the ``hf_genomics.data.augment`` classes) are reseeded from ``(args.seed, step, process)`` before
    every unlabeled batch, so processes draw different views and a resumed run draws the same ones.
    """

    # compute_loss returns a per-micro-batch mean: Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args,
        unlabeled_dataset=None,
        mode: str = "layermatch",
        mu: int = 7,
        threshold: float = 0.95,
        lambda_u: float = 1.0,
        grad_relu: bool | None = None,
        avg_clustering: bool | None = None,
        avg_clustering_source: str = "ema_teacher",
        prediction_ema_momentum: float = 0.7,
        weak_augment=None,
        strong_augment=None,
        teacher_momentum_base: float = 0.99,
        ema_warmup: bool = True,
        **kwargs,
    ):
        super().__init__(*args, teacher_momentum_base=teacher_momentum_base, ema_warmup=ema_warmup, **kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        for name, value in (("grad_relu", grad_relu), ("avg_clustering", avg_clustering)):
            if value and mode != "layermatch":
                raise ValueError(
                    f"{name}=True needs mode='layermatch' (turn the other LayerMatch switch off for an "
                    f"ablation); got mode={mode!r}."
                )
        if avg_clustering_source not in AVG_CLUSTERING_SOURCES:
            raise ValueError(
                f"avg_clustering_source must be one of {AVG_CLUSTERING_SOURCES}, got {avg_clustering_source!r}."
            )
        if not isinstance(mu, int) or mu < 1:
            raise ValueError(f"mu (unlabeled-to-labeled batch ratio) must be an integer >= 1, got {mu!r}.")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}.")
        if lambda_u < 0:
            raise ValueError(f"lambda_u must be >= 0, got {lambda_u}.")
        if not 0.0 <= prediction_ema_momentum <= 1.0:
            raise ValueError(f"prediction_ema_momentum must be in [0, 1], got {prediction_ema_momentum}.")
        config = self.model.config
        if config.problem_type not in (None, "single_label_classification") or config.num_labels < 2:
            raise ValueError(
                "LayerMatchTrainer trains single-label classifiers (num_labels >= 2, problem_type None or "
                f"'single_label_classification'); got num_labels={config.num_labels}, "
                f"problem_type={config.problem_type!r}."
            )
        self.mode = mode
        self.mu = mu
        self.threshold = threshold
        self.lambda_u = lambda_u
        self.grad_relu = mode == "layermatch" and grad_relu is not False
        self.avg_clustering = mode == "layermatch" and avg_clustering is not False
        self.avg_clustering_source = avg_clustering_source
        self.prediction_ema_momentum = prediction_ema_momentum
        self.unlabeled_dataset = unlabeled_dataset
        if self.grad_relu:
            linear_classifier(self.model)  # fail now, not at the first step, if the head is unusable

        if mode != "supervised":
            if unlabeled_dataset is None:
                raise ValueError(f"mode={mode!r} needs an `unlabeled_dataset`.")
            global_batch = mu * self.args.per_device_train_batch_size * self.args.world_size
            if len(unlabeled_dataset) < global_batch:
                raise ValueError(
                    f"unlabeled_dataset has {len(unlabeled_dataset)} sequences, fewer than one unlabeled step "
                    f"(mu * per_device_train_batch_size * world_size = {global_batch})."
                )
            if weak_augment is None or strong_augment is None:
                if self.processing_class is None:
                    raise ValueError(
                        "Pass `processing_class` (the tokenizer) for the default weak/strong views, or pass "
                        "both `weak_augment` and `strong_augment`."
                    )
                default_weak, default_strong = default_views(self.processing_class)
                weak_augment = weak_augment or default_weak
                strong_augment = strong_augment or default_strong
        self.weak_augment = weak_augment
        self.strong_augment = strong_augment

        num_unlabeled = len(unlabeled_dataset) if unlabeled_dataset is not None else 0
        uses_prediction_ema = self.avg_clustering and avg_clustering_source == "prediction_ema"
        self.prediction_ema = torch.zeros(num_unlabeled if uses_prediction_ema else 0, config.num_labels)
        self.prediction_ema_seen = torch.zeros(self.prediction_ema.shape[0], dtype=torch.bool)

        self._unlabeled_dataloader = None
        self._unlabeled_sampler = None
        self._unlabeled_iterator = None
        self._unlabeled_epoch = 0
        self._unlabeled_batches_drawn = 0
        # Sums since the last log: L_s, L_u, kept, unlabeled, kept with a true label, correct kept, steps.
        self._ssl_stats = torch.zeros(7, dtype=torch.float64)

    # ---- State saved with the teacher ----

    def extra_teacher_state(self) -> dict[str, torch.Tensor]:
        if self.prediction_ema.numel() == 0:
            return {}
        return {"prediction_ema": self.prediction_ema, "prediction_ema_seen": self.prediction_ema_seen}

    # ---- Unlabeled data stream ----

    def get_unlabeled_dataloader(self) -> DataLoader:
        """A dataloader of ``mu * per_device_train_batch_size`` unlabeled sequences per process, each
        batch with an ``unlabeled_index`` column, prepared (sharded) by the accelerator."""
        dataset = self.unlabeled_dataset
        if isinstance(dataset, datasets.Dataset) and self.args.remove_unused_columns:
            # The columns Trainer keeps: the model's forward arguments and the label columns.
            kept = {*inspect.signature(unwrap_peft_model(self.model).forward).parameters, "label", "label_ids",
                    *self.label_names}
            dataset = dataset.remove_columns([name for name in dataset.column_names if name not in kept])
        batch_size = self.mu * self.args.per_device_train_batch_size
        seed = (self.args.data_seed if self.args.data_seed is not None else self.args.seed) + 1
        self._unlabeled_sampler = _EpochPermutationSampler(len(dataset), batch_size * self.args.world_size, seed)
        collator = self.data_collator

        def collate(features):
            batch = collator([item for _, item in features])
            batch["unlabeled_index"] = torch.tensor([index for index, _ in features])
            return batch

        dataloader = DataLoader(
            _IndexedDataset(dataset),
            batch_size=batch_size,
            sampler=self._unlabeled_sampler,
            collate_fn=collate,
            drop_last=True,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            # Each new iterator draws a worker seed; from torch's global generator that draw would shift the
            # model's dropout masks, and a resumed run (which starts its iterator later) would drift from the
            # uninterrupted one.
            generator=torch.Generator().manual_seed(seed),
        )
        return self.accelerator.prepare(dataloader)

    def _start_unlabeled_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self._unlabeled_epoch = epoch
        self._unlabeled_sampler.start(epoch, skip_batches)
        self._unlabeled_iterator = iter(self._unlabeled_dataloader)

    def next_unlabeled_batch(self) -> dict[str, torch.Tensor]:
        if self._unlabeled_dataloader is None:
            self._unlabeled_dataloader = self.get_unlabeled_dataloader()
            # On resume, continue the unlabeled stream where the checkpointed run left it.
            drawn = self.state.global_step * self.args.gradient_accumulation_steps
            self._unlabeled_batches_drawn = drawn
            self._start_unlabeled_epoch(*divmod(drawn, self._unlabeled_sampler.batches_per_epoch))
        self._reseed_views(self._unlabeled_batches_drawn)
        self._unlabeled_batches_drawn += 1
        try:
            return next(self._unlabeled_iterator)
        except StopIteration:
            self._start_unlabeled_epoch(self._unlabeled_epoch + 1)
            return next(self._unlabeled_iterator)

    def _reseed_views(self, draw: int) -> None:
        base = ((self.args.seed * 1_000_003 + draw) * 1024 + self.args.process_index) * 2
        for offset, view in enumerate((self.weak_augment, self.strong_augment)):
            if hasattr(view, "manual_seed"):
                view.manual_seed(base + offset)

    # ---- Losses ----

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not model.training:
            # Evaluation / prediction: the model's own supervised loss.
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        unlabeled = None if self.mode == "supervised" else self.next_unlabeled_batch()
        losses = self.compute_semi_supervised_losses(model, inputs, unlabeled)
        loss = losses.loss_supervised
        if losses.loss_unsupervised is not None:
            loss = loss + self.lambda_u * losses.loss_unsupervised
        return loss

    def compute_semi_supervised_losses(
        self, model: nn.Module, labeled: dict[str, torch.Tensor], unlabeled: dict[str, torch.Tensor] | None
    ) -> SemiSupervisedLosses:
        """``L_s`` on ``labeled`` and, if ``unlabeled`` is given, ``L_u`` with its pseudo-labels.

        The ``labels`` of ``unlabeled``, if any, only feed the logged pseudo-label accuracy.
        """
        labeled = dict(labeled)
        labels = labeled.pop("labels", None)
        if labels is None:
            raise ValueError("The labeled batch has no `labels`.")
        if unlabeled is None:
            loss_supervised = F.cross_entropy(model(**labeled).logits.float(), labels)
            self._record(loss_supervised)
            return SemiSupervisedLosses(loss_supervised)

        unlabeled = dict(unlabeled)
        monitor_labels = unlabeled.pop("labels", None)
        index = unlabeled.pop("unlabeled_index", None)
        weak = self.weak_augment(unlabeled)
        strong = self.strong_augment(unlabeled)
        num_labeled, num_unlabeled = labels.shape[0], unlabeled["input_ids"].shape[0]
        joined = self._join_batches(model, [labeled, weak, strong], keys=list(labeled))

        with self._grad_relu_logits(model, start=num_labeled + num_unlabeled) as detached_logits:
            logits = model(**joined).logits
        logits_labeled, logits_weak, logits_strong = logits.split([num_labeled, num_unlabeled, num_unlabeled])
        if self.grad_relu:
            logits_strong = detached_logits[0]
        # Under mixed precision the logits may be bfloat16/float16: take the losses in float32.
        logits_labeled, logits_strong = logits_labeled.float(), logits_strong.float()

        with torch.no_grad():
            probs = self.pseudo_label_distribution(logits_weak.detach(), weak, index)
            pseudo_labels, mask = select_pseudo_labels(probs, self.threshold)
        # Mean over all mu*B sequences: rejected pseudo-labels count as zero loss (FixMatch).
        loss_unsupervised = (F.cross_entropy(logits_strong, pseudo_labels, reduction="none") * mask).mean()
        loss_supervised = F.cross_entropy(logits_labeled, labels)
        self._record(loss_supervised, loss_unsupervised, pseudo_labels, mask, monitor_labels)
        return SemiSupervisedLosses(loss_supervised, loss_unsupervised, pseudo_labels, mask, probs)

    @torch.no_grad()
    def pseudo_label_distribution(
        self, logits_weak: torch.Tensor, weak: dict[str, torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        """Class distribution the pseudo-labels are taken from (FixMatch, or Avg-Clustering's average)."""
        probs = logits_weak.float().softmax(dim=-1)
        if not self.avg_clustering:
            return probs
        if self.avg_clustering_source == "ema_teacher":
            teacher = self.teacher.module.to(probs.device)
            teacher_inputs = {k: v for k, v in weak.items() if k != "labels"}
            with self.teacher_autocast():
                teacher_logits = teacher(**teacher_inputs).logits
            return (probs + teacher_logits.float().softmax(dim=-1)) / 2
        if index is None:
            raise ValueError("avg_clustering_source='prediction_ema' needs an `unlabeled_index` in the batch.")
        return self._average_with_prediction_ema(probs, index)

    def _average_with_prediction_ema(self, probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ema, seen = self.prediction_ema, self.prediction_ema_seen
        index_cpu = index.cpu()
        past = ema[index_cpu].to(probs.device)
        averaged = torch.where(seen[index_cpu, None].to(probs.device), (past + probs) / 2, probs)
        # Every process folds in every process's predictions so the state stays identical across ranks.
        all_index = self.accelerator.gather(index).cpu()
        all_probs = self.accelerator.gather(probs).cpu()
        m = self.prediction_ema_momentum
        ema[all_index] = torch.where(seen[all_index, None], m * ema[all_index] + (1 - m) * all_probs, all_probs)
        seen[all_index] = True
        return averaged

    @contextlib.contextmanager
    def _grad_relu_logits(self, model: nn.Module, start: int):
        """Grad-ReLU's logits of rows ``start:``: the linear classifier applied to its input with its weight and
        bias detached. A forward hook computes them inside the model's forward, so they get the same dtype and
        autocast region as the classifier's own output (accelerate autocasts only ``model.forward``)."""
        computed: list[torch.Tensor] = []
        if not self.grad_relu:
            yield computed
            return
        linear = linear_classifier(self.accelerator.unwrap_model(model))

        def hook(module, inputs, output):
            bias = module.bias.detach() if module.bias is not None else None
            computed.append(F.linear(inputs[0][start:], module.weight.detach(), bias))

        handle = linear.register_forward_hook(hook)
        try:
            yield computed
        finally:
            handle.remove()
        if len(computed) != 1:
            raise ValueError(f"Expected one call of the linear classifier per forward pass, saw {len(computed)}.")

    def _join_batches(self, model: nn.Module, batches: list[dict], keys: list[str]) -> dict[str, torch.Tensor]:
        """Concatenates batches along the batch axis, right-padding to the longest sequence."""
        for batch in batches[1:]:
            missing = set(keys) - set(batch)
            if missing:
                raise ValueError(
                    f"The unlabeled views lack {sorted(missing)}, present in the labeled batch; give both "
                    "datasets the same model-input columns."
                )
        length = max(batch["input_ids"].shape[1] for batch in batches)
        pad_token_id = self.accelerator.unwrap_model(model).config.pad_token_id
        joined = {}
        for key in keys:
            tensors = [batch[key] for batch in batches]
            if any(t.shape[1] != length for t in tensors):
                value = _PAD_VALUES.get(key, pad_token_id)
                if value is None:
                    raise ValueError(
                        "Labeled and unlabeled batches have different lengths and config.pad_token_id is None; "
                        "set pad_token_id or pad both to the same length."
                    )
                tensors = [F.pad(t, (0, length - t.shape[1]), value=value) for t in tensors]
            joined[key] = torch.cat(tensors)
        return joined

    # ---- Evaluation ----

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        with self.teacher.swapped_into(self.accelerator.unwrap_model(self.model)):
            teacher = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                              f"{metric_key_prefix}_ema")
        output.metrics.update(teacher.metrics)
        return output

    # ---- Logging ----

    @torch.no_grad()
    def _record(self, loss_supervised, loss_unsupervised=None, pseudo_labels=None, mask=None, monitor_labels=None):
        stats = torch.zeros(7, dtype=torch.float64)
        stats[0] = loss_supervised.detach().double().cpu()
        stats[6] = 1
        if loss_unsupervised is not None:
            stats[1] = loss_unsupervised.detach().double().cpu()
            stats[2] = mask.sum().cpu()
            stats[3] = mask.numel()
            if monitor_labels is not None:
                stats[4] = mask.sum().cpu()
                stats[5] = ((pseudo_labels == monitor_labels) & mask).sum().cpu()
        self._ssl_stats += stats

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Training logs (the only ones with "loss") are emitted on every process: safe to reduce here.
        if "loss" in logs and self._ssl_stats[6] > 0:
            stats = self.accelerator.reduce(self._ssl_stats.to(self.args.device), reduction="sum").cpu()
            self._ssl_stats.zero_()
            logs["loss_supervised"] = (stats[0] / stats[6]).item()
            if stats[3] > 0:
                logs["loss_unsupervised"] = (stats[1] / stats[6]).item()
                logs["mask_rate"] = (stats[2] / stats[3]).item()
            if stats[4] > 0:
                logs["pseudo_label_accuracy"] = (stats[5] / stats[4]).item()
        super().log(logs, start_time)
