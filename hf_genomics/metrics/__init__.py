"""BEACON / GUE metrics (`functional`) and `Trainer` `compute_metrics` factories (`compute_metrics`)."""

from .compute_metrics import BeaconMetrics, class_balanced_metrics, make_compute_metrics
from .functional import (
    accuracy,
    balanced_accuracy,
    contact_top_l_precision,
    logit_pearson_r2,
    macro_f1,
    matthews_correlation,
    mcrmse,
    mean_pearson_r2,
    mean_roc_auc,
    pearson_r2,
    secondary_structure_f1,
    spearman,
    splice_topk_accuracy,
)
from .mlm_floor import no_context_mlm_loss

__all__ = [
    "BeaconMetrics",
    "class_balanced_metrics",
    "make_compute_metrics",
    "accuracy",
    "balanced_accuracy",
    "contact_top_l_precision",
    "logit_pearson_r2",
    "macro_f1",
    "matthews_correlation",
    "mcrmse",
    "mean_pearson_r2",
    "mean_roc_auc",
    "pearson_r2",
    "secondary_structure_f1",
    "spearman",
    "splice_topk_accuracy",
    "no_context_mlm_loss",
]
