"""Semi-supervised fine-tuning with few labels: supervised-only, FixMatch or LayerMatch on a GUE task, reporting
test accuracy and MCC.

    python examples/run_layermatch.py --mode layermatch --num_labeled 40 --output_dir runs/layermatch_40
    python examples/run_layermatch.py --mode fixmatch --num_labeled 200 --model_type baseline_cnn
    python examples/run_layermatch.py --mode layermatch --model_name_or_path runs/sd/teacher

`--num_labeled` sequences of the task's train split (seeded, class-balanced) keep their labels; the rest of train is
the unlabeled set (its labels only feed the logged pseudo-label accuracy). Without `--model_name_or_path` a small
model is trained from scratch with single-nucleotide tokens: BEACON's CNN baseline (`--model_type baseline_cnn`, the
default, so that the defaults finish in minutes on a laptop CPU) or a small BEACON-style transformer
(`--model_type beacon`, about 6 CPU-seconds per step at 300 nt and mu=7, so give it a GPU or fewer steps).
The test metrics of the model and of its EMA teacher (`test_accuracy`, `test_ema_accuracy`, ...) are printed and
written to `<output_dir>/layermatch_results.json`; the final model is saved Hub-ready in `<output_dir>`.

The strong view reverse-complements with probability 0 on strand-specific GUE tasks (promoters, splice sites: see
`hf_genomics.GUE_TASKS`) and on folders that are no GUE task, 0.5 on the others (TF binding, histone marks);
`--reverse_complement_prob` overrides it. The script prints which one it uses.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import load_dataset
from transformers import AutoModelForSequenceClassification, HfArgumentParser, set_seed
from utils_examples import StepTrainingArguments, balanced_subset, fresh_beacon_config, load_tokenizer

from hf_genomics import (
    BeaconForSequenceClassification,
    LayerMatchTrainer,
    check_tokenizer_matches_model,
    find_gue_task,
    reverse_complement_probability,
)
from hf_genomics.metrics import accuracy, matthews_correlation
from hf_genomics.models.baselines import BaselineConfig, BaselineForSequenceClassification
from hf_genomics.training.checkpoints import check_checkpoint_fits
from hf_genomics.training.run_folder import RunArguments, finish_run, prepare_run
from hf_genomics.training.trainer_layermatch import AVG_CLUSTERING_SOURCES, MODES, default_views

logger = logging.getLogger(__name__)
MODEL_TYPES = ("beacon", "baseline_cnn")


@dataclass
class LayerMatchExampleArguments:
    task_dir: str = field(default="data/gue/prom/prom_300_tata", metadata={"help": "Folder with train/test.csv."})
    num_labeled: int = field(default=40, metadata={"help": "Labeled train sequences (class-balanced, seeded)."})
    max_unlabeled: int | None = field(default=None, metadata={"help": "Cap on unlabeled sequences (default: all)."})
    max_test_samples: int | None = field(default=None)
    max_length: int = field(default=302, metadata={"help": "Tokens incl. <cls>/<eos>; longer inputs are truncated."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained classifier folder; omit to train from scratch."}
    )
    model_type: str = field(default="baseline_cnn", metadata={"help": f"From scratch: one of {MODEL_TYPES}."})
    hidden_size: int = field(default=64, metadata={"help": "From scratch: hidden size / CNN channels."})
    num_hidden_layers: int = field(default=2, metadata={"help": "From scratch: transformer or conv layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "From scratch (beacon): attention heads."})
    intermediate_size: int = field(default=128, metadata={"help": "From scratch (beacon): feed-forward size."})
    mode: str = field(default="layermatch", metadata={"help": f"One of {MODES}."})
    mu: int = field(default=7, metadata={"help": "Unlabeled sequences per labeled one in a step."})
    threshold: float = field(default=0.95, metadata={"help": "Pseudo-label confidence threshold tau."})
    lambda_u: float = field(default=1.0, metadata={"help": "Weight of the unlabeled loss."})
    grad_relu: bool = field(default=True, metadata={"help": "LayerMatch: keep L_u out of the linear classifier."})
    avg_clustering: bool = field(default=True, metadata={"help": "LayerMatch: averaged pseudo-label source."})
    avg_clustering_source: str = field(default="ema_teacher", metadata={"help": f"One of {AVG_CLUSTERING_SOURCES}."})
    teacher_momentum: float = field(default=0.99, metadata={"help": "EMA momentum of the teacher."})
    reverse_complement_prob: float | None = field(
        default=None,
        metadata={"help": "Strong view: reverse-complement probability (default: 0 for strand-specific tasks, 0.5 "
                  "for the others)."},
    )
    ema_warmup: bool = field(
        default=True, metadata={"help": "Teacher momentum min(teacher_momentum, (1+t)/(10+t)) at update t."}
    )


@dataclass
class LayerMatchTrainingArguments(StepTrainingArguments):
    output_dir: str = field(default="runs/layermatch")
    learning_rate: float = field(default=1e-3)
    per_device_train_batch_size: int = field(default=8)
    per_device_eval_batch_size: int = field(default=64)
    seed: int = field(default=42)


def compute_metrics(prediction) -> dict[str, float]:
    predicted = prediction.predictions.argmax(-1)
    return {"accuracy": accuracy(predicted, prediction.label_ids),
            "mcc": matthews_correlation(predicted, prediction.label_ids)}


def strong_view_reverse_complement(args: LayerMatchExampleArguments) -> tuple[float, str]:
    """The strong view's reverse-complement probability and why."""
    task = find_gue_task(args.task_dir)
    if args.reverse_complement_prob is not None:
        reason = "--reverse_complement_prob"
    elif task is None:
        reason = f"{args.task_dir} is no GUE task: taken as strand-specific"
    else:
        reason = f"GUE {task.folder} is {'' if task.strand_specific else 'not '}strand-specific: {task.strand_reason}"
    strand_specific = task is None or task.strand_specific
    return reverse_complement_probability(strand_specific, args.reverse_complement_prob), reason


def build_model_and_tokenizer(args: LayerMatchExampleArguments, num_labels: int, allow_tokenizer_mismatch: bool):
    tokenizer = load_tokenizer(args.model_name_or_path)
    if args.model_name_or_path is not None:
        model = AutoModelForSequenceClassification.from_pretrained(args.model_name_or_path, num_labels=num_labels)
        check_tokenizer_matches_model(tokenizer, model, allow_mismatch=allow_tokenizer_mismatch)
        return model, tokenizer
    if args.model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {args.model_type!r}.")
    if args.model_type == "beacon":
        return BeaconForSequenceClassification(fresh_beacon_config(tokenizer, args, num_labels=num_labels)), tokenizer
    config = BaselineConfig(
        architecture="cnn", vocab_size=len(tokenizer), hidden_size=args.hidden_size,
        num_layers=args.num_hidden_layers, pad_token_id=tokenizer.pad_token_id, num_labels=num_labels,
    )
    return BaselineForSequenceClassification(config), tokenizer


def main():
    parser = HfArgumentParser((LayerMatchExampleArguments, LayerMatchTrainingArguments, RunArguments))
    args, training_args, run_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO)
    checkpoint = prepare_run(training_args.output_dir, training_args.resume_from_checkpoint,
                             run_args.overwrite_output_dir)
    set_seed(training_args.seed)

    task_dir = Path(args.task_dir)
    raw = load_dataset("csv", data_files={split: str(task_dir / f"{split}.csv") for split in ("train", "test")})
    labels = np.asarray(raw["train"]["label"])
    num_labels = len(np.unique(labels))
    model, tokenizer = build_model_and_tokenizer(args, num_labels, run_args.allow_tokenizer_mismatch)

    def tokenize(batch):
        return tokenizer(batch["sequence"], truncation=True, max_length=args.max_length)

    data = raw.map(tokenize, batched=True, remove_columns=["sequence"]).rename_column("label", "labels")
    labeled_idx = balanced_subset(labels, args.num_labeled, training_args.seed)
    unlabeled_idx = np.setdiff1d(np.arange(len(labels)), labeled_idx)
    if args.max_unlabeled is not None:
        unlabeled_idx = np.random.default_rng(training_args.seed).permutation(unlabeled_idx)[: args.max_unlabeled]
    train, unlabeled = data["train"].select(labeled_idx), data["train"].select(unlabeled_idx)
    test = data["test"]
    if args.max_test_samples is not None:
        test = test.select(range(min(args.max_test_samples, len(test))))

    reverse_complement_prob, source = strong_view_reverse_complement(args)
    print(f"strong view: reverse complement with p = {reverse_complement_prob:g} ({source})")
    weak_view, strong_view = default_views(tokenizer, reverse_complement_prob)
    layermatch = args.mode == "layermatch"
    trainer = LayerMatchTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        unlabeled_dataset=unlabeled if args.mode != "supervised" else None,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        weak_augment=weak_view,
        strong_augment=strong_view,
        mode=args.mode,
        mu=args.mu,
        threshold=args.threshold,
        lambda_u=args.lambda_u,
        grad_relu=args.grad_relu if layermatch else None,
        avg_clustering=args.avg_clustering if layermatch else None,
        avg_clustering_source=args.avg_clustering_source,
        teacher_momentum_base=args.teacher_momentum,
        ema_warmup=args.ema_warmup,
        allow_tokenizer_mismatch=run_args.allow_tokenizer_mismatch,
    )
    check_checkpoint_fits(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.save_state()

    metrics = trainer.evaluate(test, metric_key_prefix="test")
    results = {
        "mode": args.mode,
        "grad_relu": trainer.grad_relu,
        "avg_clustering": trainer.avg_clustering,
        "num_labeled": len(train),
        "num_unlabeled": len(unlabeled) if args.mode != "supervised" else 0,
        "model": args.model_name_or_path or args.model_type,
        "seed": training_args.seed,
        "max_steps": training_args.max_steps,
        "reverse_complement_prob": reverse_complement_prob,
        **{key: metrics[key] for key in ("test_accuracy", "test_mcc", "test_ema_accuracy", "test_ema_mcc")},
        "train_log": trainer.state.log_history,
        "arguments": asdict(args),
    }
    print(f"test accuracy {metrics['test_accuracy']:.4f}  test MCC {metrics['test_mcc']:.4f}  (EMA teacher: "
          f"accuracy {metrics['test_ema_accuracy']:.4f}, MCC {metrics['test_ema_mcc']:.4f})")
    Path(training_args.output_dir, "layermatch_results.json").write_text(json.dumps(results, indent=2))
    finish_run(training_args.output_dir)


if __name__ == "__main__":
    main()
