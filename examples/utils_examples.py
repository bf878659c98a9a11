"""What the examples share: the size flags and config of a model trained from scratch, the tokenizer choice, a
class-balanced label subset and TrainingArguments defaults. Examples import it as `utils_examples` (they run as
`python examples/run_x.py`, which puts `examples/` on the path)."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, TrainingArguments

from hf_genomics import BeaconConfig, KmerTokenizer, NucleotideTokenizer

TOKENIZERS = ("nucleotide", "kmer")


@dataclass
class FreshModelArguments:
    """Size of a model trained from scratch."""

    hidden_size: int = field(default=64, metadata={"help": "Fresh model: hidden size."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Fresh model: number of layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Fresh model: attention heads."})
    intermediate_size: int = field(default=256, metadata={"help": "Fresh model: feed-forward size."})


def fresh_beacon_config(tokenizer, sizes: FreshModelArguments | None = None, dropout: float | None = None,
                        **fields) -> BeaconConfig:
    """A new `BeaconConfig` with the tokenizer's vocabulary, padding and end ids (so Trainer need not align them, and
    warn), sized by `sizes` (arguments with the four size flags of `FreshModelArguments`) and `fields`."""
    if sizes is not None:
        fields = {"hidden_size": sizes.hidden_size, "num_hidden_layers": sizes.num_hidden_layers,
                  "num_attention_heads": sizes.num_attention_heads, "intermediate_size": sizes.intermediate_size,
                  **fields}
    if dropout is not None:
        fields |= {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    return BeaconConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id, **fields)


def load_tokenizer(model_name_or_path: str | None = None, kind: str = "nucleotide", k: int = 6, stride: int = 1):
    """The tokenizer saved with the model (a Hub id, or a folder with `tokenizer_config.json`); else a new one:
    `NucleotideTokenizer` ("nucleotide") or `KmerTokenizer(k, stride)` ("kmer")."""
    folder = Path(model_name_or_path) if model_name_or_path else None
    if folder is not None and (not folder.is_dir() or (folder / "tokenizer_config.json").is_file()):
        return AutoTokenizer.from_pretrained(model_name_or_path)
    if kind == "nucleotide":
        return NucleotideTokenizer()
    if kind == "kmer":
        return KmerTokenizer(k=k, stride=stride)
    raise ValueError(f"--tokenizer must be one of {TOKENIZERS}, got {kind!r}.")


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` indices, the same number from every class, drawn with ``seed``."""
    classes = np.unique(labels)
    if size % len(classes):
        raise ValueError(f"num_labeled={size} must be a multiple of the number of classes ({len(classes)}).")
    per_class = size // len(classes)
    rng = np.random.default_rng(seed)
    picked = []
    for label in classes:
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"Class {label} has {len(members)} train sequences, fewer than {per_class} requested.")
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


@dataclass
class ExampleTrainingArguments(TrainingArguments):
    """Defaults every example shares; each example's subclass sets its budget and output folder."""

    weight_decay: float = field(default=0.01)


@dataclass
class EpochTrainingArguments(ExampleTrainingArguments):
    """Fine-tuning for a few epochs, keeping the best epoch's model by the validation metric."""

    num_train_epochs: float = field(default=3.0)
    learning_rate: float = field(default=5e-4)
    warmup_steps: float = field(default=50)
    eval_strategy: str = field(default="epoch")
    save_strategy: str = field(default="epoch")
    save_total_limit: int | None = field(default=1)
    load_best_model_at_end: bool = field(default=True)
    logging_steps: int = field(default=50)


@dataclass
class StepTrainingArguments(ExampleTrainingArguments):
    """A short run of a fixed number of steps that saves only its final model (`--save_strategy steps` to resume)."""

    max_steps: int = field(default=200)
    warmup_steps: float = field(default=20)
    logging_steps: float = field(default=20)
    save_strategy: str = field(default="no")
