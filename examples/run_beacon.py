"""Fine-tune (or train from scratch) a BEACON-B model on any BEACON task and report the test metric in BEACON's units.

    python examples/run_beacon.py --task ncRNA --dataset_dir OUT --output_dir runs/ncrna
    python examples/run_beacon.py --task SSP --dataset_dir OUT --model_name_or_path path/to/beacon-b --lora

`--dataset_dir` is a folder written by `dataset_scripts/build_beacon.py` or `build_beacon_real.py` (or any Hub
dataset with the same columns); `--dataset_config` picks a config other than the task name (e.g. SSP_archiveii).
Without `--model_name_or_path` a fresh BEACON-style model is built from the size flags. Head, collator and metric
come from the task registry (`hf_genomics.data.beacon`); early stopping watches the task metric. The final test
metrics are printed and written to `<output_dir>/beacon_results.json`.
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import AutoTokenizer, EarlyStoppingCallback, HfArgumentParser, Trainer, TrainingArguments, set_seed

import hf_genomics.models.beacon as beacon_models
from hf_genomics import NucleotideTokenizer
from hf_genomics.data.beacon import BEACON_TASKS, get_task
from hf_genomics.data.collator_beacon import DataCollatorForBeacon, encode_beacon_batch
from hf_genomics.metrics import make_compute_metrics


logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Saved model folder; omit to train a fresh model built from the flags below."}
    )
    hidden_size: int = field(default=64, metadata={"help": "Fresh model: hidden size."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Fresh model: number of layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Fresh model: attention heads."})
    intermediate_size: int = field(default=256, metadata={"help": "Fresh model: feed-forward size."})
    pairwise_channels: int | None = field(
        default=None, metadata={"help": "Channels of the pair ResNet (fresh model: 16; pretrained: its config)."}
    )
    pairwise_num_blocks: int | None = field(
        default=None, metadata={"help": "Residual blocks of the pair ResNet (fresh model: 2; pretrained: its config)."}
    )
    pairwise_pos_weight: float | None = field(
        default=None,
        metadata={"help": "Weight of positive pairs in the pair BCE (BEACON: none). Structure maps have ~1 pair per "
                  "100 cells; short runs predict no pair without it."},
    )
    dropout: float = field(default=0.1, metadata={"help": "Fresh model: hidden and attention dropout."})
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters on query/key/value plus the head."})
    lora_r: int = field(default=8)
    lora_alpha: int = field(default=16)
    lora_dropout: float = field(default=0.05)


@dataclass
class DataArguments:
    task: str = field(default="ncRNA", metadata={"help": f"One of {', '.join(BEACON_TASKS)}."})
    dataset_dir: str = field(default="beacon_data", metadata={"help": "Hub dataset folder (or repo id)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Config name; defaults to the task name."})
    max_length: int = field(default=1026, metadata={"help": "Tokens incl. <cls>/<eos>; longer inputs are truncated."})
    max_train_length: int | None = field(
        default=None, metadata={"help": "Drop training rows with more nucleotides than this (speed on CPU)."}
    )
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    max_test_samples: int | None = field(default=None)
    min_separation: int = field(default=24, metadata={"help": "CMP long-range cut j - i >= this (BEACON code: 23)."})
    early_stopping_patience: int = field(default=5, metadata={"help": "Evaluations without improvement."})


@dataclass
class BeaconTrainingArguments(TrainingArguments):
    output_dir: str = field(default="runs/beacon")
    eval_strategy: str = field(default="epoch")
    save_strategy: str = field(default="epoch")
    logging_steps: int = field(default=50)
    load_best_model_at_end: bool = field(default=True)
    save_total_limit: int | None = field(default=1)
    num_train_epochs: float = field(default=3.0)
    learning_rate: float = field(default=5e-4)
    warmup_steps: float = field(default=50)
    weight_decay: float = field(default=0.01)
    per_device_train_batch_size: int = field(default=16)
    per_device_eval_batch_size: int = field(default=16)
    seed: int = field(default=666)


def build_model(model_args: ModelArguments, task, tokenizer, id2label):
    head = getattr(beacon_models, task.head)
    head_kwargs = {"num_labels": task.num_labels, "problem_type": task.problem_type}
    if id2label:
        head_kwargs |= {"id2label": id2label, "label2id": {name: k for k, name in id2label.items()}}
    # A pretrained encoder usually has no pair head yet, so its size can be chosen here; an unset flag keeps
    # the checkpoint's config (and a fresh model's small default).
    pair_head = {name: getattr(model_args, name) for name in ("pairwise_channels", "pairwise_num_blocks",
                                                              "pairwise_pos_weight")
                 if getattr(model_args, name) is not None}
    if model_args.model_name_or_path:
        model = head.from_pretrained(model_args.model_name_or_path, **head_kwargs, **pair_head)
    else:
        config = beacon_models.BeaconConfig(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_hidden_layers,
            num_attention_heads=model_args.num_attention_heads,
            intermediate_size=model_args.intermediate_size,
            hidden_dropout_prob=model_args.dropout,
            attention_probs_dropout_prob=model_args.dropout,
            **({"pairwise_channels": 16, "pairwise_num_blocks": 2} | pair_head),
            **head_kwargs,
        )
        model = head(config)
    if model_args.lora:
        from peft import LoraConfig, get_peft_model

        # No PEFT task type: it would fix the forward signature, and the pair head needs `input_ids_b`.
        lora_config = LoraConfig(
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=["query", "key", "value"],
            modules_to_save=["classifier"],
        )
        model = get_peft_model(model, lora_config)
        model.print_trainable_parameters()
    return model


def beacon_units(task, metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """Metric values as BEACON reports them (x100 for percentages; VDP MCRMSE as is)."""
    scale = 100.0 if task.percent else 1.0
    return {key[len(prefix) + 1 :]: value * scale for key, value in metrics.items()
            if key.startswith(prefix + "_") and key[len(prefix) + 1 :] in (task.metric_key, "mcc", "accuracy")}


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ModelArguments, DataArguments, BeaconTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    set_seed(training_args.seed)
    task = get_task(data_args.task)

    raw = datasets.load_dataset(data_args.dataset_dir, data_args.dataset_config or task.name)
    for split in ("train", "validation", "test"):
        if split not in raw:
            raise ValueError(f"dataset {data_args.dataset_dir!r} has no {split!r} split (found {list(raw)}).")
    if data_args.max_train_length is not None and task.input_kind == "single":
        raw["train"] = raw["train"].filter(lambda row: len(row["sequence"]) <= data_args.max_train_length)
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples),
                         ("test", data_args.max_test_samples)):
        if limit is not None:
            # Shuffled first, so a small slice still covers the classes of a class-sorted file.
            raw[split] = raw[split].shuffle(seed=training_args.seed).select(range(min(limit, len(raw[split]))))

    label_feature = raw["train"].features.get("label")
    id2label = dict(enumerate(label_feature.names)) if isinstance(label_feature, datasets.ClassLabel) else None
    model_path = model_args.model_name_or_path
    tokenizer = (AutoTokenizer.from_pretrained(model_path)
                 if model_path and (Path(model_path) / "tokenizer_config.json").exists() else NucleotideTokenizer())
    encoded = raw.map(
        encode_beacon_batch,
        batched=True,
        remove_columns=raw["train"].column_names,
        fn_kwargs={"task": task, "tokenizer": tokenizer, "max_length": data_args.max_length},
        desc="Tokenizing",
    )
    model = build_model(model_args, task, tokenizer, id2label)

    training_args.metric_for_best_model = task.metric_key
    training_args.greater_is_better = task.greater_is_better
    # Metrics are reduced batch by batch, so L x L predictions of a whole eval set never sit in memory.
    training_args.batch_eval_metrics = True
    training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    callbacks = []
    if training_args.load_best_model_at_end and training_args.eval_strategy != "no":
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        data_collator=DataCollatorForBeacon(tokenizer, task),
        compute_metrics=make_compute_metrics(task, min_separation=data_args.min_separation),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.train()
    trainer.save_model()
    trainer.save_state()  # trainer_state.json: loss and metric curves for reports
    trainer.remove_callback(EarlyStoppingCallback)  # it would warn that the test metrics have no eval_ key
    test_metrics = trainer.evaluate(encoded["test"], metric_key_prefix="test")
    results = {
        "task": task.name,
        "dataset": f"{data_args.dataset_dir}:{data_args.dataset_config or task.name}",
        "metric": task.metric,
        "test": beacon_units(task, test_metrics, "test"),
        "test_raw": test_metrics,
        "published": {model: task.published[model] for model in ("CNN", "BEACON-B")},
    }
    Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(training_args.output_dir) / "beacon_results.json").write_text(json.dumps(results, indent=2))
    unit = "%" if task.percent else ""
    print(f"{task.name} test {task.metric_key}: {results['test'][task.metric_key]:.2f}{unit} "
          f"(BEACON Table 3: CNN {task.published['CNN']}, BEACON-B {task.published['BEACON-B']})")
    return results


if __name__ == "__main__":
    main()
