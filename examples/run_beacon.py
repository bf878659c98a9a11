"""Fine-tune (or train from scratch) a BEACON-B model on any BEACON task and report the test metric in BEACON's units.

    python examples/run_beacon.py --task ncRNA --dataset_dir OUT --output_dir runs/ncrna
    python examples/run_beacon.py --task SSP --dataset_dir OUT --model_name_or_path path/to/beacon-b --lora

`--dataset_dir` is a folder written by `dataset_scripts/build_beacon.py` or `build_beacon_real.py` (or any Hub
dataset with the same columns); `--dataset_config` picks a config other than the task name (e.g. SSP_archiveii).
Without `--model_name_or_path` a fresh BEACON-style model is built from the size flags. Head, collator and metric
come from the task registry (`hf_genomics.data.beacon`); early stopping watches the task metric. The final test
metrics are printed and written to `<output_dir>/beacon_results.json`.

Throughput: each batch is padded to its longest row (`--pad_to_multiple_of`, 32 on a GPU); validation and test rows are
evaluated longest first, so each evaluation batch holds rows of similar lengths (the metrics do not depend on the
order); on a GPU two loader workers prepare batches; and the loss is not read back every step to filter NaN/inf from
the logs (`--logging_nan_inf_filter`), which would wait for the GPU. Training batches stay random: with
`--train_sampling_strategy group_by_length` they pad far less, but ncRNA's classes differ in length, and a 2 x 64
model then learnt only the class prior (test accuracy 7.7%; 21% and 27% with random batches, two seeds).
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from transformers import AutoConfig, EarlyStoppingCallback, HfArgumentParser, Trainer, set_seed
from utils_examples import EpochTrainingArguments, FreshModelArguments, fresh_beacon_config, load_tokenizer

import hf_genomics.models.beacon as beacon_models
from hf_genomics import DataCollatorForPacking, check_tokenizer_matches_model
from hf_genomics.data.beacon import BEACON_TASKS, EXTRA_TASKS, get_task
from hf_genomics.data.collator_beacon import DataCollatorForBeacon, encode_beacon_batch
from hf_genomics.data.hub_dataset import beacon_features
from hf_genomics.metrics import make_compute_metrics
from hf_genomics.training.checkpoints import check_checkpoint_fits
from hf_genomics.training.run_folder import RunArguments, finish_run, prepare_run


logger = logging.getLogger(__name__)

# Random batches of BEACON rows rarely share a length, and on a GPU each new shape costs set-up (cuDNN attention, which
# recent torch prefers on Hopper, builds a graph per shape; compiled kernels recompile): a 3-epoch ncRNA run at batch
# 32 has 187 lengths, 17 once rounded up to multiples of 32, for 3% more tokens.
GPU_PAD_MULTIPLE = 32
PREDICTIONS_FILE = "test_predictions.npz"


@dataclass
class ModelArguments(FreshModelArguments):
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Saved model folder; omit to train a fresh model built from the size flags."}
    )
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
    classifier_pooling: str | None = field(
        default=None,
        metadata={"help": "Sequence heads: 'cls' or 'mean' (mean over each sequence's tokens, as ModernBERT); default: "
                  "the checkpoint's config ('cls' for a fresh model).", "choices": ["cls", "mean"]},
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Pretrained model whose head has another number of labels than the task: start a new head."},
    )
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters on query/key/value plus the head."})
    lora_r: int = field(default=8)
    lora_alpha: int = field(default=16)
    lora_dropout: float = field(default=0.05)


@dataclass
class DataArguments:
    task: str = field(
        default="ncRNA",
        metadata={"help": f"One of {', '.join([*BEACON_TASKS, *EXTRA_TASKS])}; or 'all': every task --dataset_dir has "
                  "a config named after, each in <output_dir>/<task>, and a table of them in "
                  "<output_dir>/beacon_table.md."},
    )
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
    max_truncated_fraction: float = field(
        default=0.01, metadata={"help": "Warn when --max_length cuts more than this share of the test sequences."}
    )
    pack_sequences: bool = field(
        default=False,
        metadata={"help": "Pack each batch into one row without padding (DataCollatorForPacking; ALiBi models, "
                  "single-input tasks); outputs and labels stay per sequence."},
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={"help": "Pad each batch to its longest row rounded up to a multiple of this (1: not rounded). "
                  f"Default: {GPU_PAD_MULTIPLE} on a GPU, where each new batch length costs kernel set-up, 1 on CPU."},
    )


@dataclass
class BeaconTrainingArguments(EpochTrainingArguments):
    output_dir: str = field(default="runs/beacon")
    per_device_train_batch_size: int = field(default=16)
    per_device_eval_batch_size: int = field(default=16)
    seed: int = field(default=666)
    # Trainer's filter reads every step's loss on the host, which waits for the GPU to finish the step; without it a
    # NaN/inf loss shows in the logged mean instead of being replaced by the previous mean.
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={"help": "Replace NaN/inf step losses in the logged loss (syncs with the GPU every step)."},
    )
    # Not persistent workers: Trainer then caches the first evaluation's loader under one key for every dataset
    # object, and the final test evaluation would run on the validation rows.
    dataloader_num_workers: int = field(
        default=-1,
        metadata={"help": "Loader subprocesses; -1 (default): 2 when training on a GPU, 0 on CPU, where workers "
                  "would take cores from the model."},
    )

    def __post_init__(self):
        if self.dataloader_num_workers < 0:
            self.dataloader_num_workers = 2 if not self.use_cpu and torch.cuda.is_available() else 0
        super().__post_init__()


def build_model(model_args: ModelArguments, task, tokenizer, id2label):
    head = getattr(beacon_models, task.head)
    # Always a label map: from_pretrained ignores `num_labels` when the checkpoint's config has one of another size.
    id2label = id2label or {k: f"LABEL_{k}" for k in range(task.num_labels)}
    head_kwargs = {"num_labels": task.num_labels, "problem_type": task.problem_type, "id2label": id2label,
                   "label2id": {name: k for k, name in id2label.items()}}
    # A pretrained encoder usually has no pair head yet, so its size (and the sequence heads' pooling) can be chosen
    # here; an unset flag keeps the checkpoint's config (and a fresh model's default).
    head_options = {name: getattr(model_args, name) for name in ("pairwise_channels", "pairwise_num_blocks",
                                                                 "pairwise_pos_weight", "classifier_pooling")
                    if getattr(model_args, name) is not None}
    if model_args.model_name_or_path:
        try:
            model = head.from_pretrained(model_args.model_name_or_path, **head_kwargs, **head_options,
                                         ignore_mismatched_sizes=model_args.ignore_mismatched_sizes)
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error):
                raise
            saved = AutoConfig.from_pretrained(model_args.model_name_or_path).num_labels
            raise ValueError(
                f"{model_args.model_name_or_path} has a head for {saved} labels but task {task.name} needs "
                f"{task.num_labels}. Pass --ignore_mismatched_sizes to replace the head with a new one."
            ) from None
    else:
        config = fresh_beacon_config(tokenizer, model_args, dropout=model_args.dropout, **head_kwargs,
                                     **({"pairwise_channels": 16, "pairwise_num_blocks": 2} | head_options))
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


def _kind(feature) -> tuple:
    """A column type up to details that do not matter here (float32 vs float64, class names)."""
    if isinstance(feature, datasets.Value):
        return ("value", "float" if "float" in feature.dtype else "int" if "int" in feature.dtype else feature.dtype)
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return ("list", *_kind(feature.feature))
    return (type(feature).__name__,)


def check_columns(raw: datasets.DatasetDict, task, where: str) -> None:
    """The dataset config must have the columns the task's encoder and labels use, with their types."""
    features, needed = raw["train"].features, beacon_features(task.name)
    missing = sorted(set(needed) - set(features))
    wrong = sorted(name for name in set(needed) & set(features) if _kind(needed[name]) != _kind(features[name]))
    if missing or wrong:
        found = ", ".join(f"{name}: {_kind(feature)}" for name, feature in features.items())
        expected = ", ".join(f"{name}: {_kind(feature)}" for name, feature in needed.items())
        raise ValueError(
            f"{where} has columns ({found}), but task {task.name} needs ({expected}); missing: {missing}, of another "
            f"type: {wrong}. Pick the --dataset_config built for {task.name}, or the --task that config was built for."
        )


def truncated_fraction(task, tokenizer, rows: datasets.Dataset, max_length: int) -> float:
    """Share of `rows` whose tokens (with specials) do not fit in `max_length`."""
    columns = ("sgrna", "target") if task.input_kind == "pair" else ("sequence",)
    too_long = None
    for column in columns:
        lengths = [len(ids) for ids in tokenizer(list(rows[column]), return_attention_mask=False)["input_ids"]]
        cut = [length > max_length for length in lengths]
        too_long = cut if too_long is None else [a or b for a, b in zip(too_long, cut)]
    return sum(too_long) / max(len(too_long), 1)


def token_counts(rows: datasets.Dataset) -> list[int]:
    """Each encoded row's token count (the longer input of a pair), read from the Arrow list lengths (no row, and
    none of the large pair labels, is decoded)."""
    table = rows.with_format("arrow")[:]
    counts = pc.list_value_length(table["input_ids"])
    if "input_ids_b" in table.column_names:
        counts = pc.max_element_wise(counts, pc.list_value_length(table["input_ids_b"]))
    return counts.to_pylist()


class PredictionRecorder:
    """`compute_metrics` (batch by batch) that, while recording, also keeps each row's predictions and labels cut to
    its nucleotides: the test set goes through the model once for its metrics and its saved predictions."""

    def __init__(self, compute_metrics, task):
        self.compute_metrics, self.task = compute_metrics, task
        self.nucleotides, self.rows = None, []

    def record(self, nucleotides: list[int]) -> None:
        """Keep the rows of the next evaluations; `nucleotides` gives each row's count, in evaluation order."""
        self.nucleotides, self.rows = nucleotides, []

    def __call__(self, prediction, compute_result: bool) -> dict:
        if self.nucleotides is not None:
            logits = prediction.predictions
            logits = logits[0] if isinstance(logits, (tuple, list)) else logits
            axes = {"sequence": 0, "nucleotide": 1, "pairwise": 2}[self.task.level]
            # L x L maps of a whole test set are large: half precision is plenty for plots and thresholds.
            dtype = np.float16 if axes == 2 else np.float32
            for logit, label in zip(logits.float().cpu().numpy(), prediction.label_ids.cpu().numpy()):
                # Token-aligned outputs and labels: the nucleotides are tokens 1 .. n, after <cls>.
                cut = (slice(1, self.nucleotides[len(self.rows)] + 1),) * axes
                self.rows.append((logit[cut].astype(dtype), label[cut]))
        return self.compute_metrics(prediction, compute_result=compute_result)


def save_test_predictions(path: Path, rows: list[tuple], positions, test_rows, test: datasets.Dataset,
                          id2label: dict | None) -> None:
    """`rows[k]` (predictions, labels) of the test row at `positions[k]`, saved in the test split's order."""
    ordered = sorted(zip(positions, rows), key=lambda pair: pair[0])
    arrays = {"row": np.asarray(test_rows)[[position for position, _ in ordered]]}
    if "id" in test.column_names:
        arrays["id"] = np.asarray(test["id"])[[position for position, _ in ordered]].astype(str)
    if id2label:
        arrays["label_names"] = np.asarray([id2label[k] for k in sorted(id2label)])
    for i, (_, (predictions, labels)) in enumerate(ordered):
        arrays[f"predictions_{i}"], arrays[f"labels_{i}"] = predictions, labels
    np.savez_compressed(path, **arrays)


def read_test_predictions(folder: str | Path) -> dict:
    """A run's `test_predictions.npz`: `predictions` and `labels` (one array per test row: logits and labels, per
    nucleotide or nucleotide pair where the task is), `row` (the row of the dataset's test split), and `id` and
    `label_names` where the dataset has them."""
    path = Path(folder) / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run_beacon.py writes it with the test metrics; run it again.")
    with np.load(path) as saved:
        count = len(saved["row"])
        return {"predictions": [saved[f"predictions_{i}"] for i in range(count)],
                "labels": [saved[f"labels_{i}"] for i in range(count)],
                **{key: saved[key] for key in ("row", "id", "label_names") if key in saved}}


def dataset_tasks(dataset_dir: str) -> list[str]:
    """The tasks `dataset_dir` has a config for (configs named after a task), in BEACON Table 3's order."""
    configs = {name.lower() for name in datasets.get_dataset_config_names(dataset_dir)}
    return [name for name in (*BEACON_TASKS, *EXTRA_TASKS) if name.lower() in configs]


def beacon_table(results: list[dict], model: str) -> tuple[str, list[dict]]:
    """BEACON Table 3-style rows (this model's test metric next to BEACON's CNN and BEACON-B) as Markdown and JSON."""
    rows = []
    for result in results:
        task = get_task(result["task"])
        rows.append({"task": task.name, "metric": task.metric, "percent": task.percent,
                     "greater_is_better": task.greater_is_better, "this_model": result["test"][task.metric_key],
                     **result["published"]})
    lines = [f"Test split; this model: {model}. CNN and BEACON-B: BEACON Table 3 (Ren et al., 2024).", "",
             "| task | metric | this model | CNN | BEACON-B |", "|---|---|---|---|---|"]
    for row in rows:
        unit = " (%)" if row["percent"] else ""
        direction = "" if row["greater_is_better"] else ", lower is better"
        value = f"{row['this_model']:.2f}" if row["percent"] else f"{row['this_model']:.3f}"
        published = ("n/a" if row[name] is None else str(row[name]) for name in ("CNN", "BEACON-B"))
        lines.append(f"| {row['task']} | {row['metric']}{unit}{direction} | {value} | {' | '.join(published)} |")
    return "\n".join(lines) + "\n", rows


def run_all_tasks(argv: list[str], model_args: ModelArguments, data_args: DataArguments, output_dir: str) -> dict:
    """`--task all`: one run per task of the dataset folder, each in `<output_dir>/<task>`, then the table."""
    if data_args.dataset_config:
        raise ValueError("--dataset_config picks one config; with --task all each task uses the config of its name.")
    names = dataset_tasks(data_args.dataset_dir)
    if not names:
        raise ValueError(f"{data_args.dataset_dir} has no config named after a task "
                         f"({', '.join([*BEACON_TASKS, *EXTRA_TASKS])}).")
    results = [main([*argv, "--task", name, "--output_dir", str(Path(output_dir) / name)]) for name in names]
    model = model_args.model_name_or_path or (f"a fresh {model_args.num_hidden_layers} x {model_args.hidden_size} "
                                              "model (not pretrained)")
    markdown, rows = beacon_table(results, model)
    (Path(output_dir) / "beacon_table.md").write_text(markdown)
    (Path(output_dir) / "beacon_table.json").write_text(json.dumps({"model": model, "rows": rows}, indent=2))
    print(markdown)
    return {"model": model, "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, BeaconTrainingArguments, RunArguments))
    model_args, data_args, training_args, run_args = parser.parse_args_into_dataclasses(args=argv)
    if data_args.task == "all":
        return run_all_tasks(argv, model_args, data_args, training_args.output_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    checkpoint = prepare_run(training_args.output_dir, training_args.resume_from_checkpoint,
                             run_args.overwrite_output_dir)
    set_seed(training_args.seed)
    task = get_task(data_args.task)

    config_name = data_args.dataset_config or task.name
    raw = datasets.load_dataset(data_args.dataset_dir, config_name)
    for split in ("train", "validation", "test"):
        if split not in raw:
            raise ValueError(f"dataset {data_args.dataset_dir!r} has no {split!r} split (found {list(raw)}).")
    check_columns(raw, task, f"config {config_name!r} of {data_args.dataset_dir}")
    if data_args.max_train_length is not None and task.input_kind == "single":
        raw["train"] = raw["train"].filter(lambda row: len(row["sequence"]) <= data_args.max_train_length)
    test_rows = np.arange(len(raw["test"]))  # each test row's index in the config's test split
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples),
                         ("test", data_args.max_test_samples)):
        if limit is not None:
            # Shuffled first, so a small slice still covers the classes of a class-sorted file.
            kept = np.random.default_rng(training_args.seed).permutation(len(raw[split]))[:limit]
            raw[split] = raw[split].select(kept)
            if split == "test":
                test_rows = kept

    label_feature = raw["train"].features.get("label")
    id2label = dict(enumerate(label_feature.names)) if isinstance(label_feature, datasets.ClassLabel) else None
    model_path = model_args.model_name_or_path
    tokenizer = load_tokenizer(model_path)
    if model_path:
        check_tokenizer_matches_model(tokenizer, AutoConfig.from_pretrained(model_path),
                                      allow_mismatch=run_args.allow_tokenizer_mismatch)
    truncated = truncated_fraction(task, tokenizer, raw["test"], data_args.max_length)
    if truncated > data_args.max_truncated_fraction:
        logger.warning("--max_length %d cuts %.1f%% of the %s test sequences: their scores are not comparable with "
                       "BEACON's.", data_args.max_length, 100 * truncated, task.name)
    encoded = raw.map(
        encode_beacon_batch,
        batched=True,
        remove_columns=raw["train"].column_names,
        fn_kwargs={"task": task, "tokenizer": tokenizer, "max_length": data_args.max_length},
        desc="Tokenizing",
    )
    # Precomputed, or `--train_sampling_strategy group_by_length` would decode every row to measure it.
    length_column = training_args.length_column_name
    for split in encoded:
        encoded[split] = encoded[split].add_column(length_column, token_counts(encoded[split]))
    positions = {}  # of the evaluated rows in their split
    for split in ("validation", "test"):
        # A random batch of 32 nRC rows is padded to 2.7x its tokens (5.7x their attention work); sorted, ~1x.
        positions[split] = np.argsort(-np.asarray(encoded[split][length_column]), kind="stable")
        encoded[split] = encoded[split].select(positions[split])
    pad_multiple = data_args.pad_to_multiple_of
    if pad_multiple is None:
        pad_multiple = 1 if training_args.device.type == "cpu" else GPU_PAD_MULTIPLE
    model = build_model(model_args, task, tokenizer, id2label)
    collator = DataCollatorForBeacon(tokenizer, task, pad_to_multiple_of=pad_multiple)
    if data_args.pack_sequences:
        if task.input_kind == "pair" or getattr(model.config, "position_embedding_type", None) != "alibi":
            raise ValueError(
                f"--pack_sequences needs a single-input task and an ALiBi model; {task.name} has {task.input_kind} "
                f"inputs and the model {getattr(model.config, 'position_embedding_type', 'no ALiBi')} positions."
            )
        collator = DataCollatorForPacking(collator, pack_labels=False, pad_to_multiple_of=pad_multiple)

    training_args.metric_for_best_model = task.metric_key
    training_args.greater_is_better = task.greater_is_better
    # Metrics are reduced batch by batch, so L x L predictions of a whole eval set never sit in memory.
    training_args.batch_eval_metrics = True
    training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    recorder = PredictionRecorder(make_compute_metrics(task, min_separation=data_args.min_separation), task)
    callbacks = []
    if training_args.load_best_model_at_end and training_args.eval_strategy != "no":
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        data_collator=collator,
        compute_metrics=recorder,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    check_checkpoint_fits(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.save_state()  # trainer_state.json: loss and metric curves for reports
    trainer.remove_callback(EarlyStoppingCallback)  # it would warn that the test metrics have no eval_ key
    recorder.record([count - 2 for count in encoded["test"][length_column]])  # nucleotides between <cls> and <eos>
    test_metrics = trainer.evaluate(encoded["test"], metric_key_prefix="test")
    results = {
        "task": task.name,
        "dataset": f"{data_args.dataset_dir}:{data_args.dataset_config or task.name}",
        "metric": task.metric,
        "test": beacon_units(task, test_metrics, "test"),
        "test_raw": test_metrics,
        "max_length": data_args.max_length,
        "truncated_test_fraction": truncated,
        "published": {model: task.published.get(model) for model in ("CNN", "BEACON-B")},  # None: not in BEACON
    }
    Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(training_args.output_dir) / "beacon_results.json").write_text(json.dumps(results, indent=2))
    save_test_predictions(Path(training_args.output_dir) / PREDICTIONS_FILE, recorder.rows, positions["test"],
                          test_rows, raw["test"], id2label)
    unit = "%" if task.percent else ""
    cut = (f"; --max_length {data_args.max_length} cut {100 * truncated:.1f}% of the test sequences"
           if truncated > data_args.max_truncated_fraction else "")
    published = (f"BEACON Table 3: CNN {task.published['CNN']}, BEACON-B {task.published['BEACON-B']}"
                 if task.published else "no published numbers")
    print(f"{task.name} test {task.metric_key}: {results['test'][task.metric_key]:.2f}{unit} ({published}{cut})")
    finish_run(training_args.output_dir)
    return results


if __name__ == "__main__":
    main()
