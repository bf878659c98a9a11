"""IMWA on a class-imbalanced ncRNA task: plain training, EMA, IMWA and IMWA+EMA at equal compute.

    nice python examples/run_imwa.py --imbalance_ratios 100,10 --seeds 0,1,2 --output_dir runs/imwa

The nRC training set (13 ncRNA families, `data/nrc_ncrna`) is subsampled to a long-tailed set: the classes,
in a seeded random order, keep ``500 * ratio^(-i/12)`` sequences (exponential profile, as for CIFAR-LT), so the
largest class is ``ratio`` times the smallest. The nRC test set stays balanced (200 per family). Reported:
balanced accuracy and macro-F1 (scikit-learn).

``--runs`` picks training runs; each reports its model and its EMA (an EMA does not change training):
``plain`` (one model: rows plain, ema), ``imwa`` (rows imwa, imwa_ema) and ``mwa`` (one episode: vanilla model
weight averaging) make the same optimizer steps on the same batches, so their compute is equal and each of
the K replicas makes 1/K of the steps; ``imwa_kx`` and ``mwa_kx`` give every replica as many steps as the
plain run (K x the compute: the paper's "same cost as vanilla MWA" setting).
Default model: the BEACON CNN baseline on `NucleotideTokenizer` ids; ``--model beacon`` uses a tiny BEACON-B.
Training runs on the device ``TrainingArguments`` picks (``--use_cpu`` forces the CPU; ``--bf16``/``--fp16`` for
mixed precision). Each run's model (and EMA) is saved as a Hub-ready folder under ``output_dir``. With
``--save_steps N`` every run checkpoints every N steps; ``--resume_from_checkpoint True`` then continues each run
from the newest checkpoint in its folder (mid-episode, exactly) and reuses the metrics of runs that had finished.
"""

import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorWithPadding, HfArgumentParser, Trainer, TrainingArguments, set_seed
from utils_examples import fresh_beacon_config

from hf_genomics import (
    BaselineConfig,
    BaselineForSequenceClassification,
    BeaconForSequenceClassification,
    IMWACallback,
    NucleotideTokenizer,
    class_balanced_metrics,
    long_tailed_indices,
    read_nrc,
)
from hf_genomics.data.beacon import NCRNA_LABELS
from hf_genomics.training.checkpoints import (
    asks_for_latest,
    check_checkpoint_fits,
    checkpoints_in,
    resolve_checkpoint,
)
from hf_genomics.training.run_folder import RunArguments, finish_run, prepare_run

logger = logging.getLogger(__name__)


@dataclass
class IMWAExampleArguments:
    data_dir: str = field(default="data/nrc_ncrna", metadata={"help": "Folder with the nRC train/test FASTA."})
    output_dir: str = field(default="runs/imwa")
    imbalance_ratios: str = field(default="100", metadata={"help": "Comma-separated head/tail size ratios."})
    seeds: str = field(default="0", metadata={"help": "Comma-separated seeds (class order, subsample, init)."})
    model: str = field(default="cnn", metadata={"help": "cnn (BEACON CNN baseline) or beacon (tiny BEACON-B)."})
    max_length: int = field(default=128, metadata={"help": "Tokens incl. <cls>/<eos>; longer RNAs are truncated."})
    embedding_dim: int = field(default=32, metadata={"help": "CNN baseline only."})
    hidden_size: int = field(default=64, metadata={"help": "CNN channels, or BEACON hidden size."})
    head_class_size: int = field(default=500)
    num_train_epochs: int = field(default=12, metadata={"help": "Epochs of the plain run; every run has its steps."})
    batch_size: int = field(default=32)
    learning_rate: float = field(default=2e-3)
    num_models: int = field(default=2, metadata={"help": "IMWA replicas K."})
    num_episodes: int = field(default=6, metadata={"help": "IMWA episodes E."})
    ema_decay: float = field(default=0.99, metadata={"help": "EMA decay per replica step."})
    ema_warmup: bool = field(default=True, metadata={"help": "EMA decay min(ema_decay, (1+t)/(10+t)) at update t."})
    runs: str = field(default="plain,imwa", metadata={"help": "Comma-separated: plain, imwa, mwa, imwa_kx, mwa_kx."})
    threads: int = field(default=1, metadata={"help": "torch threads (the machine may be shared)."})
    use_cpu: bool = field(default=False, metadata={"help": "Train on the CPU even if a GPU is available."})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision (as TrainingArguments' --bf16)."})
    fp16: bool = field(default=False, metadata={"help": "float16 mixed precision with loss scaling (GPU only)."})
    save_steps: int = field(default=0, metadata={"help": "Checkpoint every run every this many steps (0: never)."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "True: continue every run from the newest checkpoint in its folder and reuse finished runs' "
                  "metrics; or a checkpoint path when a single run is asked for."},
    )


def build_model(args: IMWAExampleArguments, num_labels: int, tokenizer: NucleotideTokenizer):
    if args.model == "cnn":
        config = BaselineConfig(architecture="cnn", vocab_size=tokenizer.vocab_size,
                                embedding_dim=args.embedding_dim, hidden_size=args.hidden_size, kernel_size=9,
                                num_layers=3, pad_token_id=tokenizer.pad_token_id, num_labels=num_labels)
        return BaselineForSequenceClassification(config)
    if args.model == "beacon":
        sizes = {"hidden_size": args.hidden_size, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "intermediate_size": 2 * args.hidden_size}
        return BeaconForSequenceClassification(fresh_beacon_config(tokenizer, num_labels=num_labels, **sizes))
    raise ValueError(f"--model must be 'cnn' or 'beacon', got {args.model!r}.")


def run_checkpoint(args: IMWAExampleArguments, output_dir: Path) -> str | None:
    """The checked checkpoint this run resumes from: the given path, else the newest in its folder (if any)."""
    if args.resume_from_checkpoint is None:
        return None
    if asks_for_latest(args.resume_from_checkpoint):
        return resolve_checkpoint(True, output_dir) if checkpoints_in(output_dir) else None
    return resolve_checkpoint(args.resume_from_checkpoint, output_dir)


def run(args, name, train, test, num_labels, tokenizer, seed, imwa_settings, compute) -> dict[str, dict[str, float]]:
    """One training run with an IMWACallback (``num_models=1`` is plain training); its model's and EMA's metrics.

    ``compute`` multiplies the plain run's optimizer steps. A resumed run whose metrics were saved is not redone.
    """
    output_dir = Path(args.output_dir) / name
    metrics_file = output_dir / "metrics.json"
    if args.resume_from_checkpoint is not None and metrics_file.is_file():
        logger.info(f"{name}: finished before, metrics from {metrics_file}")
        return json.loads(metrics_file.read_text())
    checkpoint = run_checkpoint(args, output_dir)
    if checkpoint is None and output_dir.exists():
        shutil.rmtree(output_dir)  # a previous run's checkpoints would mix with this one's
    set_seed(seed)
    steps = compute * args.num_train_epochs * math.ceil(len(train) / args.batch_size)
    training_args = TrainingArguments(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128, learning_rate=args.learning_rate, lr_scheduler_type="cosine",
        weight_decay=0.01, logging_steps=max(steps // 10, 1), report_to=[], seed=seed,
        save_strategy="steps" if args.save_steps else "no", save_steps=args.save_steps or 500,
        use_cpu=args.use_cpu, bf16=args.bf16, fp16=args.fp16,
    )
    trainer = Trainer(model=build_model(args, num_labels, tokenizer), args=training_args, train_dataset=train,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                      compute_metrics=class_balanced_metrics)
    imwa = IMWACallback(trainer, ema_decay=args.ema_decay, ema_warmup=args.ema_warmup, **imwa_settings)
    trainer.add_callback(imwa)
    check_checkpoint_fits(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    model_metrics = trainer.evaluate(test, metric_key_prefix="test")
    ema_metrics = imwa.evaluate_ema(test, metric_key_prefix="test")
    trainer.save_model(str(output_dir / "model"))
    imwa.save_ema(str(output_dir / "ema"))
    keys = ("balanced_accuracy", "macro_f1")
    metrics = {name: {k: values[f"test_{k}"] for k in keys}
               for name, values in (("model", model_metrics), ("ema", ema_metrics))}
    metrics_file.write_text(json.dumps(metrics, indent=2))
    return metrics


def main():
    args, run_args = HfArgumentParser((IMWAExampleArguments, RunArguments)).parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    resuming = args.resume_from_checkpoint is not None
    # The checkpoints live in one folder per run, so the top folder is claimed as a whole: resuming may reuse it.
    prepare_run(args.output_dir, overwrite_output_dir=run_args.overwrite_output_dir or resuming)
    torch.set_num_threads(args.threads)
    tokenizer = NucleotideTokenizer()
    train_rows = read_nrc(Path(args.data_dir) / "dataset_Rfam_6320_13classes.fasta")
    test_rows = read_nrc(Path(args.data_dir) / "dataset_Rfam_validated_2600_13classes.fasta")
    train_labels = np.array([row["label"] for row in train_rows])
    def encode(rows):
        return tokenizer([row["sequence"] for row in rows], truncation=True, max_length=args.max_length)["input_ids"]

    train_ids = encode(train_rows)
    test = [{"input_ids": ids, "labels": row["label"]} for ids, row in zip(encode(test_rows), test_rows)]

    k, e = args.num_models, args.num_episodes
    available = {"plain": ({"num_models": 1, "num_episodes": 1}, 1), "imwa": ({"num_models": k, "num_episodes": e}, 1),
                 "mwa": ({"num_models": k, "num_episodes": 1}, 1), "imwa_kx": ({"num_models": k, "num_episodes": e}, k),
                 "mwa_kx": ({"num_models": k, "num_episodes": 1}, k)}
    names = args.runs.split(",")
    if not set(names) <= set(available):
        raise ValueError(f"--runs takes a comma-separated subset of {sorted(available)}, got {args.runs!r}.")
    runs = len(names) * len(args.imbalance_ratios.split(",")) * len(args.seeds.split(","))
    if resuming and not asks_for_latest(args.resume_from_checkpoint) and runs > 1:
        raise ValueError(f"--resume_from_checkpoint PATH needs a single run (one ratio, seed and method), got {runs}; "
                         "pass True to continue every run from its own newest checkpoint.")
    results = []
    for ratio in [float(r) for r in args.imbalance_ratios.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            keep = long_tailed_indices(train_labels, ratio, args.head_class_size, seed)
            train = [{"input_ids": train_ids[i], "labels": int(train_labels[i])} for i in keep]
            counts = np.bincount(train_labels[keep], minlength=len(NCRNA_LABELS))
            logger.info(f"ratio {ratio:g} seed {seed}: {len(train)} training sequences, class sizes {sorted(counts)}")
            for method in names:
                settings, compute = available[method]
                metrics = run(args, f"ratio{ratio:g}_seed{seed}_{method}", train, test, len(NCRNA_LABELS), tokenizer,
                              seed, settings, compute)
                ema_name = "ema" if method == "plain" else f"{method}_ema"
                for name, key in ((method, "model"), (ema_name, "ema")):
                    results.append({"ratio": ratio, "seed": seed, "method": name, **metrics[key]})
                    logger.info(json.dumps(results[-1]))
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "imwa_results.json").write_text(json.dumps(results, indent=2))
    print(summary_table(results))
    finish_run(args.output_dir)


def summary_table(results: list[dict]) -> str:
    """Markdown table: mean ± std over seeds of each metric, per imbalance ratio and method."""
    lines = ["| imbalance ratio | method | seeds | balanced accuracy | macro-F1 |", "|---|---|---|---|---|"]
    methods = list(dict.fromkeys(r["method"] for r in results))
    for ratio in dict.fromkeys(r["ratio"] for r in results):
        for method in methods:
            rows = [r for r in results if r["ratio"] == ratio and r["method"] == method]
            cells = [f"{100 * np.mean([r[k] for r in rows]):.1f} ± {100 * np.std([r[k] for r in rows]):.1f}"
                     for k in ("balanced_accuracy", "macro_f1")]
            lines.append(f"| {ratio:g} | {method} | {len(rows)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
