"""hf_genomics: DNA and RNA language models for the Hugging Face ecosystem.

Importing the package registers its configs, models and tokenizers with the ``Auto*`` classes.
"""

__version__ = "0.1.0"

from transformers.models.auto.tokenization_auto import REGISTERED_TOKENIZER_CLASSES

from .tokenization_nucleotide import NucleotideTokenizer
from .tokenization_kmer import KmerTokenizer
from .io import read_fasta, read_nrc, split_on_n_runs
from .corpus import default_corpus_files
from .models.beacon import (
    BeaconConfig,
    BeaconForMaskedLM,
    BeaconForPairwisePrediction,
    BeaconForSequenceClassification,
    BeaconForSequencePairClassification,
    BeaconForTokenClassification,
    BeaconModel,
)
from .models.baselines import BaselineConfig, BaselineForSequenceClassification
from .model_card import write_model_card
from .hub_cache import publish_to_local_cache
from .data.augment import (
    Compose,
    PointMutation,
    RandomMasking,
    RandomShift,
    ReverseComplement,
    reverse_complement_probability,
)
from .data.collator_randommask import DataCollatorForRandomMask, RandomMaskSchedule
from .data.beacon import ALL_TASKS, BEACON_TASKS, EXTRA_TASKS, BeaconTask, get_task
from .data.gue import GUE_TASKS, GueTask, find_gue_task
from .data.collator_beacon import DataCollatorForBeacon, encode_beacon_batch
from .data.collator_packing import DataCollatorForPacking
from .data.hub_dataset import beacon_features, HubConfig, write_hub_dataset
from .data.imbalance import long_tailed_indices
from .data.structure import (
    dot_bracket_to_pairs,
    matrix_to_pairs,
    pairs_to_dot_bracket,
    pairs_to_matrix,
    read_bpseq,
    read_ct,
    write_bpseq,
    write_ct,
)
from .metrics import (
    accuracy,
    balanced_accuracy,
    BeaconMetrics,
    class_balanced_metrics,
    contact_top_l_precision,
    logit_pearson_r2,
    macro_f1,
    make_compute_metrics,
    matthews_correlation,
    mcrmse,
    mean_pearson_r2,
    mean_roc_auc,
    no_context_mlm_loss,
    pearson_r2,
    secondary_structure_f1,
    spearman,
    splice_topk_accuracy,
)
from .training.ema import ModelEMA
from .training.trainer_teacher import EMATeacherTrainer
from .training.callback_randommask import RandomMaskCallback
from .training.trainer_self_distillation import SelfDistillationTrainer
from .training.trainer_layermatch import LayerMatchTrainer
from .training.callback_imwa import IMWACallback
from .training.checkpoints import CheckpointError, resolve_checkpoint, validate_checkpoint
from .training.run_folder import OutputDirInUseError, RunArguments, finish_run, prepare_run
from .tokenizer_compatibility import TokenizerMismatchError, check_tokenizer_matches_model

# `AutoTokenizer.register` needs a config class, but these tokenizers serve several model types. AutoTokenizer resolves
# the `tokenizer_class` named in tokenizer_config.json through this table, so `AutoTokenizer.from_pretrained(folder)`
# finds them whatever the model type.
for _tokenizer_class in (NucleotideTokenizer, KmerTokenizer):
    REGISTERED_TOKENIZER_CLASSES[_tokenizer_class.__name__] = _tokenizer_class

__all__ = [
    "NucleotideTokenizer",
    "KmerTokenizer",
    "read_fasta",
    "read_nrc",
    "split_on_n_runs",
    "default_corpus_files",
    "BeaconConfig",
    "BeaconForMaskedLM",
    "BeaconForPairwisePrediction",
    "BeaconForSequenceClassification",
    "BeaconForSequencePairClassification",
    "BeaconForTokenClassification",
    "BeaconModel",
    "BaselineConfig",
    "BaselineForSequenceClassification",
    "write_model_card",
    "publish_to_local_cache",
    "Compose",
    "PointMutation",
    "RandomMasking",
    "RandomShift",
    "ReverseComplement",
    "reverse_complement_probability",
    "DataCollatorForRandomMask",
    "RandomMaskSchedule",
    "ALL_TASKS",
    "BEACON_TASKS",
    "EXTRA_TASKS",
    "BeaconTask",
    "get_task",
    "GUE_TASKS",
    "GueTask",
    "find_gue_task",
    "DataCollatorForBeacon",
    "encode_beacon_batch",
    "DataCollatorForPacking",
    "beacon_features",
    "HubConfig",
    "write_hub_dataset",
    "long_tailed_indices",
    "dot_bracket_to_pairs",
    "matrix_to_pairs",
    "pairs_to_dot_bracket",
    "pairs_to_matrix",
    "read_bpseq",
    "read_ct",
    "write_bpseq",
    "write_ct",
    "accuracy",
    "balanced_accuracy",
    "BeaconMetrics",
    "class_balanced_metrics",
    "contact_top_l_precision",
    "logit_pearson_r2",
    "macro_f1",
    "make_compute_metrics",
    "matthews_correlation",
    "mcrmse",
    "mean_pearson_r2",
    "mean_roc_auc",
    "no_context_mlm_loss",
    "pearson_r2",
    "secondary_structure_f1",
    "spearman",
    "splice_topk_accuracy",
    "ModelEMA",
    "EMATeacherTrainer",
    "RandomMaskCallback",
    "SelfDistillationTrainer",
    "LayerMatchTrainer",
    "IMWACallback",
    "CheckpointError",
    "resolve_checkpoint",
    "validate_checkpoint",
    "OutputDirInUseError",
    "RunArguments",
    "finish_run",
    "prepare_run",
    "TokenizerMismatchError",
    "check_tokenizer_matches_model",
]
