"""Self-distillation pretraining (student MLM + EMA teacher + DINO-style distillation) of a BEACON-style model.

    python examples/run_self_distillation.py --output_dir runs/self_distillation
    torchrun --nproc_per_node 2 examples/run_self_distillation.py --output_dir runs/sd --use_cpu
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        examples/run_self_distillation.py --output_dir runs/sd --use_cpu

By default it pretrains on the embedded real DNA corpus (`data/`: first 3 Mb of human chr1 + lambda phage), cut
into N-free windows; `--corpus rna` takes the embedded RNAcentral sample instead. `--train_files` takes your own
FASTA/text/Parquet files (say `--corpus rna` when they are RNA), `--tokenizer kmer --k 6 --stride 1` switches to
overlapping 6-mers. `--distillation_weight 0` trains the same student MLM-only (same views, same compute) for
comparison. Writes `<output_dir>/student` and `<output_dir>/teacher`, both Hub-ready `BeaconForMaskedLM` folders;
FinDNA fine-tunes the teacher (with mean pooling, as distilled: `run_beacon.py --classifier_pooling mean`).

The student view reverse-complements with probability 0.5 on a DNA corpus (a genome: either strand is DNA that
occurs) and 0 on an RNA corpus (`--corpus rna`, or a tokenizer of ACGU letters: RNA is single-stranded, its
reverse complement is another molecule); `--reverse_complement_prob` overrides it. The script prints which one it
uses.
"""

import logging
import sys
from dataclasses import dataclass, field

from transformers import DataCollatorWithPadding, HfArgumentParser, set_seed
from utils_examples import FreshModelArguments, StepTrainingArguments, fresh_beacon_config, load_tokenizer

from hf_genomics import BeaconForMaskedLM, default_corpus_files
from hf_genomics.data.augment import nucleotide_letters, reverse_complement_probability
from hf_genomics.data.pretraining_corpus import build_pretraining_dataset
from hf_genomics.training.checkpoints import check_checkpoint_fits
from hf_genomics.training.run_folder import RunArguments, finish_run, prepare_run
from hf_genomics.training.trainer_self_distillation import SelfDistillationTrainer, default_views

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments(FreshModelArguments):
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Masked-LM folder to continue from; omit for a fresh model sized by the flags."},
    )
    tokenizer: str = field(default="nucleotide", metadata={"help": "Fresh model: 'nucleotide' or 'kmer'."})
    k: int = field(default=6, metadata={"help": "k of the k-mer tokenizer."})
    stride: int = field(default=1, metadata={"help": "k-mer stride: 1 (overlapping) or k (non-overlapping)."})
    dropout: float = field(default=0.1)


@dataclass
class DataArguments:
    train_files: list[str] | None = field(
        default=None, metadata={"help": "Sequence files (FASTA/text/Parquet); default: the embedded --corpus."}
    )
    corpus: str = field(
        default="dna",
        metadata={"help": "'dna' (double-stranded genome) or 'rna' (single-stranded molecules).",
                  "choices": ["dna", "rna"]},
    )
    window_length: int = field(default=128, metadata={"help": "Longest pretraining window, in nucleotides."})
    min_window_length: int = field(default=32, metadata={"help": "Shortest window, in nucleotides."})
    max_train_samples: int | None = field(default=4000, metadata={"help": "Keep this many windows (CPU-sized)."})
    validation_fraction: float = field(default=0.02)


@dataclass
class DistillationArguments:
    distillation_weight: float = field(default=1.0, metadata={"help": "Weight of the distillation loss (0: MLM only)."})
    projection_dim: int = field(default=256, metadata={"help": "Output dimension of the DINO projection head."})
    pooling: str = field(
        default="mean",
        metadata={"help": "'mean' or 'cls' pooling of the last hidden state ([CLS] barely varies: collapse)."},
    )
    student_temperature: float = field(default=0.1)
    teacher_temperature: float = field(default=0.04)
    center_momentum: float = field(default=0.9)
    teacher_momentum_base: float = field(
        default=0.9,
        metadata={
            "help": "Start of the cosine schedule to 1. The paper's 0.996 suits ~100k steps: over 200 steps the "
            "teacher would stay ~2/3 its random init."
        },
    )
    mlm_probability: float = field(default=0.15)
    mutation_rate: float = field(default=0.01, metadata={"help": "Student view: point mutations per base."})
    reverse_complement_prob: float | None = field(
        default=None,
        metadata={"help": "Student view: reverse-complement probability (default: 0.5 on DNA, 0 on RNA)."},
    )
    max_shift: int = field(default=20, metadata={"help": "Teacher view: largest circular shift, in tokens."})


@dataclass
class SelfDistillationTrainingArguments(StepTrainingArguments):
    output_dir: str = field(default="runs/self_distillation")
    per_device_train_batch_size: int = field(default=32)
    per_device_eval_batch_size: int = field(default=32)
    learning_rate: float = field(default=5e-4)
    eval_strategy: str = field(default="steps")
    eval_steps: int = field(default=100)


def build_model(model_args: ModelArguments, tokenizer) -> BeaconForMaskedLM:
    if model_args.model_name_or_path:
        return BeaconForMaskedLM.from_pretrained(model_args.model_name_or_path)
    return BeaconForMaskedLM(fresh_beacon_config(tokenizer, model_args, dropout=model_args.dropout))


def load_windows(data_args: DataArguments, tokenizer, seed: int):
    files = data_args.train_files or [str(path) for path in default_corpus_files(data_args.corpus)]
    chunking = {
        "max_length": data_args.window_length,
        "min_length": data_args.min_window_length,
        "validation_fraction": data_args.validation_fraction,
        "seed": seed,
    }
    splits = {split: build_pretraining_dataset(files, split=split, **chunking) for split in ("train", "validation")}
    train = splits["train"].shuffle(seed=seed)
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    validation = splits["validation"].select(range(min(128, len(splits["validation"]))))

    def tokenize(rows):
        return tokenizer(rows["sequence"], truncation=True, max_length=data_args.window_length + 2)

    return [part.map(tokenize, batched=True, remove_columns=part.column_names) for part in (train, validation)]


def student_view_reverse_complement(data_args: DataArguments, sd_args: DistillationArguments, tokenizer):
    """The student view's reverse-complement probability and why."""
    rna = data_args.corpus == "rna" or "U" in nucleotide_letters(tokenizer)
    if sd_args.reverse_complement_prob is not None:
        reason = "--reverse_complement_prob"
    elif rna:
        reason = "RNA corpus: single-stranded, its reverse complement is another molecule"
    else:
        reason = "DNA corpus: double-stranded, both strands occur"
    return reverse_complement_probability(rna, sd_args.reverse_complement_prob), reason


def main() -> None:
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, DistillationArguments, SelfDistillationTrainingArguments, RunArguments)
    )
    model_args, data_args, sd_args, training_args, run_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING, stream=sys.stdout)
    checkpoint = prepare_run(training_args.output_dir, training_args.resume_from_checkpoint,
                             run_args.overwrite_output_dir)
    set_seed(training_args.seed)

    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.tokenizer, model_args.k, model_args.stride)
    model = build_model(model_args, tokenizer)
    with training_args.main_process_first(desc="cut and tokenize the corpus"):
        train_dataset, eval_dataset = load_windows(data_args, tokenizer, training_args.seed)
    reverse_complement_prob, reason = student_view_reverse_complement(data_args, sd_args, tokenizer)
    print(f"student view: reverse complement with p = {reverse_complement_prob:g} ({reason})")
    student_view, teacher_view = default_views(
        tokenizer, sd_args.mlm_probability, sd_args.mutation_rate, reverse_complement_prob, sd_args.max_shift
    )
    trainer = SelfDistillationTrainer(
        model,
        training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if training_args.eval_strategy != "no" else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        student_augment=student_view,
        teacher_augment=teacher_view,
        projection_dim=sd_args.projection_dim,
        pooling=sd_args.pooling,
        distillation_weight=sd_args.distillation_weight,
        student_temperature=sd_args.student_temperature,
        teacher_temperature=sd_args.teacher_temperature,
        center_momentum=sd_args.center_momentum,
        teacher_momentum_base=sd_args.teacher_momentum_base,
        allow_tokenizer_mismatch=run_args.allow_tokenizer_mismatch,
    )
    logger.info("%d training windows, world size %d", len(train_dataset), training_args.world_size)
    check_checkpoint_fits(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(f"{training_args.output_dir}/student")
    trainer.save_model(f"{training_args.output_dir}/teacher", teacher=True)
    trainer.save_state()
    finish_run(training_args.output_dir)


if __name__ == "__main__":
    main()
