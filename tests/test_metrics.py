"""BEACON / GUE metrics against sklearn / scipy and written-out formulas; compute_metrics batched == whole set."""

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm
from transformers import EvalPrediction

from hf_genomics.metrics import (
    accuracy,
    balanced_accuracy,
    class_balanced_metrics,
    macro_f1,
    contact_top_l_precision,
    logit_pearson_r2,
    make_compute_metrics,
    matthews_correlation,
    mcrmse,
    mean_pearson_r2,
    mean_roc_auc,
    pearson_r2,
    secondary_structure_f1,
    spearman,
    splice_topk_accuracy,
)

rng = np.random.default_rng(0)


def _padded_pair_batch(lengths, width, positive_rate=0.1):
    """Pair maps laid out like DataCollatorForBeacon's: aligned with the tokens (<cls> first), -100 off the
    nucleotides; `width` tokens per row. Returns the maps and each row's nucleotide square."""
    probs = rng.random((len(lengths), width, width))  # the model's outputs off the nucleotides are not zero
    labels = np.full((len(lengths), width, width), -100.0)
    for b, n in enumerate(lengths):
        labels[b, 1 : n + 1, 1 : n + 1] = rng.random((n, n)) < positive_rate
    return probs, labels


def _square(matrix, n):
    return matrix[1 : n + 1, 1 : n + 1]


def test_ssp_f1_pools_all_cells_like_sklearn():
    lengths = [30, 45, 12]
    probs, labels = _padded_pair_batch(lengths, 47)
    truth = np.concatenate([_square(labels[b], n).ravel() for b, n in enumerate(lengths)])
    predicted = np.concatenate([_square(probs[b], n).ravel() > 0.5 for b, n in enumerate(lengths)])
    assert secondary_structure_f1(probs, labels) == pytest.approx(skm.f1_score(truth, predicted))
    as_list = [(_square(probs[b], n), _square(labels[b], n)) for b, n in enumerate(lengths)]
    assert secondary_structure_f1(*zip(*as_list)) == pytest.approx(skm.f1_score(truth, predicted))


def _reference_top_l_precision(matrices, min_separation, threshold=0.5):
    tp = fp = 0
    for prob, label in matrices:
        n = len(prob)
        candidates = sorted(
            ((prob[i, j], label[i, j]) for i in range(n) for j in range(n) if j - i >= min_separation),
            key=lambda item: -item[0],
        )[:n]
        for p, y in candidates:
            if p > threshold:
                tp += y == 1
                fp += y == 0
    return tp / (tp + fp)


@pytest.mark.parametrize("min_separation", [23, 24])
def test_cmp_top_l_precision_matches_written_out_definition(min_separation):
    lengths = [60, 40, 75]
    probs, labels = _padded_pair_batch(lengths, 77, positive_rate=0.3)
    matrices = [(_square(probs[b], n), _square(labels[b], n)) for b, n in enumerate(lengths)]
    expected = _reference_top_l_precision(matrices, min_separation)
    assert contact_top_l_precision(probs, labels, min_separation=min_separation) == pytest.approx(expected)


def test_regression_and_rank_metrics_match_scipy():
    x, y = rng.normal(size=200), rng.normal(size=200)
    y = y + x
    assert pearson_r2(x, y) == pytest.approx(stats.pearsonr(x, y)[0] ** 2)
    labels = np.where(rng.random(200) < 0.2, -1.0, y)
    keep = labels != -1
    assert pearson_r2(x, labels, ignore_index=-1) == pytest.approx(stats.pearsonr(x[keep], y[keep])[0] ** 2)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    p, q = rng.random(100), rng.random(100)
    logit = lambda v: np.log(v / (1 - v))  # noqa: E731
    assert logit_pearson_r2(p, q) == pytest.approx(stats.pearsonr(logit(p), logit(q))[0] ** 2)
    multi_x, multi_y = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    expected = np.mean([stats.pearsonr(multi_x[:, j], multi_y[:, j])[0] ** 2 for j in range(3)])
    assert mean_pearson_r2(multi_x, multi_y) == pytest.approx(expected)


def test_classification_metrics_match_sklearn():
    truth, predicted = rng.integers(0, 13, 300), rng.integers(0, 13, 300)
    assert accuracy(predicted, truth) == pytest.approx(skm.accuracy_score(truth, predicted))
    assert matthews_correlation(predicted, truth) == pytest.approx(skm.matthews_corrcoef(truth, predicted))
    probs, labels = rng.random((80, 12)), rng.integers(0, 2, (80, 12))
    labels[:, 3] = 1  # single-valued label column scores 0.5, as in BEACON
    expected = np.mean([skm.roc_auc_score(labels[:, j], probs[:, j]) if j != 3 else 0.5 for j in range(12)])
    assert mean_roc_auc(probs, labels) == pytest.approx(expected)


def test_class_balanced_metrics_match_written_out_formulas():
    truth = np.repeat(np.arange(4), [200, 50, 10, 2])  # long-tailed
    predicted = np.where(rng.random(len(truth)) < 0.7, truth, rng.integers(0, 4, len(truth)))
    recalls, f1s = [], []
    for c in range(4):
        tp = np.sum((predicted == c) & (truth == c))
        fp, fn = np.sum((predicted == c) & (truth != c)), np.sum((predicted != c) & (truth == c))
        recalls.append(tp / (tp + fn))
        f1s.append(2 * tp / (2 * tp + fp + fn))
    assert balanced_accuracy(predicted, truth) == pytest.approx(np.mean(recalls))
    assert macro_f1(predicted, truth) == pytest.approx(np.mean(f1s))
    logits = np.eye(4)[predicted] + 0.01 * rng.random((len(truth), 4))
    metrics = class_balanced_metrics(EvalPrediction(predictions=logits, label_ids=truth))
    assert metrics == pytest.approx({"balanced_accuracy": np.mean(recalls), "macro_f1": np.mean(f1s)})


def test_splice_topk_accuracy_and_mcrmse_formulas():
    labels = np.zeros((4, 50), dtype=np.int64)
    labels[:, 10], labels[:, 20], labels[0, 30] = 1, 2, 1
    labels[3, 40:] = -100
    probs = rng.random((4, 50, 3))
    valid = labels.reshape(-1) != -100
    flat_probs, flat_labels = probs.reshape(-1, 3)[valid], labels.reshape(-1)[valid]
    expected = []
    for cls in (1, 2):
        k = (flat_labels == cls).sum()
        top = np.argsort(-flat_probs[:, cls])[:k]
        expected.append((flat_labels[top] == cls).mean())
    assert splice_topk_accuracy(probs, labels) == pytest.approx(np.mean(expected))

    preds, targets = rng.normal(size=(5, 20, 3)), rng.normal(size=(5, 20, 3))
    targets[:, 15:] = -100
    rmse = [np.sqrt(skm.mean_squared_error(targets[:, :15, j].ravel(), preds[:, :15, j].ravel())) for j in range(3)]
    assert mcrmse(preds, targets) == pytest.approx(np.mean(rmse))


@pytest.mark.parametrize("task", ["SSP", "CMP", "DMP", "SPL", "VDP", "ncRNA", "Modif", "PRS", "CRI-On"])
def test_compute_metrics_batched_equals_whole_set(task):
    """Trainer's `batch_eval_metrics` path (torch tensors, one call per batch) gives the whole-set value."""
    n, width = 6, 40
    if task in ("SSP", "CMP", "DMP"):
        logits = rng.normal(size=(n, width, width)).astype(np.float32)
        logits = (logits + logits.transpose(0, 2, 1)) / 2
        labels = (rng.random((n, width, width)) < 0.2).astype(np.float32)
        if task == "DMP":
            labels = rng.random((n, width, width)).astype(np.float32)
        labels[1, 30:, :] = labels[1, :, 30:] = -1
    elif task in ("SPL", "VDP"):
        logits = rng.normal(size=(n, width, 3)).astype(np.float32)
        labels = rng.integers(0, 3, (n, width)) if task == "SPL" else rng.normal(size=(n, width, 3))
        labels[2, 25:] = -100
    elif task == "ncRNA":
        logits, labels = rng.normal(size=(n, 13)), rng.integers(0, 13, n)
    elif task == "Modif":
        logits, labels = rng.normal(size=(n, 12)), rng.integers(0, 2, (n, 12))
    else:
        outputs = 3 if task == "PRS" else 1
        logits, labels = rng.normal(size=(n, outputs)), rng.normal(size=(n, outputs)).squeeze()
    whole = make_compute_metrics(task)(EvalPrediction(predictions=logits, label_ids=labels))
    batched_fn = make_compute_metrics(task)
    for start in range(0, n, 2):
        batch = EvalPrediction(
            predictions=torch.as_tensor(logits[start : start + 2]), label_ids=torch.as_tensor(labels[start : start + 2])
        )
        batched = batched_fn(batch, compute_result=start + 2 >= n)
    assert batched.keys() == whole.keys()
    for key in whole:
        assert batched[key] == pytest.approx(whole[key], rel=1e-5)


def test_ssp_compute_metrics_equals_f1_on_sigmoid():
    logits = rng.normal(size=(3, 20, 20))
    labels = (rng.random((3, 20, 20)) < 0.1).astype(float)
    labels[:, 0, :] = labels[:, :, 0] = labels[:, -1, :] = labels[:, :, -1] = -100  # <cls>, <eos>
    labels[0, 15:, :] = labels[0, :, 15:] = -100
    value = make_compute_metrics("SSP")(EvalPrediction(predictions=logits, label_ids=labels))["f1"]
    keep = labels >= 0
    assert value == pytest.approx(skm.f1_score(labels[keep], logits[keep] > 0))


def test_metric_shape_errors_are_clear():
    with pytest.raises(ValueError, match="num_labels"):
        mean_roc_auc(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="entries"):
        pearson_r2(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match="Unknown task"):
        make_compute_metrics("SSX")
