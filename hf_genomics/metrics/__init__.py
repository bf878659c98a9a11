"""BEACON / GUE metrics (`functional`) and `Trainer` `compute_metrics` factories (`compute_metrics`)."""

from .compute_metrics import BeaconMetrics, make_compute_metrics
from .functional import (
    accuracy,
    contact_top_l_precision,
    logit_pearson_r2,
    matthews_correlation,
    mcrmse,
    mean_pearson_r2,
    mean_roc_auc,
    pearson_r2,
    secondary_structure_f1,
    spearman,
    splice_topk_accuracy,
)

__all__ = [
    "BeaconMetrics",
    "make_compute_metrics",
    "accuracy",
    "contact_top_l_precision",
    "logit_pearson_r2",
    "matthews_correlation",
    "mcrmse",
    "mean_pearson_r2",
    "mean_roc_auc",
    "pearson_r2",
    "secondary_structure_f1",
    "spearman",
    "splice_topk_accuracy",
]
