"""BEACON and GUE metrics with the benchmarks' own definitions (numpy in, Python float out).

Every function returns a fraction (BEACON reports most of them x100). Inputs may be padded: entries whose label
equals `ignore_index` are left out. Pairwise inputs may also be given as lists of per-sequence L x L matrices.
"""

from collections.abc import Sequence

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def _as_flat_valid(predictions, labels, ignore_index):
    """Flatten (lists of) arrays and drop entries whose label is `ignore_index` (or NaN)."""
    if isinstance(predictions, (list, tuple)):
        predictions = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in predictions])
        labels = np.concatenate([np.asarray(y, dtype=np.float64).reshape(-1) for y in labels])
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions have {predictions.size} entries but labels have {labels.size}.")
    valid = ~np.isnan(labels)
    if ignore_index is not None:
        valid &= labels != ignore_index
    return predictions[valid], labels[valid]


def secondary_structure_f1(probabilities, labels, threshold: float = 0.5, ignore_index: int | None = -100) -> float:
    """SSP F1: binary F1 over all L x L cells of all sequences pooled (BEACON `calculate_metric_with_sklearn`)."""
    probabilities, labels = _as_flat_valid(probabilities, labels, ignore_index)
    predicted = probabilities > threshold
    truth = labels > 0.5
    true_positives = np.count_nonzero(predicted & truth)
    denominator = np.count_nonzero(predicted) + np.count_nonzero(truth)
    return 0.0 if denominator == 0 else float(2 * true_positives / denominator)


def split_padded_matrices(probabilities, labels, ignore_index) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split padded (N, L, L) arrays, or lists of matrices, into per-sequence (probs, labels) pairs over the positions
    whose label row is not all `ignore_index` (padding and special tokens)."""
    pairs = []
    for prob, label in zip(probabilities, labels):
        prob, label = np.asarray(prob, dtype=np.float64), np.asarray(label, dtype=np.float64)
        if prob.shape != label.shape or prob.ndim != 2:
            raise ValueError(f"expected matching L x L matrices, got {prob.shape} and {label.shape}.")
        kept = np.arange(len(label)) if ignore_index is None else np.flatnonzero((label != ignore_index).any(axis=1))
        pairs.append((prob[np.ix_(kept, kept)], label[np.ix_(kept, kept)]))
    return pairs


def select_top_l_contacts(
    probabilities: np.ndarray, labels: np.ndarray, min_separation: int = 24, fraction: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """For one sequence, the (probability, label) of its top L // fraction pairs with j - i >= min_separation."""
    length = len(probabilities)
    rows, cols = np.triu_indices(length, k=min_separation)
    scores = probabilities[rows, cols]
    top = np.argsort(-scores, kind="stable")[: length // fraction]
    return scores[top], labels[rows[top], cols[top]]


def contact_top_l_precision(
    probabilities,
    labels,
    min_separation: int = 24,
    fraction: int = 1,
    threshold: float = 0.5,
    ignore_index: int | None = -100,
) -> float:
    """CMP "P@L": precision over each sequence's top-L long-range pairs, pooled over sequences.

    Only the selected pairs with probability > `threshold` count as predictions (BEACON `train_contact_map.py`).
    The usual long-range definition is j - i >= 24; BEACON's code uses `np.triu(k=23)`, i.e. `min_separation=23`.
    """
    selected = [
        select_top_l_contacts(prob, label, min_separation, fraction)
        for prob, label in split_padded_matrices(probabilities, labels, ignore_index)
    ]
    if not selected:
        return 0.0
    scores, truth = (np.concatenate(parts) for parts in zip(*selected))
    return precision_above_threshold(scores, truth, threshold)


def precision_above_threshold(scores: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> float:
    """Precision of the entries with score > threshold (0 when there are none)."""
    predicted = np.asarray(scores) > threshold
    total = np.count_nonzero(predicted)
    return 0.0 if total == 0 else float(np.count_nonzero(predicted & (np.asarray(truth) > 0.5)) / total)


def pearson_r2(predictions, labels, ignore_index: float | None = None) -> float:
    """Squared Pearson correlation of pooled valid entries (BEACON's "R^2" for DMP, SSI, MRL)."""
    predictions, labels = _as_flat_valid(predictions, labels, ignore_index)
    if predictions.size < 2 or np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(stats.pearsonr(predictions, labels)[0] ** 2)


def logit_pearson_r2(predictions, labels, eps: float = 1e-7) -> float:
    """APA R^2: Pearson^2 after clipping to [eps, 1 - eps] and logit-transforming predictions and targets."""
    predictions, labels = _as_flat_valid(predictions, labels, None)
    predictions, labels = np.clip(predictions, eps, 1 - eps), np.clip(labels, eps, 1 - eps)
    return pearson_r2(np.log(predictions / (1 - predictions)), np.log(labels / (1 - labels)))


def splice_topk_accuracy(probabilities, labels, ignore_index: int = -100, classes: Sequence[int] = (1, 2)) -> float:
    """SPL "ACC@K": for each splice class c (1 acceptor, 2 donor), with k = number of true c positions, the
    fraction of the k highest-scoring positions for c that are truly c; averaged over the classes."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    probabilities = probabilities.reshape(-1, probabilities.shape[-1])
    if len(probabilities) != len(labels):
        raise ValueError(f"{len(probabilities)} positions of scores but {len(labels)} labels.")
    valid = labels != ignore_index
    probabilities, labels = probabilities[valid], labels[valid]
    accuracies = []
    for cls in classes:
        k = int(np.count_nonzero(labels == cls))
        if k == 0:
            continue
        top = np.argpartition(-probabilities[:, cls], k - 1)[:k]
        accuracies.append(np.count_nonzero(labels[top] == cls) / k)
    return float(np.mean(accuracies)) if accuracies else 0.0


def accuracy(predicted_labels, labels, ignore_index: int | None = -100) -> float:
    """Fraction of correct class predictions (ncRNA)."""
    predicted_labels, labels = _as_flat_valid(predicted_labels, labels, ignore_index)
    return float(np.mean(predicted_labels == labels)) if labels.size else 0.0


def matthews_correlation(predicted_labels, labels, ignore_index: int | None = -100) -> float:
    """Matthews correlation coefficient (the GUE benchmark's metric)."""
    predicted_labels, labels = _as_flat_valid(predicted_labels, labels, ignore_index)
    return float(skm.matthews_corrcoef(labels.astype(np.int64), predicted_labels.astype(np.int64)))


def balanced_accuracy(predicted_labels, labels, ignore_index: int | None = -100) -> float:
    """Mean per-class recall (class-imbalanced tasks, IMWA)."""
    predicted_labels, labels = _as_flat_valid(predicted_labels, labels, ignore_index)
    return float(skm.balanced_accuracy_score(labels.astype(np.int64), predicted_labels.astype(np.int64)))


def macro_f1(predicted_labels, labels, ignore_index: int | None = -100) -> float:
    """Unweighted mean of per-class F1 (class-imbalanced tasks, IMWA)."""
    predicted_labels, labels = _as_flat_valid(predicted_labels, labels, ignore_index)
    return float(skm.f1_score(labels.astype(np.int64), predicted_labels.astype(np.int64), average="macro"))


def mean_roc_auc(probabilities, labels) -> float:
    """Modif: mean over labels of ROC-AUC, scoring 0.5 for a label with only one class present (BEACON)."""
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if probabilities.shape != labels.shape or probabilities.ndim != 2:
        raise ValueError(f"expected (N, num_labels) arrays, got {probabilities.shape} and {labels.shape}.")
    aucs = [
        skm.roc_auc_score(labels[:, j], probabilities[:, j]) if len(np.unique(labels[:, j])) == 2 else 0.5
        for j in range(labels.shape[1])
    ]
    return float(np.mean(aucs))


def mcrmse(predictions, labels, ignore_index: float | None = -100) -> float:
    """VDP: mean over target columns (last axis) of the RMSE over scored positions (label != ignore_index)."""
    predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} differ in shape.")
    predictions = predictions.reshape(-1, predictions.shape[-1])
    labels = labels.reshape(-1, labels.shape[-1])
    valid = ~np.isnan(labels) if ignore_index is None else (labels != ignore_index) & ~np.isnan(labels)
    squared = np.where(valid, (predictions - np.where(valid, labels, 0.0)) ** 2, 0.0)
    if not valid.any():
        return float("nan")  # e.g. BEACON's VDP test split, whose labels are only on Kaggle
    per_column = np.sqrt(squared.sum(axis=0) / np.maximum(valid.sum(axis=0), 1))
    return float(per_column.mean())


def mean_pearson_r2(predictions, labels) -> float:
    """PRS: mean over output columns of the squared Pearson correlation."""
    predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if predictions.shape != labels.shape or predictions.ndim != 2:
        raise ValueError(f"expected (N, num_outputs) arrays, got {predictions.shape} and {labels.shape}.")
    return float(np.mean([pearson_r2(predictions[:, j], labels[:, j]) for j in range(labels.shape[1])]))


def spearman(predictions, labels) -> float:
    """Spearman rank correlation (CRISPR on/off-target)."""
    predictions, labels = _as_flat_valid(predictions, labels, None)
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(stats.spearmanr(predictions, labels)[0])
