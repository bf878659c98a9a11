"""BEACON-B: BERT-style encoder with ALiBi (Ren et al., 2024, BEACON benchmark).

Importing this package registers the config and every model class with the transformers `Auto*` classes, and
marks them for `auto_map` so saved folders also load with `trust_remote_code=True`.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_beacon import BeaconConfig
from .modeling_beacon import (
    BeaconForMaskedLM,
    BeaconForPairwisePrediction,
    BeaconForSequenceClassification,
    BeaconForSequencePairClassification,
    BeaconForTokenClassification,
    BeaconModel,
    BeaconPreTrainedModel,
)

_AUTO_CLASSES = {
    AutoModel: BeaconModel,
    AutoModelForMaskedLM: BeaconForMaskedLM,
    AutoModelForSequenceClassification: BeaconForSequenceClassification,
    AutoModelForTokenClassification: BeaconForTokenClassification,
}


def register_beacon() -> None:
    """Register BEACON-B with `AutoConfig` and the `AutoModel*` classes (idempotent)."""
    AutoConfig.register(BeaconConfig.model_type, BeaconConfig, exist_ok=True)
    BeaconConfig.register_for_auto_class()
    for auto_class, model_class in _AUTO_CLASSES.items():
        auto_class.register(BeaconConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)


register_beacon()

__all__ = [
    "BeaconConfig",
    "BeaconForMaskedLM",
    "BeaconForPairwisePrediction",
    "BeaconForSequenceClassification",
    "BeaconForSequencePairClassification",
    "BeaconForTokenClassification",
    "BeaconModel",
    "BeaconPreTrainedModel",
    "register_beacon",
]
