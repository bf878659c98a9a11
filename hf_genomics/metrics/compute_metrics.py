"""`compute_metrics` for `Trainer`, one per BEACON task, built from the task registry."""

import numpy as np

from ..data.beacon import IGNORE_INDEX, BeaconTask, get_task
from . import functional as F


def _to_numpy(array) -> np.ndarray:
    if isinstance(array, (tuple, list)):
        array = array[0]
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


class BeaconMetrics:
    """Callable `compute_metrics(eval_pred, compute_result=True)` for one BEACON task.

    Works both on whole-set predictions and with `TrainingArguments(batch_eval_metrics=True)`, where each batch is
    reduced to what the metric needs (for SSP only the cells predicted or labelled as paired; for CMP each
    sequence's top-L pairs), so L x L predictions of a whole eval set never sit in memory. Labels equal to -100
    (padding, special tokens, unlabelled positions) are ignored; per-nucleotide and pairwise outputs span the whole
    tokenized sequence, as `DataCollatorForBeacon` lays out their labels.
    """

    def __init__(self, task: BeaconTask | str, min_separation: int = 24):
        self.task = get_task(task) if isinstance(task, str) else task
        self.min_separation = min_separation
        self._parts: list[tuple[np.ndarray, ...]] = []

    def __call__(self, eval_pred, compute_result: bool = True) -> dict[str, float]:
        self._parts.append(self._reduce(_to_numpy(eval_pred.predictions), _to_numpy(eval_pred.label_ids)))
        if not compute_result:
            return {}
        parts = [np.concatenate(column) for column in zip(*self._parts)]
        self._parts = []
        return self._finalize(*parts)

    def _reduce(self, logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
        task = self.task
        if logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1:
            logits = logits[..., 0]
        if task.level != "sequence" and task.problem_type != "single_label_classification":
            if logits.shape != labels.shape:
                raise ValueError(
                    f"{task.name}: {task.level} outputs {logits.shape} do not match labels {labels.shape}."
                )
        if task.metric == "contact_top_l_precision":
            logits = (logits + np.swapaxes(logits, 1, 2)) / 2
            selected = [
                F.select_top_l_contacts(prob, label, self.min_separation)
                for prob, label in F.split_padded_matrices(_sigmoid(logits), labels, IGNORE_INDEX)
            ]
            return tuple(np.concatenate(parts) for parts in zip(*selected)) if selected else (np.zeros(0),) * 2
        if task.metric == "secondary_structure_f1":
            probabilities = _sigmoid(logits)
            # Cells neither predicted nor labelled paired add nothing to the pooled F1.
            keep = (labels != IGNORE_INDEX) & ((probabilities > 0.5) | (labels > 0.5))
            return probabilities[keep].astype(np.float32), labels[keep].astype(np.float32)
        if task.level == "sequence":
            if task.problem_type == "single_label_classification":
                return logits.argmax(-1), labels.reshape(-1)
            if task.problem_type == "multi_label_classification":
                return _sigmoid(logits), labels
            return logits.reshape(len(logits), -1), labels.reshape(len(labels), -1)
        if task.problem_type == "single_label_classification":
            valid = labels != IGNORE_INDEX
            return _softmax(logits[valid]).astype(np.float32), labels[valid]
        if task.label_shape[-1] == "targets":  # rows of targets per nucleotide: MCRMSE skips ignored values itself
            valid = (labels != IGNORE_INDEX).any(axis=-1)
            return logits[valid], labels[valid]
        valid = labels != IGNORE_INDEX
        return logits[valid].astype(np.float32), labels[valid].astype(np.float32)

    def _finalize(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        task = self.task
        if task.metric == "contact_top_l_precision":
            return {task.metric_key: F.precision_above_threshold(predictions, labels)}
        if task.metric == "secondary_structure_f1":
            return {task.metric_key: F.secondary_structure_f1(predictions, labels, ignore_index=None)}
        if task.metric == "accuracy":
            return {"accuracy": F.accuracy(predictions, labels), "mcc": F.matthews_correlation(predictions, labels)}
        return {task.metric_key: getattr(F, task.metric)(predictions, labels)}


def make_compute_metrics(task: BeaconTask | str, min_separation: int = 24) -> BeaconMetrics:
    """`compute_metrics` for `Trainer` on a BEACON task; pass `batch_eval_metrics=True` for pairwise tasks."""
    return BeaconMetrics(task, min_separation=min_separation)


def class_balanced_metrics(prediction) -> dict[str, float]:
    """`compute_metrics` for class-imbalanced classification (as reported by IMWA): balanced accuracy (mean
    per-class recall) and macro-F1 of the argmax over the logits."""
    predicted = _to_numpy(prediction.predictions).argmax(axis=-1)
    labels = _to_numpy(prediction.label_ids)
    return {"balanced_accuracy": F.balanced_accuracy(predicted, labels), "macro_f1": F.macro_f1(predicted, labels)}
