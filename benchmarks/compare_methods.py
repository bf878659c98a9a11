"""Compare hf_genomics' methods under one protocol on real data, and record the tables in results.md.

    python benchmarks/compare_methods.py                        # full run (<= 45 min on 2 idle CPU cores)
    python benchmarks/compare_methods.py --quick --output /tmp/results.md   # smoke test (<= 90 s)
    python benchmarks/compare_methods.py --sections position,imbalance

Sections (all on the real data shipped in ``data/``):

- ``pretraining``: DNABERT's fixed k-mer masking vs RandomMask vs self-distillation, each pretraining the same
  tiny BEACON encoder (overlapping 6-mers) on the embedded human chr1 + lambda corpus, then fine-tuned on two GUE
  tasks (test MCC); a from-scratch row and BEACON's naive baselines (CNN, ResNet, BiLSTM) for reference.
- ``position``: ALiBi vs learned absolute positions, pretrained on 128-token windows, masked-LM loss on held-out
  chr1 DNA (never seen in pretraining) in windows of 128, 512 and 2,048 tokens.
- ``tokenization``: single nucleotide vs overlapping vs non-overlapping 6-mers (each pretrained with its
  standard masking of ~15% of tokens) on one GUE task.
- ``semi_supervised``: supervised vs FixMatch vs LayerMatch (``LayerMatchTrainer``) at two label budgets.
- ``imbalance``: plain vs EMA vs IMWA vs IMWA+EMA (``IMWACallback``) on the nRC ncRNA families subsampled to a
  long-tailed training set (imbalance ratio 100), balanced test set: balanced accuracy and macro-F1.

Every training run goes through :func:`Workbench.train` (one ``Trainer`` recipe: AdamW, 10% linear warm-up then
linear decay, fixed steps and batch size per section, seeds ``0..n-1``); every row is the mean and sample
standard deviation over seeds. Pretrained encoders are trained once (seed 0) and shared by the sections that
use them; the fine-tuning seeds vary the head initialisation, dropout and data order. The script rewrites only
the part of ``results.md`` between ``<!-- methods:start -->`` and ``<!-- methods:end -->`` (``run_all.py``
owns the performance part) and writes every run to ``results_methods.json``, after each section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import DataCollatorWithPadding, EvalPrediction, Trainer, TrainingArguments, set_seed
from transformers.utils import logging as transformers_logging

from hf_genomics import (
    BaselineConfig,
    BaselineForSequenceClassification,
    BeaconConfig,
    BeaconForMaskedLM,
    BeaconForSequenceClassification,
    DataCollatorForRandomMask,
    IMWACallback,
    KmerTokenizer,
    LayerMatchTrainer,
    NucleotideTokenizer,
    RandomMaskCallback,
    class_balanced_metrics,
    default_corpus_files,
    long_tailed_indices,
    read_fasta,
    read_nrc,
)
from hf_genomics.data.beacon import NCRNA_LABELS
from hf_genomics.data.pretraining_corpus import build_pretraining_dataset
from hf_genomics.metrics import matthews_correlation
from hf_genomics.training.trainer_self_distillation import SelfDistillationTrainer
from hf_genomics.training.trainer_teacher import cosine_momentum

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from run_all import machine_info, replace_section  # noqa: E402


START, END = "<!-- methods:start -->", "<!-- methods:end -->"
SECTIONS = ("pretraining", "position", "tokenization", "semi_supervised", "imbalance")  # order in results.md
# Order of execution: cheapest first, so a run cut short still reports most sections; the single-nucleotide
# encoder pretrained first (position, seed 0) is reused by the three sections after it.
EXECUTION_ORDER = ("position", "semi_supervised", "imbalance", "tokenization", "pretraining")
GUE = REPO / "data" / "gue"
NRC = REPO / "data" / "nrc_ncrna"
# Fraction of tokens a masked-LM objective hides (BERT/DNABERT): DNABERT's 2.5% centres x 6-token spans.
MASKED_TOKEN_FRACTION = 0.15
BASELINES = ("cnn", "resnet", "bilstm")
BASELINE_NAMES = {"cnn": "CNN", "resnet": "ResNet", "bilstm": "BiLSTM"}
OBJECTIVE_NAMES = {
    "fixed": "DNABERT fixed masking",
    "randommask": "RandomMask",
    "self_distillation": "self-distillation",
    None: "none (from scratch)",
}
TOKENIZER_NAMES = {
    "nucleotide": "single nucleotide",
    "6mer": "overlapping 6-mer",
    "6mer_nonoverlapping": "non-overlapping 6-mer",
}


@dataclass(frozen=True)
class Budget:
    """Sizes of every run; ``FULL`` fits 45 minutes on 2 idle cores, ``QUICK`` 90 seconds."""

    seeds: tuple[int, ...]
    # Tiny BEACON encoder shared by every transformer row.
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    # BEACON's naive baselines (BEACON CNN: embedding 64, 3 x Conv1d(128, k=9)).
    baseline_embedding: int
    baseline_hidden: int
    # Pretraining on chr1 + lambda: windows of <= chunk_bp bases (128 single-nucleotide tokens with framing).
    chunk_bp: int
    pretrain_steps: int
    pretrain_batch: int
    pretrain_lr: float
    heldout_bp: int  # chr1 tail kept out of pretraining
    eval_bases: int  # bases of held-out DNA scored at each evaluation length
    eval_lengths: tuple[int, ...]
    # Fine-tuning (GUE tasks).
    finetune_steps: int
    finetune_batch: int
    transformer_lr: float
    baseline_lr: float
    max_train: int | None  # None: the whole training split
    max_test: int | None
    pretraining_tasks: tuple[str, ...]
    tokenization_task: str
    # Semi-supervised.
    ssl_task: str
    label_budgets: tuple[int, ...]
    ssl_steps: int
    ssl_batch: int
    ssl_mu: int
    max_unlabeled: int | None
    # Class imbalance (nRC).
    imbalance_ratio: float
    head_class_size: int
    imbalance_steps: int
    imbalance_batch: int
    imbalance_max_length: int
    imwa_models: int
    imwa_episodes: int
    ema_decay: float
    max_test_per_class: int | None


FULL = Budget(
    seeds=(0, 1, 2),
    hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512,
    baseline_embedding=64, baseline_hidden=128,
    chunk_bp=126, pretrain_steps=200, pretrain_batch=16, pretrain_lr=1e-3,
    heldout_bp=200_000, eval_bases=16 * 2046, eval_lengths=(128, 512, 2048),
    finetune_steps=60, finetune_batch=32, transformer_lr=1e-3, baseline_lr=2e-3, max_train=None, max_test=None,
    pretraining_tasks=("prom/prom_core_tata", "mouse/0"), tokenization_task="prom/prom_core_tata",
    ssl_task="prom/prom_core_tata", label_budgets=(40, 200), ssl_steps=60, ssl_batch=8, ssl_mu=4, max_unlabeled=None,
    imbalance_ratio=100.0, head_class_size=500, imbalance_steps=150, imbalance_batch=32, imbalance_max_length=200,
    imwa_models=2, imwa_episodes=10, ema_decay=0.95, max_test_per_class=None,
)  # fmt: skip

QUICK = Budget(
    seeds=(0,),
    hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
    baseline_embedding=16, baseline_hidden=16,
    chunk_bp=126, pretrain_steps=4, pretrain_batch=8, pretrain_lr=1e-3,
    heldout_bp=20_000, eval_bases=2 * 2046, eval_lengths=(128, 512, 2048),
    finetune_steps=4, finetune_batch=16, transformer_lr=5e-4, baseline_lr=2e-3, max_train=64, max_test=64,
    pretraining_tasks=("prom/prom_core_tata", "mouse/0"), tokenization_task="prom/prom_core_tata",
    ssl_task="prom/prom_core_tata", label_budgets=(8, 16), ssl_steps=4, ssl_batch=4, ssl_mu=2, max_unlabeled=64,
    imbalance_ratio=100.0, head_class_size=20, imbalance_steps=6, imbalance_batch=16, imbalance_max_length=64,
    imwa_models=2, imwa_episodes=2, ema_decay=0.9, max_test_per_class=4,
)  # fmt: skip


@dataclass
class Run:
    """One training run's results (one row cell for one seed)."""

    section: str
    row: str
    column: str
    seed: int
    metrics: dict[str, float]
    wall_seconds: float
    cpu_seconds: float
    notes: str = ""


def make_tokenizer(name: str):
    if name == "nucleotide":
        return NucleotideTokenizer()
    if name == "6mer":
        return KmerTokenizer(k=6, stride=1)
    if name == "6mer_nonoverlapping":
        return KmerTokenizer(k=6, stride=6)
    raise ValueError(f"Unknown tokenizer {name!r}; expected one of {list(TOKENIZER_NAMES)}.")


def encode(tokenizer, sequences: Sequence[str], labels: Sequence[int] | None = None, max_length: int = 512) -> Dataset:
    columns = dict(tokenizer(list(sequences), truncation=True, max_length=max_length))
    if labels is not None:
        columns["labels"] = [int(label) for label in labels]
    return Dataset.from_dict(columns)


def read_gue(task: str, split: str) -> tuple[list[str], list[int]]:
    import csv

    path = GUE / task / f"{split}.csv"
    if not path.is_file():
        raise ValueError(f"GUE task {task!r} has no {path}; shipped tasks: data/gue/<group>/<task>/.")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row["sequence"] for row in rows], [int(row["label"]) for row in rows]


def subsample(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """Indices of a fixed random subset of ``limit`` of ``n`` items (all, in order, when ``limit`` is None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def stratified_labels(labels: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """``budget`` labeled indices, the same number per class, drawn with ``seed``."""
    classes = np.unique(labels)
    if budget % len(classes):
        raise ValueError(f"Label budget {budget} is not a multiple of the {len(classes)} classes.")
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: budget // len(classes)] for c in classes]))


@torch.no_grad()
def predict_logits(model: torch.nn.Module, dataset: Dataset, tokenizer, batch_size: int = 64) -> np.ndarray:
    """Logits of every sequence of ``dataset`` (in order), the model in eval mode."""
    model.eval()
    collator = DataCollatorWithPadding(tokenizer)
    logits = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        batch = collator([{"input_ids": ids} for ids in rows["input_ids"]])
        logits.append(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float())
    return torch.cat(logits).numpy()


def test_mcc(model: torch.nn.Module, test: Dataset, tokenizer) -> dict[str, float]:
    predicted = predict_logits(model, test, tokenizer).argmax(-1)
    return {"mcc": float(matthews_correlation(predicted, np.array(test["labels"])))}


def mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


class Workbench:
    """Shared state of one comparison: tokenizers, encoded data, pretrained encoders, and the training recipe."""

    def __init__(self, budget: Budget, workdir: Path):
        self.budget = budget
        self.workdir = workdir
        self._tokenizers: dict[str, object] = {}
        self._data: dict[tuple, object] = {}
        self._pretrained: dict[tuple, BeaconForMaskedLM] = {}
        self._finetuned: dict[tuple, list[Run]] = {}
        self._run_index = 0
        self.train_fasta, self.heldout_fasta = self._split_corpus()

    # ---- data --------------------------------------------------------------------------------------

    def tokenizer(self, name: str):
        if name not in self._tokenizers:
            self._tokenizers[name] = make_tokenizer(name)
        return self._tokenizers[name]

    def _split_corpus(self) -> tuple[Path, Path]:
        """The embedded DNA corpus minus the last ``heldout_bp`` bases of its longest record (chr1), and that tail."""
        records = [record for path in default_corpus_files("dna") for record in read_fasta(path)]
        longest = max(range(len(records)), key=lambda i: len(records[i][1]))
        header, sequence = records[longest]
        cut = len(sequence) - self.budget.heldout_bp
        train = records[:longest] + [(header, sequence[:cut])] + records[longest + 1 :]
        paths = self.workdir / "pretrain.fa", self.workdir / "heldout.fa"
        for path, part in zip(paths, (train, [(f"{header} tail", sequence[cut:])])):
            path.write_text("".join(f">{name}\n{seq}\n" for name, seq in part))
        return paths

    def pretraining_data(self, tokenizer_name: str) -> Dataset:
        key = ("pretrain", tokenizer_name)
        if key not in self._data:
            if "chunks" not in self._data:
                chunks = build_pretraining_dataset([self.train_fasta], max_length=self.budget.chunk_bp, validation_fraction=0.0)
                needed = self.budget.pretrain_steps * self.budget.pretrain_batch
                self._data["chunks"] = chunks.shuffle(seed=0).select(range(min(len(chunks), needed)))
            sequences = self._data["chunks"]["sequence"]
            self._data[key] = encode(self.tokenizer(tokenizer_name), sequences, max_length=self.budget.chunk_bp + 2)
        return self._data[key]

    def heldout_windows(self, tokenizer_name: str, length: int) -> Dataset:
        """Consecutive full windows of held-out chr1, ``length`` tokens each with framing, ``eval_bases`` in total."""
        key = ("heldout", tokenizer_name, length)
        if key not in self._data:
            bases = length - 2
            windows = build_pretraining_dataset(
                [self.heldout_fasta], max_length=bases, min_length=bases, full_length_fraction=1.0, validation_fraction=0.0
            )["sequence"]
            count = self.budget.eval_bases // bases
            if len(windows) < count:
                raise ValueError(f"Held-out DNA gives {len(windows)} windows of {bases} bp, fewer than {count}.")
            self._data[key] = encode(self.tokenizer(tokenizer_name), windows[:count], max_length=length)
        return self._data[key]

    def gue(self, task: str, tokenizer_name: str) -> tuple[Dataset, Dataset]:
        key = ("gue", task, tokenizer_name)
        if key not in self._data:
            tokenizer = self.tokenizer(tokenizer_name)
            parts = []
            for split, limit in (("train", self.budget.max_train), ("test", self.budget.max_test)):
                sequences, labels = read_gue(task, split)
                keep = subsample(len(sequences), limit)
                parts.append(encode(tokenizer, [sequences[i] for i in keep], [labels[i] for i in keep]))
            self._data[key] = tuple(parts)
        return self._data[key]

    # ---- models ------------------------------------------------------------------------------------

    def beacon_config(self, tokenizer, position: str = "alibi", num_labels: int = 2) -> BeaconConfig:
        return BeaconConfig(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=self.budget.hidden_size,
            num_hidden_layers=self.budget.num_layers,
            num_attention_heads=self.budget.num_heads,
            intermediate_size=self.budget.intermediate_size,
            position_embedding_type=position,
            max_position_embeddings=max(self.budget.eval_lengths) if position == "absolute" else None,
            num_labels=num_labels,
        )

    def baseline(self, architecture: str, num_labels: int, seed: int) -> BaselineForSequenceClassification:
        tokenizer = self.tokenizer("nucleotide")
        set_seed(seed)
        return BaselineForSequenceClassification(
            BaselineConfig(
                architecture=architecture,
                vocab_size=len(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
                embedding_dim=self.budget.baseline_embedding,
                hidden_size=self.budget.baseline_hidden,
                num_labels=num_labels,
            )
        )

    def classifier(self, encoder: tuple | None, tokenizer_name: str, num_labels: int, seed: int, position: str = "alibi"):
        """A BEACON sequence classifier, its encoder copied from ``pretrained(*encoder)`` (or random if None)."""
        pretrained = self.pretrained(*encoder) if encoder is not None else None
        if pretrained is not None:
            position = pretrained.config.position_embedding_type
        set_seed(seed)
        config = self.beacon_config(self.tokenizer(tokenizer_name), position, num_labels)
        if encoder is not None and encoder[1] == "self_distillation":
            config.classifier_pooling = "mean"  # the teacher was distilled through mean-pooled states, not <cls>
        model = BeaconForSequenceClassification(config)
        if pretrained is not None:
            missing, unexpected = model.beacon.load_state_dict(pretrained.beacon.state_dict(), strict=False)
            if unexpected or any(not name.startswith("pooler.") for name in missing):
                raise RuntimeError(f"Encoder weights do not match: missing {missing}, unexpected {unexpected}.")
        return model

    def pretrained(self, tokenizer_name: str, objective: str = "fixed", position: str = "alibi", seed: int = 0):
        """A tiny BEACON masked-LM pretrained on the corpus with ``objective`` (cached: trained once)."""
        key = (tokenizer_name, objective, position, seed)
        if key in self._pretrained:
            return self._pretrained[key]
        tokenizer = self.tokenizer(tokenizer_name)
        train = self.pretraining_data(tokenizer_name)
        set_seed(seed)
        model = BeaconForMaskedLM(self.beacon_config(tokenizer, position))
        budget = self.budget
        label = f"pretrain {TOKENIZER_NAMES[tokenizer_name]} / {OBJECTIVE_NAMES[objective]} / {position} / seed {seed}"
        if objective == "self_distillation":
            trainer = self.train(
                model, tokenizer, train, budget.pretrain_steps, budget.pretrain_batch, budget.pretrain_lr, seed, label,
                trainer_class=SelfDistillationTrainer,
            )
            model = trainer.teacher.module.model  # the EMA teacher is what users fine-tune
        elif objective in ("fixed", "randommask"):
            # Same share of masked tokens for every tokenizer: spans of ceil(k / stride) tokens hide one nucleotide.
            span = math.ceil(tokenizer.k / tokenizer.stride)
            collator = DataCollatorForRandomMask(
                tokenizer, mlm_probability=MASKED_TOKEN_FRACTION / span,
                schedule="expanding" if objective == "randommask" else "fixed", seed=seed,
            )  # fmt: skip
            self.train(
                model, tokenizer, train, budget.pretrain_steps, budget.pretrain_batch, budget.pretrain_lr, seed, label,
                data_collator=collator, callbacks=lambda trainer: [RandomMaskCallback(collator)],
            )
        else:
            raise ValueError(f"Unknown pretraining objective {objective!r}.")
        self._pretrained[key] = model.eval()
        return model

    # ---- the one training recipe ------------------------------------------------------------------

    def train(
        self,
        model: torch.nn.Module,
        tokenizer,
        dataset: Dataset,
        steps: int,
        batch_size: int,
        learning_rate: float,
        seed: int,
        label: str,
        trainer_class: type[Trainer] = Trainer,
        data_collator=None,
        callbacks: Callable[[Trainer], list] | None = None,
        **trainer_kwargs,
    ) -> Trainer:
        """Train ``model`` for ``steps`` AdamW steps (10% linear warm-up, linear decay) and return the Trainer."""
        self._run_index += 1
        args = TrainingArguments(
            output_dir=str(self.workdir / f"run{self._run_index}"),
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            warmup_steps=0.1,
            lr_scheduler_type="linear",
            weight_decay=0.01,
            seed=seed,
            logging_steps=max(1, steps // 4),
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = trainer_class(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=data_collator or DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            **trainer_kwargs,
        )
        for callback in callbacks(trainer) if callbacks else []:
            trainer.add_callback(callback)
        started, cpu = time.time(), time.process_time()
        trainer.train()
        trainer.timing = (time.time() - started, time.process_time() - cpu)
        print(f"    {label}: {steps} steps in {trainer.timing[0]:.1f} s", flush=True)
        return trainer

    def finetune(self, section: str, row: str, column: str, seed: int, key: tuple, build: Callable[[], list[Run]]) -> list[Run]:
        """Run ``build`` once per ``key`` (a run shared by two sections is trained once) and relabel its runs."""
        shared = key in self._finetuned
        if not shared:
            self._finetuned[key] = build()
        first = self._finetuned[key]
        notes = f"same run as in section {first[0].section}" if shared else ""
        runs = [dataclasses.replace(run, section=section, row=row if len(first) == 1 else run.row, column=column,
                                    seed=seed, notes=notes) for run in first]
        for run in runs:
            shown = ", ".join(f"{name}={value:.3f}" for name, value in run.metrics.items())
            print(f"  [{section}] {column} | {run.row} | seed {seed}: {shown}", flush=True)
        return runs

    def gue_run(self, section: str, row: str, task: str, seed: int, model_spec: tuple, tokenizer_name: str = "nucleotide") -> Run:
        """Fine-tune ``model_spec`` = ("beacon", pretrained-encoder key or None) or ("baseline", architecture)."""

        def build() -> list[Run]:
            train, test = self.gue(task, tokenizer_name)
            tokenizer = self.tokenizer(tokenizer_name)
            num_labels = len(set(train["labels"]))
            if model_spec[0] == "baseline":
                model, lr = self.baseline(model_spec[1], num_labels, seed), self.budget.baseline_lr
            else:
                model, lr = self.classifier(model_spec[1], tokenizer_name, num_labels, seed), self.budget.transformer_lr
            trainer = self.train(model, tokenizer, train, self.budget.finetune_steps, self.budget.finetune_batch, lr, seed,
                                 f"{task} {row} seed {seed}")
            return [Run(section, row, task, seed, test_mcc(model, test, tokenizer), *trainer.timing)]

        return self.finetune(section, row, task, seed, ("gue", task, seed, model_spec, tokenizer_name), build)[0]


# ---- sections ------------------------------------------------------------------------------------------


def baseline_rows(bench: Workbench, section: str, task: str, seed: int) -> list[Run]:
    return [bench.gue_run(section, f"{BASELINE_NAMES[arch]} (BEACON baseline, no pretraining)", task, seed, ("baseline", arch))
            for arch in BASELINES]


def section_pretraining(bench: Workbench) -> list[Run]:
    runs = []
    for task in bench.budget.pretraining_tasks:
        for seed in bench.budget.seeds:
            for objective in ("fixed", "randommask", "self_distillation", None):
                encoder = ("6mer", objective) if objective else None
                row = f"BEACON-tiny, 6-mer, {OBJECTIVE_NAMES[objective]}"
                runs.append(bench.gue_run("pretraining", row, task, seed, ("beacon", encoder), "6mer"))
            runs += baseline_rows(bench, "pretraining", task, seed)
    return runs


@torch.no_grad()
def heldout_mlm_loss(bench: Workbench, model: BeaconForMaskedLM, tokenizer_name: str, length: int) -> float:
    """Masked-LM cross-entropy per masked token on held-out DNA windows, with identical seeded masks for every model."""
    tokenizer = bench.tokenizer(tokenizer_name)
    windows = bench.heldout_windows(tokenizer_name, length)
    collator = DataCollatorForRandomMask(tokenizer, mlm_probability=MASKED_TOKEN_FRACTION, schedule="fixed", seed=1234)
    batch_size = max(1, 8192 // length)
    total, count = 0.0, 0
    model.eval()
    for start in range(0, len(windows), batch_size):
        rows = windows[start : start + batch_size]
        batch = collator([{"input_ids": ids} for ids in rows["input_ids"]])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total += F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum").item()
        count += int((batch["labels"] != -100).sum())
    return total / count


def section_position(bench: Workbench) -> list[Run]:
    runs = []
    for seed in bench.budget.seeds:
        for position in ("alibi", "absolute"):
            started, cpu = time.time(), time.process_time()
            model = bench.pretrained("nucleotide", "fixed", position, seed)
            metrics = {f"loss_{length}": heldout_mlm_loss(bench, model, "nucleotide", length) for length in bench.budget.eval_lengths}
            row = {"alibi": "ALiBi", "absolute": "learned absolute"}[position]
            runs.append(Run("position", row, "held-out chr1", seed, metrics, time.time() - started, time.process_time() - cpu))
            print(f"  [position] {row} | seed {seed}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()), flush=True)
    return runs


def section_tokenization(bench: Workbench) -> list[Run]:
    task = bench.budget.tokenization_task
    runs = []
    for seed in bench.budget.seeds:
        for name in TOKENIZER_NAMES:
            run = bench.gue_run("tokenization", f"BEACON-tiny, {TOKENIZER_NAMES[name]}", task, seed, ("beacon", (name, "fixed")), name)
            test = bench.gue(task, name)[1]
            run.metrics = {**run.metrics, "tokens": float(np.mean([len(ids) for ids in test["input_ids"]]))}
            runs.append(run)
        runs += baseline_rows(bench, "tokenization", task, seed)
    return runs


def section_semi_supervised(bench: Workbench) -> list[Run]:
    budget, task = bench.budget, bench.budget.ssl_task
    tokenizer = bench.tokenizer("nucleotide")
    train, test = bench.gue(task, "nucleotide")
    labels = np.array(train["labels"])
    runs = []
    for num_labels in budget.label_budgets:
        column = f"{num_labels} labels"
        for seed in budget.seeds:
            labeled_index = stratified_labels(labels, num_labels, seed)
            labeled = train.select(labeled_index)
            rest = np.setdiff1d(np.arange(len(train)), labeled_index)
            unlabeled = train.select(rest[subsample(len(rest), budget.max_unlabeled, seed)])
            for mode in ("supervised", "fixmatch", "layermatch"):
                def build(mode=mode) -> list[Run]:
                    model = bench.classifier(("nucleotide", "fixed"), "nucleotide", 2, seed)
                    trainer = bench.train(
                        model, tokenizer, labeled, budget.ssl_steps, budget.ssl_batch, budget.transformer_lr, seed,
                        f"{task} {mode} {column} seed {seed}", trainer_class=LayerMatchTrainer, mode=mode,
                        unlabeled_dataset=unlabeled if mode != "supervised" else None, mu=budget.ssl_mu,
                    )
                    metrics = test_mcc(model, test, tokenizer)
                    mask_rates = [log["mask_rate"] for log in trainer.state.log_history if "mask_rate" in log]
                    if mask_rates:
                        metrics["mask_rate"] = float(np.mean(mask_rates))
                    return [Run("semi_supervised", mode, column, seed, metrics, *trainer.timing)]

                row = {"supervised": "supervised only", "fixmatch": "FixMatch", "layermatch": "LayerMatch"}[mode]
                runs += bench.finetune("semi_supervised", f"BEACON-tiny (pretrained), {row}", column, seed,
                                       ("ssl", task, num_labels, seed, mode), build)
            # The CNN stands for BEACON's baselines here (ResNet and BiLSTM are in the full-data sections).
            def build_baseline() -> list[Run]:
                model = bench.baseline("cnn", 2, seed)
                trainer = bench.train(model, tokenizer, labeled, budget.ssl_steps, budget.ssl_batch, budget.baseline_lr,
                                      seed, f"{task} cnn {column} seed {seed}")
                return [Run("semi_supervised", "cnn", column, seed, test_mcc(model, test, tokenizer), *trainer.timing)]

            runs += bench.finetune("semi_supervised", "CNN (BEACON baseline), supervised only", column, seed,
                                   ("ssl", task, num_labels, seed, "cnn"), build_baseline)
    return runs


def section_imbalance(bench: Workbench) -> list[Run]:
    budget = bench.budget
    tokenizer = bench.tokenizer("nucleotide")
    train_rows = read_nrc(NRC / "dataset_Rfam_6320_13classes.fasta")
    test_rows = read_nrc(NRC / "dataset_Rfam_validated_2600_13classes.fasta")
    train_seqs, test_seqs = [row["sequence"] for row in train_rows], [row["sequence"] for row in test_rows]
    families = NCRNA_LABELS
    train_labels = np.array([row["label"] for row in train_rows])
    test_labels = np.array([row["label"] for row in test_rows])
    test_index = (np.arange(len(test_labels)) if budget.max_test_per_class is None
                  else stratified_labels(test_labels, budget.max_test_per_class * len(families), 0))
    test = encode(tokenizer, [test_seqs[i] for i in test_index], test_labels[test_index], budget.imbalance_max_length)
    column = f"nRC, imbalance ratio {budget.imbalance_ratio:g}"

    def metrics_of(model) -> dict[str, float]:
        prediction = EvalPrediction(predictions=predict_logits(model, test, tokenizer), label_ids=np.array(test["labels"]))
        return class_balanced_metrics(prediction)

    runs = []
    for seed in budget.seeds:
        keep = long_tailed_indices(train_labels, budget.imbalance_ratio, budget.head_class_size, seed)
        train = encode(tokenizer, [train_seqs[i] for i in keep], train_labels[keep], budget.imbalance_max_length)
        for name, imwa_settings in (("plain", (1, 1)), ("imwa", (budget.imwa_models, budget.imwa_episodes))):
            def build(imwa_settings=imwa_settings, name=name) -> list[Run]:
                model = bench.baseline("cnn", len(families), seed)
                holder = {}

                def callbacks(trainer):
                    holder["imwa"] = IMWACallback(trainer, num_models=imwa_settings[0], num_episodes=imwa_settings[1],
                                                  ema_decay=budget.ema_decay)
                    return [holder["imwa"]]

                trainer = bench.train(model, tokenizer, train, budget.imbalance_steps, budget.imbalance_batch,
                                      budget.baseline_lr, seed, f"nRC CNN {name} seed {seed}", callbacks=callbacks)
                rows = ("plain", "EMA") if name == "plain" else ("IMWA", "IMWA+EMA")
                return [Run("imbalance", f"CNN, {rows[0]}", column, seed, metrics_of(model), *trainer.timing),
                        Run("imbalance", f"CNN, {rows[1]}", column, seed, metrics_of(holder["imwa"].ema_model), *trainer.timing)]

            runs += bench.finetune("imbalance", "", column, seed, ("imbalance", seed, name), build)
        # Does the pretrained transformer beat the CNN here? Same data, steps and protocol, plain training.
        def build_transformer() -> list[Run]:
            model = bench.classifier(("nucleotide", "fixed"), "nucleotide", len(families), seed)
            trainer = bench.train(model, tokenizer, train, budget.imbalance_steps, budget.imbalance_batch,
                                  budget.transformer_lr, seed, f"nRC BEACON-tiny plain seed {seed}")
            return [Run("imbalance", "beacon", column, seed, metrics_of(model), *trainer.timing)]

        runs += bench.finetune("imbalance", "BEACON-tiny (pretrained on DNA), plain", column, seed,
                               ("imbalance", seed, "beacon"), build_transformer)
    return runs


SECTION_FUNCTIONS = {
    "pretraining": section_pretraining,
    "position": section_position,
    "tokenization": section_tokenization,
    "semi_supervised": section_semi_supervised,
    "imbalance": section_imbalance,
}

# ---- report ---------------------------------------------------------------------------------------------


def table(runs: list[Run], row_header: str, cells: list[tuple]) -> str:
    """Markdown table: one line per row label (first-seen order), one column per ``(column, metric, header[, fmt])``
    cell spec, formatted by ``fmt`` (default :func:`mean_std`) over the seeds."""
    rows = list(dict.fromkeys(run.row for run in runs))
    lines = [f"| {row_header} | " + " | ".join(cell[2] for cell in cells) + " | seeds |",
             "|---" * (len(cells) + 2) + "|"]
    for row in rows:
        values = []
        seeds = set()
        for column, metric, _, *fmt in cells:
            found = [run for run in runs if run.row == row and run.column == column and metric in run.metrics]
            seeds |= {run.seed for run in found}
            values.append((fmt[0] if fmt else mean_std)([run.metrics[metric] for run in found]) if found else "n/a")
        lines.append(f"| {row} | " + " | ".join(values) + f" | {len(seeds)} |")
    return "\n".join(lines)


def initial_weight_in_teacher(steps: int, base: float = 0.996) -> float:
    """Share of the initial weights left in an EMA teacher after ``steps`` updates of cosine momentum ``base`` -> 1."""
    return float(np.prod([cosine_momentum(step, steps, base) for step in range(1, steps + 1)]))


def render_section(name: str, runs: list[Run], budget: Budget, minutes: float | None) -> str:
    runs = [run for run in runs if run.section == name]
    if name == "pretraining":
        body = table(runs, "model, pretraining", [(task, "mcc", f"{task} MCC") for task in budget.pretraining_tasks])
        text = (f"### Pretraining objective (GUE test MCC)\n\nEach objective pretrains the same tiny encoder "
                f"(overlapping 6-mers, ALiBi) once, for {budget.pretrain_steps} steps x {budget.pretrain_batch} "
                f"windows of <= {budget.chunk_bp} bp from the chr1 + lambda corpus; each row then fine-tunes for "
                f"{budget.finetune_steps} steps x {budget.finetune_batch} sequences. Self-distillation fine-tunes "
                "its EMA teacher and masks 15% of tokens one by one (its default view), which on overlapping "
                "k-mers leaks the masked nucleotides from the neighbours (the problem RandomMask addresses). "
                f"Its teacher follows the student with momentum 0.996 -> 1 (cosine), so after {budget.pretrain_steps} "
                f"steps it still holds {initial_weight_in_teacher(budget.pretrain_steps):.0%} of the initial random "
                "weights: at this budget the teacher is close to the from-scratch model (fine-tuning the student, or "
                "a lower momentum for short runs, would be fairer; this run did not).")
    elif name == "position":
        cells = [("held-out chr1", f"loss_{length}", f"MLM loss @ {length:,} tokens") for length in budget.eval_lengths]
        body = table(runs, "position encoding", cells)
        text = (f"### Position encoding (masked-LM loss on held-out DNA, lower is better)\n\nSingle-nucleotide "
                f"BEACON-tiny pretrained on windows of <= 128 tokens (one pretraining per seed); the loss is per "
                f"masked token (15% masked, identical masks for every model) on the last {budget.heldout_bp:,} bp "
                f"of chr1, which pretraining never saw, cut into windows of each length ({budget.eval_bases:,} bp "
                "per length). Learned absolute positions beyond 128 were never trained (they keep their "
                "initialisation): that is the extrapolation ALiBi is meant to fix. Uniform guessing gives ln 4 = 1.386.")
    elif name == "tokenization":
        task = budget.tokenization_task
        cells = [(task, "mcc", f"{task} MCC"), (task, "tokens", "tokens per test sequence", lambda v: f"{np.mean(v):.0f}")]
        body = table(runs, "model, tokens", cells)
        text = (f"### Tokenization ({task}, test MCC)\n\nEach tokenizer's encoder is pretrained with its standard "
                "masking of ~15% of tokens (DNABERT's 6-token spans for overlapping 6-mers, single tokens otherwise), "
                "same steps and windows, then fine-tuned as in the pretraining section.")
    elif name == "semi_supervised":
        cells = [(f"{n} labels", "mcc", f"MCC, {n} labels") for n in budget.label_budgets]
        cells += [(f"{n} labels", "mask_rate", f"kept pseudo-labels, {n} labels") for n in budget.label_budgets]
        body = table(runs, "model, method", cells)
        text = (f"### Semi-supervised ({budget.ssl_task}, test MCC)\n\n`LayerMatchTrainer` from the pretrained "
                f"single-nucleotide encoder: {budget.ssl_steps} steps of {budget.ssl_batch} labeled sequences (+ "
                f"mu = {budget.ssl_mu} times as many unlabeled ones, the rest of the training split, for FixMatch "
                "and LayerMatch; threshold 0.95); labeled sets are class-balanced and drawn per seed.")
        mask_rates = [run.metrics["mask_rate"] for run in runs if "mask_rate" in run.metrics]
        if mask_rates and max(mask_rates) == 0:
            text += (" **No pseudo-label reached the threshold in any run**, so the unlabeled loss was zero and "
                     "FixMatch and LayerMatch trained like the supervised row (they differ from it only through "
                     "random draws): at this scale the tiny model is never that confident.")
    else:
        column = f"nRC, imbalance ratio {budget.imbalance_ratio:g}"
        body = table(runs, "model, method", [(column, "balanced_accuracy", "balanced accuracy"), (column, "macro_f1", "macro-F1")])
        text = (f"### Class imbalance (nRC, long-tailed train at ratio {budget.imbalance_ratio:g}, balanced test)\n\n"
                f"Training set from `hf_genomics.long_tailed_indices` (largest class "
                f"{budget.head_class_size}, smallest {max(1, round(budget.head_class_size / budget.imbalance_ratio))}; class order "
                f"drawn per seed), RNAs truncated to {budget.imbalance_max_length} tokens, {budget.imbalance_steps} "
                f"steps x {budget.imbalance_batch}. The method rows train the BEACON CNN baseline (the model that "
                f"learns nRC at this scale, see `calibration.md`): one plain run gives `plain` and its EMA, one "
                f"`IMWACallback` run (K = {budget.imwa_models} replicas, {budget.imwa_episodes} episodes, same steps) "
                f"gives `IMWA` and the EMA of the average; at equal compute each IMWA replica makes "
                f"{budget.imbalance_steps // budget.imwa_models} of the {budget.imbalance_steps} optimizer steps, "
                "a real cost while the model is still far from converged. EMA decay "
                f"{budget.ema_decay} per update: the EMA starts "
                "from the initial weights without warm-up, so a run this short needs a short horizon (IMWA's EMA "
                "takes one update per round of K replica steps). The last row fine-tunes the pretrained "
                "single-nucleotide BEACON-tiny with plain training on the same data and steps.")
    timing = "" if minutes is None else (f"\n\n(This section ran for {minutes:.1f} min, including the pretraining of "
                                         "the encoders it was the first to need.)")
    return f"{text}\n\n{body}{timing}\n"


def render(runs: list[Run], budget: Budget, quick: bool, command: str, wall_minutes: float,
           section_minutes: dict[str, float]) -> str:
    sections = [name for name in SECTIONS if any(run.section == name for run in runs)]
    header = (
        "## Method comparison (`compare_methods.py`)\n\n"
        f"Generated by `{command}` on {machine_info()}; this run took {wall_minutes:.1f} min wall time "
        "(budget: <= 45 min on 2 idle cores for the full run)."
        + (" **Quick mode: smoke-test sizes, the numbers mean nothing.**" if quick else "") + "\n\n"
        f"These are **tiny CPU models** (BEACON-tiny: {budget.num_layers} layers x {budget.hidden_size} hidden, "
        f"{budget.num_heads} heads; baselines: {budget.baseline_hidden} channels/units) trained for minutes on "
        "real data shipped in `data/` (GUE tasks, the chr1 + lambda corpus, nRC). They compare methods under one "
        "protocol at this scale, not the published models. Every cell is the mean ± sample standard deviation "
        f"over seeds {', '.join(map(str, budget.seeds))} (fine-tuning seeds; pretraining once, seed 0, except the "
        "position-encoding rows). Fine-tuning: AdamW, 10% warm-up then linear decay, weight decay 0.01, "
        f"lr {budget.transformer_lr:g} (transformers) / {budget.baseline_lr:g} (CNN/ResNet/BiLSTM), same steps and "
        "batch size for every row of a section, the last model scored on the test split. Raw runs: "
        "`benchmarks/results_methods.json`.\n"
    )
    return header + "\n" + "\n".join(render_section(name, runs, budget, section_minutes.get(name)) for name in sections)


def load_previous(path: Path, budget: Budget) -> dict:
    """The results file of an earlier invocation with the same budget (so ``--sections`` updates only its
    sections), with its runs as :class:`Run`; an empty record if there is none."""
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("budget") != json.loads(json.dumps(dataclasses.asdict(budget))):
        return {"runs": [], "section_minutes": {}}
    return {**saved, "runs": [Run(**run) for run in saved["runs"]], "section_minutes": saved.get("section_minutes", {})}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed, a few steps: smoke test (<= 90 s)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--output", type=Path, default=HERE / "results.md",
                        help="results file whose methods section is rewritten (default: benchmarks/results.md)")
    parser.add_argument("--json", type=Path, default=None,
                        help="raw per-run results (default: results_methods.json next to --output)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: all cores; 1 with --quick, where tiny models gain nothing from more)")
    parser.add_argument("--render_only", action="store_true",
                        help="rewrite the methods section from the --json results of an earlier run, training nothing")
    args = parser.parse_args(argv)
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        parser.error(f"--sections takes a comma-separated subset of {', '.join(SECTIONS)}; got {args.sections!r}.")
    json_path = args.json or args.output.with_name("results_methods.json")
    budget = QUICK if args.quick else FULL
    command = shlex.join(["python", "benchmarks/compare_methods.py", *(argv if argv is not None else sys.argv[1:])])
    transformers_logging.set_verbosity_error()
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)

    previous = load_previous(json_path, budget)
    if args.render_only:
        if not previous["runs"]:
            parser.error(f"--render_only needs {json_path} from an earlier run with the same mode (quick or full).")
        rendered = render(previous["runs"], budget, args.quick, previous["command"], previous["wall_minutes"],
                          previous["section_minutes"])
        existing = args.output.read_text() if args.output.exists() else ""
        args.output.write_text(replace_section(existing, START, END, rendered))
        print(f"Rewrote the methods section of {args.output} from {json_path}")
        return

    started = time.time()
    runs = [run for run in previous["runs"] if run.section not in sections]
    section_minutes = {name: minutes for name, minutes in previous["section_minutes"].items() if name not in sections}
    with tempfile.TemporaryDirectory(prefix="compare_methods_") as workdir:
        bench = Workbench(budget, Path(workdir))
        for name in EXECUTION_ORDER:
            if name not in sections:
                continue
            print(f"==> {name}", flush=True)
            section_started = time.time()
            runs += SECTION_FUNCTIONS[name](bench)
            section_minutes[name] = (time.time() - section_started) / 60
            wall_minutes = (time.time() - started) / 60
            # Written after every section, so an interrupted run keeps what finished.
            json_path.write_text(json.dumps({
                "command": command, "quick": args.quick, "machine": machine_info(), "wall_minutes": wall_minutes,
                "budget": dataclasses.asdict(budget), "section_minutes": section_minutes,
                "runs": [dataclasses.asdict(run) for run in runs],
            }, indent=1) + "\n")
            existing = args.output.read_text() if args.output.exists() else ""
            rendered = render(runs, budget, args.quick, command, wall_minutes, section_minutes)
            args.output.write_text(replace_section(existing, START, END, rendered))
            print(f"    wrote {args.output} and {json_path} ({wall_minutes:.1f} min so far)", flush=True)


if __name__ == "__main__":
    main()
