"""BEACON's naive baselines (CNN, ResNet, BiLSTM), registered with the ``Auto*`` classes on import."""

from transformers import AutoConfig, AutoModelForSequenceClassification

from .configuration_baselines import BaselineConfig
from .modeling_baselines import BaselineForSequenceClassification, BaselinePreTrainedModel

AutoConfig.register(BaselineConfig.model_type, BaselineConfig, exist_ok=True)
AutoModelForSequenceClassification.register(BaselineConfig, BaselineForSequenceClassification, exist_ok=True)

__all__ = ["BaselineConfig", "BaselinePreTrainedModel", "BaselineForSequenceClassification"]
