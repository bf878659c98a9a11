"""hf_genomics: DNA and RNA language models for the Hugging Face ecosystem.

Importing the package registers its configs, models and tokenizers with the ``Auto*`` classes.
"""

__version__ = "0.1.0"

from .data.augment import Compose, PointMutation, RandomMasking, RandomShift, ReverseComplement
from .hub_cache import publish_to_local_cache
from .models.beacon import (
    BeaconConfig,
    BeaconForMaskedLM,
    BeaconForSequenceClassification,
    BeaconModel,
)
from .training.ema import ModelEMA
from .training.trainer_teacher import EMATeacherTrainer

__all__ = [
    "BeaconConfig",
    "BeaconForMaskedLM",
    "BeaconForSequenceClassification",
    "BeaconModel",
    "ModelEMA",
    "publish_to_local_cache",
    "EMATeacherTrainer",
    "Compose",
    "PointMutation",
    "RandomMasking",
    "RandomShift",
    "ReverseComplement",
]
