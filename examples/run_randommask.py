"""Pretrain a BEACON-style encoder with RandomMask (expanding k-mer span masking) through `Trainer`.

Tiny defaults (2 layers, hidden 64, 6-mers, 128 bp chunks of the embedded human chr1 + lambda phage corpus,
300 steps) finish in a few minutes on 2 CPU cores:

    python examples/run_randommask.py
    accelerate launch examples/run_randommask.py --output_dir outputs/randommask
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        examples/run_randommask.py --use_cpu
    torchrun --nproc_per_node 2 examples/run_randommask.py --use_cpu

Other data: `--train_file` (FASTA/FASTA.gz, text with one sequence per line, Parquet with a `sequence`
column; repeatable), `--dataset_dir` (a Hub dataset folder, e.g. from dataset_scripts/build_pretraining_corpus.py
or build_rfam_corpus.py; sequences longer than --max_length are cut into windows), `--streaming` (iterate without
loading into memory; needs `--max_steps`, which drives the schedule).
The held-out loss (and, if the Hub corpus has a `test` split such as Rfam's held-out families, the test loss) is
measured before and after training with DNABERT's fixed masking (same masks both times), so it is comparable across
phases. Each is printed and saved in `randommask_results.json` next to its no-context floor, the lowest loss a
predictor without context reaches under the same masking (hf_genomics.metrics.mlm_floor); the training logs carry the
training corpus' floor too. Pass `--eval_strategy steps` for Trainer's own evaluation during training (under the
current phase's masking).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import IterableDataset, load_dataset
from torch.utils.data import DataLoader
from transformers import HfArgumentParser, Trainer
from utils_examples import FreshModelArguments, StepTrainingArguments, fresh_beacon_config, load_tokenizer

from hf_genomics import (
    BeaconForMaskedLM,
    DataCollatorForPacking,
    DataCollatorForRandomMask,
    RandomMaskCallback,
    RandomMaskSchedule,
    write_model_card,
)
from hf_genomics.corpus import default_corpus_files
from hf_genomics.data.pretraining_corpus import (
    build_pretraining_dataset,
    iterable_pretraining_dataset,
    split_long_sequences,
)
from hf_genomics.training.checkpoints import check_checkpoint_fits
from hf_genomics.training.run_folder import RunArguments, finish_run, prepare_run

logger = logging.getLogger(__name__)
# Training rows whose token frequencies give the training loss' no-context floor.
FLOOR_ROWS = 20_000


@dataclass
class ModelArguments(FreshModelArguments):
    tokenizer: str = field(
        default="kmer",
        metadata={"help": "kmer (KmerTokenizer with --k/--stride) or nucleotide (NucleotideTokenizer, BEACON-B's "
                  "single-nucleotide vocabulary; --k/--stride are ignored)."},
    )
    k: int = field(default=6, metadata={"help": "k-mer length of the KmerTokenizer."})
    stride: int = field(default=1, metadata={"help": "1: overlapping k-mers (DNABERT); k: non-overlapping."})
    position_embedding_type: str = field(default="alibi", metadata={"help": "alibi or absolute."})
    intermediate_size: int = field(default=128, metadata={"help": "Fresh model: feed-forward size."})


@dataclass
class DataArguments:
    train_file: list[str] | None = field(
        default=None,
        metadata={"help": "FASTA(.gz), text (one sequence per line) or Parquet files. Default: embedded corpus."},
    )
    dataset_dir: str | None = field(default=None, metadata={"help": "Hub-style dataset folder with train/validation."})
    streaming: bool = field(default=False, metadata={"help": "Stream the corpus (IterableDataset); needs --max_steps."})
    max_length: int = field(default=128, metadata={"help": "Longest chunk, in nucleotides."})
    min_length: int = field(default=16, metadata={"help": "Shortest chunk, in nucleotides."})
    full_length_fraction: float = field(default=0.5, metadata={"help": "Share of full-length chunks (DNABERT: 0.5)."})
    validation_fraction: float = field(default=0.02, metadata={"help": "Share of chunks held out for validation."})
    max_eval_samples: int = field(default=256, metadata={"help": "Held-out chunks used for the loss."})
    mlm_probability: float = field(default=0.025, metadata={"help": "Probability that a token is a span centre."})
    schedule: str = field(default="expanding", metadata={"help": "expanding (RandomMask) or fixed (DNABERT)."})
    boundaries: list[int] | None = field(
        default=None, metadata={"help": "Mask boundary m per phase (overrides schedule)."}
    )
    phase_lengths: list[float] | None = field(
        default=None, metadata={"help": "Relative phase lengths (default equal)."}
    )
    sample_boundary: bool = field(default=False, metadata={"help": "Draw m per centre uniformly up to the phase's m."})
    pack_sequences: bool = field(
        default=False,
        metadata={"help": "Pack a batch's chunks into one row without padding (DataCollatorForPacking; ALiBi only)."},
    )
    debug_rank_dump: str | None = field(
        default=None,
        metadata={"help": "Folder for per-rank JSON: hashes of the batches seen and of the final weights."},
    )


@dataclass
class RandomMaskTrainingArguments(StepTrainingArguments):
    output_dir: str | None = field(default="outputs/randommask")
    max_steps: int = field(default=300)
    per_device_train_batch_size: int = field(default=16)
    per_device_eval_batch_size: int = field(default=32)
    learning_rate: float = field(default=1e-3)
    warmup_steps: float = field(default=0.05)
    dataloader_num_workers: int = field(default=0)


def load_corpus(data_args: DataArguments, seed: int):
    """(train, validation, test) datasets with a `sequence` column; test is None unless a Hub corpus has one."""
    if data_args.dataset_dir is not None:
        if data_args.train_file:
            raise ValueError("Pass either --train_file or --dataset_dir, not both.")
        corpus = load_dataset(data_args.dataset_dir, streaming=data_args.streaming)
        missing = [split for split in ("train", "validation") if split not in corpus]
        if missing:
            raise ValueError(f"{data_args.dataset_dir} lacks the split(s) {missing}; it has {list(corpus)}.")
        # Hub corpora hold whole sequences (Rfam: up to 4 kb): cut long ones into windows rather than truncate them.
        cut = dict(batched=True, fn_kwargs={"max_length": data_args.max_length, "min_length": data_args.min_length})
        return tuple(corpus[split].map(split_long_sequences, **cut) if split in corpus else None
                     for split in ("train", "validation", "test"))
    paths = data_args.train_file or [str(path) for path in default_corpus_files("dna")]
    chunking = dict(
        max_length=data_args.max_length,
        min_length=data_args.min_length,
        full_length_fraction=data_args.full_length_fraction,
        validation_fraction=data_args.validation_fraction,
        seed=seed,
    )
    build = iterable_pretraining_dataset if data_args.streaming else build_pretraining_dataset
    return build(paths, split="train", **chunking), build(paths, split="validation", **chunking), None


def make_schedule(data_args: DataArguments, tokenizer) -> RandomMaskSchedule | str:
    if data_args.boundaries is None:
        if data_args.phase_lengths is not None or data_args.sample_boundary:
            return RandomMaskSchedule(
                DataCollatorForRandomMask(tokenizer, schedule=data_args.schedule).schedule.boundaries,
                phase_lengths=data_args.phase_lengths,
                sample_boundary=data_args.sample_boundary,
            )
        return data_args.schedule
    return RandomMaskSchedule(tuple(data_args.boundaries), data_args.phase_lengths, data_args.sample_boundary)


def first_rows(dataset, count: int):
    """The first `count` rows of a Dataset or IterableDataset."""
    if isinstance(dataset, IterableDataset):
        return dataset.take(count)
    return dataset.select(range(min(count, len(dataset))))


def reported(results: dict) -> list[str]:
    """The held-out (and test) losses before/after, their floors and margins, in that order."""
    return [key for split in ("heldout", "test") for key in (f"{split}_loss_before", f"{split}_loss_after",
            f"{split}_no_context_floor", f"{split}_loss_minus_floor") if key in results]


@torch.no_grad()
def heldout_loss(model, dataset, tokenizer, data_args: DataArguments, batch_size: int, seed: int) -> float:
    """Masked-token loss under DNABERT's fixed masking with a fresh, identically seeded collator, so calls
    before and after training score the same masks. Every process scores the whole (small) held-out set.

    Not `Trainer.evaluate`: called before `train()` in a multi-process run, it marks the model as prepared
    by accelerate, and `train()` then skips the DDP wrapping (ranks silently train apart).
    """
    fixed = DataCollatorForRandomMask(tokenizer, mlm_probability=data_args.mlm_probability, schedule="fixed", seed=seed)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=fixed):
        batch = {key: value.to(model.device) for key, value in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        losses = torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=-100, reduction="sum"
        )
        total, count = total + losses.item(), count + int((batch["labels"] != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


class BatchRecorder:
    """Hashes the uncorrupted ids of every training batch this process's model sees (for --debug_rank_dump)."""

    def __init__(self, model: torch.nn.Module):
        self.hashes: list[str] = []
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        if module.training and "labels" in kwargs:
            labels, input_ids = kwargs["labels"], kwargs["input_ids"]
            original = torch.where(labels != -100, labels, input_ids)
            self.hashes.append(hashlib.sha256(original.cpu().numpy().tobytes()).hexdigest())


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def training_summary(data_args: DataArguments, model_args: ModelArguments, training_args, collator) -> str:
    tokenizer = ("`NucleotideTokenizer` (single nucleotides)" if model_args.tokenizer == "nucleotide"
                 else f"`KmerTokenizer(k={model_args.k}, stride={model_args.stride})`")
    sources = data_args.dataset_dir or ", ".join(data_args.train_file or [p.name for p in default_corpus_files("dna")])
    schedule = collator.schedule
    return f"""A `BeaconForMaskedLM` ({model_args.num_hidden_layers} layers, hidden {model_args.hidden_size}, \
{model_args.position_embedding_type} positions) with {tokenizer}, \
pretrained with RandomMask (Liang et al., 2023, "Rethinking the BERT-like Pretraining for DNA Sequences") by \
hf_genomics' `examples/run_randommask.py`.

## Training data

{sources}: upper-cased (soft-masked repeats included), split at runs of N, cut DNABERT-style into chunks of \
{data_args.min_length}-{data_args.max_length} bp ({data_args.full_length_fraction:.0%} full length), \
{data_args.validation_fraction:.0%} of the chunks held out.

## Masking schedule

Span centres drawn with probability {collator.mlm_probability}; mask boundary m per phase \
{list(schedule.boundaries)} with relative phase lengths {list(schedule.phase_lengths)}\
{" (m drawn per centre up to the phase's boundary)" if schedule.sample_boundary else ""}; 80/10/10 corruption. \
{training_args.max_steps} steps, batch {training_args.per_device_train_batch_size} per device, learning rate \
{training_args.learning_rate}. The held-out loss below uses DNABERT's fixed masking (m = {collator.min_span})."""


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ModelArguments, DataArguments, RandomMaskTrainingArguments, RunArguments))
    model_args, data_args, training_args, run_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    checkpoint = prepare_run(training_args.output_dir, training_args.resume_from_checkpoint,
                             run_args.overwrite_output_dir)
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps > 0: the schedule's phases are fractions of max_steps.")

    tokenizer = load_tokenizer(None, model_args.tokenizer, model_args.k, model_args.stride)
    train_dataset, eval_dataset, test_dataset = load_corpus(data_args, training_args.seed)
    model_max_tokens = data_args.max_length + 2  # framing; k-mers never outnumber nucleotides

    def tokenize(batch):
        return tokenizer(batch["sequence"], truncation=True, max_length=model_max_tokens)

    columns = list(train_dataset.column_names or ["sequence", "source"])
    with training_args.main_process_first(desc="tokenizing"):
        train_dataset = train_dataset.map(tokenize, batched=True, remove_columns=columns)
        eval_dataset, test_dataset = (
            None if split is None else first_rows(split.map(tokenize, batched=True, remove_columns=columns),
                                                  data_args.max_eval_samples)
            for split in (eval_dataset, test_dataset)
        )

    if data_args.pack_sequences and model_args.position_embedding_type != "alibi":
        raise ValueError("--pack_sequences needs --position_embedding_type alibi (packed rows rely on ALiBi).")
    config = fresh_beacon_config(
        tokenizer, model_args, position_embedding_type=model_args.position_embedding_type,
        max_position_embeddings=model_max_tokens if model_args.position_embedding_type == "absolute" else None,
    )
    torch.manual_seed(training_args.seed)
    model = BeaconForMaskedLM(config)

    collator = DataCollatorForRandomMask(
        tokenizer,
        mlm_probability=data_args.mlm_probability,
        schedule=make_schedule(data_args, tokenizer),
        seed=training_args.seed,
    )
    if data_args.streaming:
        # Let accelerate shard the stream per process instead of reading everything on rank 0 and sending it.
        training_args.accelerator_config.dispatch_batches = False
    # The no-context floor of each split's loss (module docstring of hf_genomics.metrics.mlm_floor; it does not
    # depend on the span schedule): the training loss is logged next to the training corpus' floor, the held-out
    # loss next to the held-out set's.
    scored = {"heldout": eval_dataset, **({"test": test_dataset} if test_dataset is not None else {})}
    floors = {"train_no_context_floor": collator.no_context_floor(
        row["input_ids"] for row in first_rows(train_dataset, FLOOR_ROWS))}
    floors.update({f"{name}_no_context_floor": collator.no_context_floor(row["input_ids"] for row in dataset)
                   for name, dataset in scored.items()})
    callback = RandomMaskCallback(collator, no_context_floor=floors["train_no_context_floor"])
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DataCollatorForPacking(collator) if data_args.pack_sequences else collator,
        processing_class=tokenizer,
    )
    # First, so reporting integrations (report_to) also record the masking metrics.
    trainer.callback_handler.callbacks.insert(0, callback)
    recorder = BatchRecorder(model) if data_args.debug_rank_dump else None

    def score(when: str) -> dict:
        # In the run's precision both times: accelerate autocasts model.forward (--bf16/--fp16) only from train() on.
        with trainer.accelerator.autocast():
            return {f"{name}_loss_{when}": heldout_loss(model, dataset, tokenizer, data_args,
                                                        training_args.per_device_eval_batch_size, 1234)
                    for name, dataset in scored.items()}

    results = {**score("before"), **floors}
    check_checkpoint_fits(trainer, checkpoint)
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    results.update(score("after"))
    for name in scored:
        results[f"{name}_loss_minus_floor"] = results[f"{name}_loss_after"] - floors[f"{name}_no_context_floor"]
    results["train_loss"] = train_output.training_loss
    results["schedule"] = {
        "boundaries": list(collator.schedule.boundaries),
        "phase_lengths": list(collator.schedule.phase_lengths),
    }
    results["masking_log"] = [
        {key: entry[key] for key in entry if key == "step" or key.startswith("randommask_")}
        for entry in trainer.state.log_history
        if "randommask_phase" in entry
    ]
    for name in scored:
        logger.info("%s loss %.4f -> %.4f (no-context floor %.4f: %+.4f)", name, results[f"{name}_loss_before"],
                    results[f"{name}_loss_after"], floors[f"{name}_no_context_floor"],
                    results[f"{name}_loss_minus_floor"])

    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json: the loss and masking curves for reports
    if trainer.is_world_process_zero():
        write_model_card(
            training_args.output_dir,
            model_name=Path(training_args.output_dir).name,
            tags=["dna", "randommask", "masked-language-modeling"],
            training_summary=training_summary(data_args, model_args, training_args, collator),
            metrics={key: round(results[key], 4) for key in reported(results)},
        )
        (Path(training_args.output_dir) / "randommask_results.json").write_text(json.dumps(results, indent=2))
    if recorder is not None:
        rank = training_args.process_index
        dump = {
            "rank": rank,
            "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
            "batch_hashes": recorder.hashes,
            "weights_hash": weights_hash(trainer.model),
            "collator_statistics": collator.statistics(),
            **results,
        }
        Path(data_args.debug_rank_dump).mkdir(parents=True, exist_ok=True)
        (Path(data_args.debug_rank_dump) / f"rank{rank}.json").write_text(json.dumps(dump, indent=2))
    print(json.dumps({key: results[key] for key in (*reported(results), "train_loss", "train_no_context_floor")}))
    finish_run(training_args.output_dir)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
