"""Fine-tune a sequence classifier on a GUE task (`train.csv`, `dev.csv`, `test.csv` with `sequence,label`) and
print the test Matthews correlation (MCC), GUE's metric.

    python examples/run_gue.py --task_dir data/gue/prom/prom_core_tata --model_name_or_path runs/sd/teacher \\
        --output_dir runs/gue_prom_core_tata

Works for every GUE task folder (prom, tf, mouse, EMP, splice, ...). Without `--model_name_or_path` a fresh
BEACON-style model is trained from scratch (single-nucleotide tokens). The best dev-MCC model is saved Hub-ready in
`<output_dir>`; the test metrics go to stdout and `<output_dir>/gue_results.json`.
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import load_dataset
from sklearn.metrics import matthews_corrcoef
from transformers import DataCollatorWithPadding, HfArgumentParser, Trainer, set_seed
from utils_examples import EpochTrainingArguments, FreshModelArguments, fresh_beacon_config, load_tokenizer

from hf_genomics import BeaconForSequenceClassification, check_tokenizer_matches_model
from hf_genomics.training.checkpoints import check_checkpoint_fits
from hf_genomics.training.run_folder import RunArguments, finish_run, prepare_run

logger = logging.getLogger(__name__)


@dataclass
class GUEArguments(FreshModelArguments):
    task_dir: str = field(default="data/gue/prom/prom_core_tata", metadata={"help": "Folder with train/dev/test.csv."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Pretrained BEACON folder (e.g. a self-distillation teacher); omit: from scratch."},
    )
    max_length: int = field(default=512, metadata={"help": "Tokens incl. specials; longer inputs are truncated."})
    max_train_samples: int | None = field(default=None)


@dataclass
class GUETrainingArguments(EpochTrainingArguments):
    output_dir: str = field(default="runs/gue")
    per_device_train_batch_size: int = field(default=32)
    per_device_eval_batch_size: int = field(default=64)
    metric_for_best_model: str = field(default="mcc")


def compute_metrics(prediction) -> dict[str, float]:
    predicted = np.argmax(prediction.predictions, axis=-1)
    return {
        "mcc": float(matthews_corrcoef(prediction.label_ids, predicted)),
        "accuracy": float((predicted == prediction.label_ids).mean()),
    }


def main() -> None:
    parser = HfArgumentParser((GUEArguments, GUETrainingArguments, RunArguments))
    gue_args, training_args, run_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING, stream=sys.stdout)
    checkpoint = prepare_run(training_args.output_dir, training_args.resume_from_checkpoint,
                             run_args.overwrite_output_dir)
    set_seed(training_args.seed)

    task_dir = Path(gue_args.task_dir)
    files = {split: str(task_dir / f"{split}.csv") for split in ("train", "dev", "test")}
    missing = [path for path in files.values() if not Path(path).is_file()]
    if missing:
        raise ValueError(f"{task_dir} is not a GUE task folder: missing {missing} (need train/dev/test.csv).")
    raw = load_dataset("csv", data_files=files)
    if gue_args.max_train_samples is not None:
        raw["train"] = raw["train"].shuffle(seed=training_args.seed).select(range(gue_args.max_train_samples))
    num_labels = len(set(raw["train"]["label"]))

    tokenizer = load_tokenizer(gue_args.model_name_or_path)
    if gue_args.model_name_or_path:
        model = BeaconForSequenceClassification.from_pretrained(gue_args.model_name_or_path, num_labels=num_labels)
        check_tokenizer_matches_model(tokenizer, model, allow_mismatch=run_args.allow_tokenizer_mismatch)
    else:
        model = BeaconForSequenceClassification(fresh_beacon_config(tokenizer, gue_args, num_labels=num_labels))

    def tokenize(rows):
        return tokenizer(rows["sequence"], truncation=True, max_length=gue_args.max_length)

    encoded = raw.map(tokenize, batched=True, remove_columns=["sequence"]).rename_column("label", "labels")
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["dev"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    check_checkpoint_fits(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.save_state()
    metrics = trainer.evaluate(encoded["test"], metric_key_prefix="test")
    trainer.log_metrics("test", metrics)
    if training_args.should_save:
        Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(training_args.output_dir) / "gue_results.json", "w") as handle:
            json.dump({"task_dir": str(task_dir), "model": gue_args.model_name_or_path, **metrics}, handle, indent=2)
    print(f"test MCC: {metrics['test_mcc']:.4f}")
    finish_run(training_args.output_dir)


if __name__ == "__main__":
    main()
