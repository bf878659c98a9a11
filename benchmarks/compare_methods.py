"""Compare hf_genomics' methods so that each claim can be seen, and record the tables in results.md.

    python benchmarks/compare_methods.py                        # full run (27 min on 2 idle CPU cores, 2026-12-01)
    python benchmarks/compare_methods.py --quick --output /tmp/results.md   # smoke test (<= 90 s)
    python benchmarks/compare_methods.py --sections position,imbalance

Protocol. Every number is the mean and sample standard deviation over seeds 0, 1, 2; a seed fixes the pretraining
run, the fine-tuning run built on it, the label draw and the data order, so pretraining seeds vary too. Every run
goes through :meth:`Workbench.train`: AdamW, 10% linear warm-up then linear decay, weight decay 0.01, fixed steps and
batch per section, the last model scored. Comparisons are paired by seed ("A vs B: mean ± std of A - B per seed,
higher in k of n seeds"); the text under each table is generated from the numbers. Nothing is tuned per method.

- ``position``: ALiBi vs learned absolute positions. BEACON-mini masked LMs pretrained on 128-token windows of the
  human chr1 + lambda corpus (fixed single-token masking; the ALiBi runs are the ``pretraining`` section's fixed
  arm). The absolute model gets ``max_position_embeddings=512`` (it cannot run past its table at all) but trains on
  128 tokens, so its positions 128-511 keep their random initialisation. Scored on the last ``heldout_bp`` bases of
  chr1, never seen in pretraining: 128-token windows, and 512-token windows split into positions < 128 and
  positions 128-511 (beyond the training length).
- ``pretraining``: RandomMask (Liang et al., 2023; mask boundary 1, 3, 5, 7, 9 nucleotides) vs fixed masking
  (boundary 1), the same centre probability and steps, 3 pretraining seeds per arm, on chr1 with single-nucleotide
  tokens. Rfam was the first choice, but there 400 steps x 32 windows of a larger model (4 x 128) ended at the
  floor (measured while building this benchmark); chr1 ends below its floor within this budget (the table says by
  how much). Then each encoder is fine-tuned on a GUE task, next to the same model from scratch and BEACON's CNN.
- ``self_distillation``: ``SelfDistillationTrainer`` (FinDNA, Yu et al., 2024) vs the same trainer with
  ``distillation_weight=0`` (MLM-only): same views, steps and forward passes. The teacher's momentum runs from a base
  chosen so that 1% of its random initial weights is left at the end (the text prints the exact share). Both arms'
  student and EMA teacher are probed frozen (logistic regression on mean-pooled features) and the weights each method
  hands to users (self-distillation's teacher, MLM-only's student) fine-tuned with ``classifier_pooling="mean"``.
- ``semi_supervised``: nRC ncRNA (13 families) with BEACON's CNN: supervised vs FixMatch vs Grad-ReLU only vs
  Avg-Clustering only vs LayerMatch (``LayerMatchTrainer``, Liang et al., 2024), 2 label budgets, the rest of nRC's
  training set (labels hidden from the methods) as unlabeled data, threshold 0.95, reverse complement off (nRC is
  strand-specific). Mask rate and the accuracy of the kept pseudo-labels come from the trainer's logs; the EMA
  teacher is scored next to the model.
- ``imbalance``: nRC long-tailed (imbalance ratio 100), balanced test, the CNN trained until its training loss levels
  off (a higher learning rate than elsewhere, the same for every arm; plain-1x vs plain-2x shows the plateau):
  plain-1x, plain-2x (twice the steps: the control for IMWA's 2x cost), MWA-2x (2 replicas averaged once at the
  end), IMWA-1x and IMWA-2x (``IMWACallback``, Huang et al., 2024), each with its EMA.

Dropped for the budget: the tokenization comparison (single nucleotide vs 6-mers), which needs a pretraining per
tokenizer and seed. All models are tiny CPU models (BEACON-mini: 4 layers x 64) trained for minutes: the tables
compare methods under one protocol at this scale, not published models.

The script rewrites only the part of ``results.md`` between ``<!-- methods:start -->`` and ``<!-- methods:end -->``
(``run_all.py`` owns the performance part) and writes every run to ``results_methods.json``, after each section.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed
from transformers.utils import logging as transformers_logging

from hf_genomics import (
    BaselineConfig,
    BaselineForSequenceClassification,
    BeaconConfig,
    BeaconForMaskedLM,
    BeaconForSequenceClassification,
    DataCollatorForRandomMask,
    IMWACallback,
    LayerMatchTrainer,
    NucleotideTokenizer,
    RandomMaskCallback,
    SelfDistillationTrainer,
    class_balanced_metrics,
    default_corpus_files,
    long_tailed_indices,
    read_fasta,
    read_nrc,
)
from hf_genomics.data.beacon import NCRNA_LABELS
from hf_genomics.data.pretraining_corpus import build_pretraining_dataset
from hf_genomics.metrics import matthews_correlation
from hf_genomics.training.trainer_teacher import cosine_momentum

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from run_all import machine_info, replace_section  # noqa: E402

START, END = "<!-- methods:start -->", "<!-- methods:end -->"
SECTIONS = ("position", "pretraining", "self_distillation", "semi_supervised", "imbalance")
GUE = REPO / "data" / "gue"
NRC = REPO / "data" / "nrc_ncrna"
# Held-out losses: BERT's 15% of tokens, one at a time, 80/10/10, the same masks for every model.
EVAL_MLM_PROBABILITY = 0.15
EVAL_MASK_SEED = 1234
TRAIN_TOKENS = 128  # pretraining window, framing included
POSITION_ROWS = {"alibi": "ALiBi", "absolute": "learned absolute"}
REGIONS = {
    "train_length": f"{TRAIN_TOKENS}-token windows (training length)",
    "before": f"512-token windows, positions < {TRAIN_TOKENS}",
    "beyond": f"512-token windows, positions {TRAIN_TOKENS}-511 (beyond training length)",
}
MASKING_ROWS = {"fixed": "fixed masking (m = 1)", "randommask": "RandomMask (m = 1 -> 9)"}
DISTILLATION_ROWS = {
    ("self_distillation", "teacher"): "self-distillation, EMA teacher",
    ("self_distillation", "student"): "self-distillation, student",
    ("mlm_only", "teacher"): "MLM-only, EMA teacher",
    ("mlm_only", "student"): "MLM-only, student",
}
# What each method hands to users, and so what is fine-tuned.
FINETUNED_WEIGHTS = {"self_distillation": "teacher", "mlm_only": "student"}
# LayerMatchTrainer settings per method: (mode, grad_relu, avg_clustering).
SSL_METHODS = {
    "supervised only": ("supervised", None, None),
    "FixMatch": ("fixmatch", None, None),
    "Grad-ReLU only": ("layermatch", True, False),
    "Avg-Clustering only": ("layermatch", False, True),
    "LayerMatch": ("layermatch", True, True),
}
SSL_THRESHOLD = 0.95
# Imbalance arms: (IMWACallback replicas, episodes (None: the budget's imwa_episodes), multiple of the 1x steps).
IMBALANCE_ARMS = {"plain-1x": (1, 1, 1), "plain-2x": (1, 1, 2), "MWA-2x": (2, 1, 2), "IMWA-1x": (2, None, 1),
                  "IMWA-2x": (2, None, 2)}


@dataclass(frozen=True)
class Budget:
    """Sizes of every run; ``FULL`` took 27 minutes on 2 idle cores, ``QUICK`` runs in <= 90 seconds."""

    seeds: tuple[int, ...]
    # BEACON-mini (every transformer row) and BEACON's CNN baseline (3 x Conv1d, k = 9), narrowed.
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    cnn_embedding: int
    cnn_hidden: int
    # Pretraining on chr1 + lambda: windows of <= 126 bp (128 tokens with framing).
    pretrain_steps: int
    pretrain_batch: int
    pretrain_lr: float
    centre_probability: float  # RandomMask vs fixed: span centres per token (DNABERT's mlm_probability)
    heldout_bp: int  # chr1 tail kept out of pretraining
    heldout_bases: int  # held-out bases scored per window length
    # Fine-tuning and probing on one GUE task.
    gue_task: str
    finetune_steps: int
    finetune_batch: int
    transformer_lr: float
    cnn_lr: float
    max_gue_train: int | None
    max_gue_test: int | None
    probe_train: int  # GUE training sequences the frozen-feature probe is fitted on
    teacher_initial_weight_left: float  # self-distillation: share of the teacher's initial weights left at the end
    # nRC (semi-supervised and imbalance).
    nrc_max_length: int
    nrc_test_per_class: int | None
    labels_per_class: tuple[int, ...]
    ssl_steps: int
    ssl_batch: int
    ssl_mu: int
    max_unlabeled: int | None
    imbalance_ratio: float
    head_class_size: int
    imbalance_steps: int  # the 1x budget
    imbalance_lr: float  # higher than cnn_lr, so the CNN reaches its plateau within the 1x budget
    imbalance_batch: int
    imwa_episodes: int
    ema_decay: float


FULL = Budget(
    seeds=(0, 1, 2),
    hidden_size=64, num_layers=4, num_heads=4, intermediate_size=256, cnn_embedding=32, cnn_hidden=64,
    pretrain_steps=200, pretrain_batch=32, pretrain_lr=2e-3, centre_probability=0.05,
    heldout_bp=200_000, heldout_bases=64 * 510,
    gue_task="prom/prom_core_tata", finetune_steps=100, finetune_batch=32, transformer_lr=1e-3, cnn_lr=2e-3,
    max_gue_train=None, max_gue_test=None, probe_train=2000, teacher_initial_weight_left=0.01,
    nrc_max_length=128, nrc_test_per_class=100,
    labels_per_class=(10, 40), ssl_steps=600, ssl_batch=8, ssl_mu=3, max_unlabeled=3000,
    imbalance_ratio=100.0, head_class_size=500, imbalance_steps=750, imbalance_lr=1e-2,
    imbalance_batch=32, imwa_episodes=10, ema_decay=0.99,
)  # fmt: skip

QUICK = Budget(
    seeds=(0, 1),
    hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, cnn_embedding=8, cnn_hidden=8,
    pretrain_steps=4, pretrain_batch=4, pretrain_lr=2e-3, centre_probability=0.05,
    heldout_bp=20_000, heldout_bases=2 * 510,
    gue_task="prom/prom_core_tata", finetune_steps=4, finetune_batch=8, transformer_lr=1e-3, cnn_lr=2e-3,
    max_gue_train=64, max_gue_test=32, probe_train=32, teacher_initial_weight_left=0.01,
    nrc_max_length=64, nrc_test_per_class=2,
    labels_per_class=(1, 2), ssl_steps=4, ssl_batch=4, ssl_mu=2, max_unlabeled=32,
    imbalance_ratio=100.0, head_class_size=10, imbalance_steps=4, imbalance_lr=1e-2,
    imbalance_batch=8, imwa_episodes=2, ema_decay=0.9,
)  # fmt: skip


@dataclass
class Run:
    """One row's results for one seed."""

    section: str
    row: str
    seed: int
    metrics: dict[str, float]
    wall_seconds: float
    cpu_seconds: float


# ---- pure helpers ---------------------------------------------------------------------------------------


def loss_by_region(losses: np.ndarray, positions: np.ndarray, boundary: int) -> tuple[float, float]:
    """Mean loss of the masked tokens at positions ``< boundary`` and at positions ``>= boundary`` (NaN if none)."""
    losses, positions = np.asarray(losses, dtype=np.float64), np.asarray(positions)
    before, beyond = positions < boundary, positions >= boundary
    return tuple(float(losses[part].mean()) if part.any() else math.nan for part in (before, beyond))


def initial_weight_in_teacher(steps: int, base: float) -> float:
    """Share of its initial weights an EMA teacher keeps after ``steps`` updates of cosine momentum ``base`` -> 1."""
    return math.prod(cosine_momentum(step, steps, base) for step in range(1, steps + 1))


def momentum_base_for(steps: int, initial_weight_left: float) -> float:
    """The cosine schedule's base momentum that leaves about ``initial_weight_left`` of the teacher's initial weights
    after ``steps`` updates: the mean of ``1 - m_t`` is ``(1 - base) / 2``, so ``base = 1 + 2 ln(left) / steps``
    (0 if that is negative: a run too short to keep that little)."""
    return max(0.0, 1.0 + 2.0 * math.log(initial_weight_left) / steps)


def pseudo_label_summary(log_history: list[dict]) -> dict[str, float]:
    """Mask rate over the run and in its last logging window, and the accuracy of the kept pseudo-labels over the run
    (windows hold equal numbers of unlabeled sequences, so each window's accuracy weighs by its mask rate)."""
    logs = [log for log in log_history if "mask_rate" in log]
    if not logs:
        return {}
    rates = np.array([log["mask_rate"] for log in logs])
    summary = {"mask_rate": float(rates.mean()), "mask_rate_last": float(rates[-1])}
    if rates.sum() > 0:
        accuracy = np.array([log.get("pseudo_label_accuracy", 0.0) for log in logs])
        summary["kept_label_accuracy"] = float((rates * accuracy).sum() / rates.sum())
    return summary


def paired_differences(runs: list[Run], row_a: str, row_b: str, metric: str) -> list[float]:
    """``A - B`` per seed that both rows have."""
    a, b = ({run.seed: run.metrics[metric] for run in runs if run.row == row and metric in run.metrics}
            for row in (row_a, row_b))
    return [a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())]


def describe_difference(label: str, differences: Sequence[float]) -> str:
    """``label: +x.xxx ± y.yyy (higher in k of n seeds)`` from per-seed differences."""
    if not differences:
        return f"{label}: n/a"
    spread = f" ± {np.std(differences, ddof=1):.3f}" if len(differences) > 1 else ""
    higher = sum(value > 0 for value in differences)
    return f"{label}: {np.mean(differences):+.3f}{spread} (higher in {higher} of {len(differences)} seeds)"


def mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def mean_only(values: Sequence[float]) -> str:
    return f"{np.mean(values):.3f}"


# ---- data ------------------------------------------------------------------------------------------------


def encode(tokenizer, sequences: Sequence[str], labels: Sequence[int] | None = None, max_length: int = 512) -> Dataset:
    columns = dict(tokenizer(list(sequences), truncation=True, max_length=max_length))
    if labels is not None:
        columns["labels"] = [int(label) for label in labels]
    return Dataset.from_dict(columns)


def read_gue(task: str, split: str) -> tuple[list[str], list[int]]:
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


def stratified_labels(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` indices of each class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == label))[:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def batches(dataset: Dataset, collator, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """``dataset``'s token ids collated in order, ``batch_size`` rows at a time."""
    for start in range(0, len(dataset), batch_size):
        yield collator([{"input_ids": ids} for ids in dataset[start : start + batch_size]["input_ids"]])


# ---- model scoring ---------------------------------------------------------------------------------------


@torch.no_grad()
def predict_logits(model: torch.nn.Module, dataset: Dataset, tokenizer, batch_size: int = 128) -> np.ndarray:
    model.eval()
    return torch.cat([model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
                      for batch in batches(dataset, DataCollatorWithPadding(tokenizer), batch_size)]).numpy()


@torch.no_grad()
def mean_pooled_features(model: BeaconForMaskedLM, dataset: Dataset, tokenizer, batch_size: int = 128) -> np.ndarray:
    """The encoder's last hidden states averaged over each sequence's tokens (special tokens included)."""
    model.eval()
    features = []
    for batch in batches(dataset, DataCollatorWithPadding(tokenizer), batch_size):
        hidden = model.beacon(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        features.append((hidden * weights).sum(1) / weights.sum(1))
    return torch.cat(features).numpy()


@torch.no_grad()
def masked_token_losses(model: BeaconForMaskedLM, windows: Dataset, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy and window position of every masked token of ``windows``, under DNABERT's fixed masking with a
    seeded collator and fixed batches, so every model is scored on the same masks."""
    collator = DataCollatorForRandomMask(tokenizer, mlm_probability=EVAL_MLM_PROBABILITY, schedule="fixed",
                                         seed=EVAL_MASK_SEED)
    model.eval()
    losses, positions = [], []
    for batch in batches(windows, collator, batch_size=16):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        masked = batch["labels"] != -100
        losses.append(F.cross_entropy(logits[masked], batch["labels"][masked], reduction="none"))
        positions.append(torch.nonzero(masked)[:, 1])
    return torch.cat(losses).numpy(), torch.cat(positions).numpy()


def logits_mcc(logits: np.ndarray, labels: Sequence[int]) -> float:
    return float(matthews_correlation(logits.argmax(-1), np.asarray(labels)))


def probe_mcc(train: tuple[np.ndarray, Sequence[int]], test: tuple[np.ndarray, Sequence[int]]) -> float:
    """Test MCC of a logistic regression (standardised features, sklearn defaults) fitted on frozen features."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(*train)
    return float(matthews_correlation(probe.predict(test[0]), np.asarray(test[1])))


def timed(function: Callable[[], dict]) -> tuple[dict, float, float]:
    started, cpu = time.time(), time.process_time()
    return function(), time.time() - started, time.process_time() - cpu


class Workbench:
    """Shared state of one comparison: tokenizer, data, pretrained encoders, and the one training recipe."""

    def __init__(self, budget: Budget, workdir: Path):
        self.budget = budget
        self.workdir = workdir
        self.tokenizer = NucleotideTokenizer()
        self._data: dict[tuple, object] = {}
        self._encoders: dict[tuple, dict[str, BeaconForMaskedLM]] = {}
        self._run_index = 0
        self.train_fasta, self.heldout_fasta = self._split_corpus()

    # ---- data ------------------------------------------------------------------------------------------

    def cached(self, key: tuple, build: Callable[[], object]):
        if key not in self._data:
            self._data[key] = build()
        return self._data[key]

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

    def pretraining_data(self) -> Dataset:
        def build():
            chunks = build_pretraining_dataset([self.train_fasta], max_length=TRAIN_TOKENS - 2, validation_fraction=0.0)
            needed = self.budget.pretrain_steps * self.budget.pretrain_batch
            sequences = chunks.shuffle(seed=0).select(range(min(len(chunks), needed)))["sequence"]
            return encode(self.tokenizer, sequences, max_length=TRAIN_TOKENS)

        return self.cached(("pretrain",), build)

    def heldout_windows(self, length: int) -> Dataset:
        """Consecutive full windows of held-out chr1, ``length`` tokens each with framing, ``heldout_bases`` in all."""
        def build():
            bases = length - 2
            windows = build_pretraining_dataset([self.heldout_fasta], max_length=bases, min_length=bases,
                                                full_length_fraction=1.0, validation_fraction=0.0)["sequence"]
            count = self.budget.heldout_bases // bases
            if len(windows) < count:
                raise ValueError(f"Held-out DNA gives {len(windows)} windows of {bases} bp, fewer than {count}.")
            return encode(self.tokenizer, windows[:count], max_length=length)

        return self.cached(("heldout", length), build)

    def floor(self, length: int, start: int = 0, stop: int | None = None) -> float:
        """No-context floor of the held-out masked-LM loss over positions ``start:stop`` of the ``length`` windows."""
        collator = DataCollatorForRandomMask(self.tokenizer, mlm_probability=EVAL_MLM_PROBABILITY, schedule="fixed")
        rows = self.heldout_windows(length)["input_ids"]
        return self.cached(("floor", length, start, stop),
                           lambda: collator.no_context_floor(row[start:stop] for row in rows))

    def heldout_metrics(self, model: BeaconForMaskedLM, region: str = "train_length") -> dict[str, float]:
        """Held-out loss over ``region`` (a key of ``REGIONS``), its no-context floor and the difference."""
        if region == "train_length":
            loss = float(masked_token_losses(model, self.heldout_windows(TRAIN_TOKENS), self.tokenizer)[0].mean())
            floor = self.floor(TRAIN_TOKENS)
        else:
            scored = masked_token_losses(model, self.heldout_windows(512), self.tokenizer)
            loss = loss_by_region(*scored, TRAIN_TOKENS)[0 if region == "before" else 1]
            floor = self.floor(512, *((0, TRAIN_TOKENS) if region == "before" else (TRAIN_TOKENS, None)))
        return {"loss": loss, "floor": floor, "loss_minus_floor": loss - floor}

    def gue(self) -> tuple[Dataset, Dataset]:
        def build():
            parts = []
            for split, limit in (("train", self.budget.max_gue_train), ("test", self.budget.max_gue_test)):
                sequences, labels = read_gue(self.budget.gue_task, split)
                keep = subsample(len(sequences), limit)
                parts.append(encode(self.tokenizer, [sequences[i] for i in keep], [labels[i] for i in keep]))
            return tuple(parts)

        return self.cached(("gue",), build)

    def nrc(self) -> tuple[list[str], np.ndarray, Dataset]:
        """nRC's training sequences and labels, and its (class-balanced) test set, encoded."""
        def build():
            train = read_nrc(NRC / "dataset_Rfam_6320_13classes.fasta")
            test = read_nrc(NRC / "dataset_Rfam_validated_2600_13classes.fasta")
            test_labels = np.array([row["label"] for row in test])
            keep = (np.arange(len(test)) if self.budget.nrc_test_per_class is None
                    else stratified_labels(test_labels, self.budget.nrc_test_per_class, 0))
            encoded = encode(self.tokenizer, [test[i]["sequence"] for i in keep], test_labels[keep],
                             self.budget.nrc_max_length)
            return [row["sequence"] for row in train], np.array([row["label"] for row in train]), encoded

        return self.cached(("nrc",), build)

    def nrc_subset(self, index: np.ndarray) -> Dataset:
        sequences, labels, _ = self.nrc()
        return encode(self.tokenizer, [sequences[i] for i in index], labels[index], self.budget.nrc_max_length)

    # ---- models ----------------------------------------------------------------------------------------

    def beacon_config(self, position: str = "alibi", **overrides) -> BeaconConfig:
        return BeaconConfig(
            vocab_size=len(self.tokenizer),
            pad_token_id=self.tokenizer.pad_token_id,
            hidden_size=self.budget.hidden_size,
            num_hidden_layers=self.budget.num_layers,
            num_attention_heads=self.budget.num_heads,
            intermediate_size=self.budget.intermediate_size,
            position_embedding_type=position,
            max_position_embeddings=512 if position == "absolute" else None,
            **overrides,
        )

    def cnn(self, num_labels: int, seed: int) -> BaselineForSequenceClassification:
        set_seed(seed)
        return BaselineForSequenceClassification(BaselineConfig(
            architecture="cnn", vocab_size=len(self.tokenizer), pad_token_id=self.tokenizer.pad_token_id,
            embedding_dim=self.budget.cnn_embedding, hidden_size=self.budget.cnn_hidden, num_labels=num_labels))

    def classifier(self, encoder: BeaconForMaskedLM | None, num_labels: int, seed: int):
        """A BEACON-mini classifier pooling the mean state, its encoder copied from ``encoder`` (random if None)."""
        set_seed(seed)
        model = BeaconForSequenceClassification(self.beacon_config(num_labels=num_labels, classifier_pooling="mean"))
        if encoder is not None:
            missing, unexpected = model.beacon.load_state_dict(encoder.beacon.state_dict(), strict=False)
            if unexpected or any(not name.startswith("pooler.") for name in missing):
                raise RuntimeError(f"Encoder weights do not match: missing {missing}, unexpected {unexpected}.")
        return model

    def encoder(self, objective: str, seed: int, weights: str = "student", position: str = "alibi"):
        """A BEACON-mini masked LM pretrained on chr1 with ``objective`` (cached): ``fixed`` / ``randommask``
        (``DataCollatorForRandomMask``), or ``self_distillation`` / ``mlm_only`` (``SelfDistillationTrainer`` with
        distillation weight 1 / 0), whose ``weights`` are the ``student`` or the EMA ``teacher``."""
        key = (objective, position, seed)
        if key not in self._encoders:
            self._encoders[key] = self._pretrain(objective, position, seed)
        return self._encoders[key][weights]

    def _pretrain(self, objective: str, position: str, seed: int) -> dict[str, BeaconForMaskedLM]:
        budget = self.budget
        set_seed(seed)
        model = BeaconForMaskedLM(self.beacon_config(position))
        recipe = dict(dataset=self.pretraining_data(), steps=budget.pretrain_steps, batch_size=budget.pretrain_batch,
                      learning_rate=budget.pretrain_lr, seed=seed, label=f"pretrain {objective} {position} seed {seed}")
        if objective in ("fixed", "randommask"):
            collator = DataCollatorForRandomMask(self.tokenizer, mlm_probability=budget.centre_probability,
                                                 schedule="expanding" if objective == "randommask" else "fixed",
                                                 seed=seed)
            self.train(model, **recipe, data_collator=collator,
                       callbacks=lambda trainer: [RandomMaskCallback(collator)])
            return {"student": model.eval()}
        if objective in ("self_distillation", "mlm_only"):
            trainer = self.train(
                model, **recipe, trainer_class=SelfDistillationTrainer,
                distillation_weight=1.0 if objective == "self_distillation" else 0.0,
                teacher_momentum_base=momentum_base_for(budget.pretrain_steps, budget.teacher_initial_weight_left),
            )
            return {"student": trainer.student.eval(), "teacher": trainer.teacher.module.model.eval()}
        raise ValueError(f"Unknown pretraining objective {objective!r}.")

    # ---- the one training recipe -----------------------------------------------------------------------

    def train(self, model: torch.nn.Module, dataset: Dataset, steps: int, batch_size: int, learning_rate: float,
              seed: int, label: str, trainer_class: type[Trainer] = Trainer, data_collator=None,
              callbacks: Callable[[Trainer], list] | None = None, **trainer_kwargs) -> Trainer:
        """Train ``model`` for ``steps`` AdamW steps (10% linear warm-up, linear decay) and return the Trainer."""
        self._run_index += 1
        args = TrainingArguments(
            output_dir=str(self.workdir / f"run{self._run_index}"),
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=128,
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
        trainer = trainer_class(model=model, args=args, train_dataset=dataset,
                                data_collator=data_collator or DataCollatorWithPadding(self.tokenizer),
                                processing_class=self.tokenizer, **trainer_kwargs)
        for callback in callbacks(trainer) if callbacks else []:
            trainer.add_callback(callback)
        started = time.time()
        trainer.train()
        print(f"    {label}: {steps} steps in {time.time() - started:.1f} s", flush=True)
        return trainer

    def finetune_gue(self, model: torch.nn.Module, learning_rate: float, seed: int, label: str) -> float:
        """Test MCC of ``model`` fine-tuned on the GUE task."""
        train, test = self.gue()
        self.train(model, train, self.budget.finetune_steps, self.budget.finetune_batch, learning_rate, seed, label)
        return logits_mcc(predict_logits(model, test, self.tokenizer), test["labels"])

    def probe(self, encoder: BeaconForMaskedLM) -> float:
        """Test MCC of a logistic regression on ``encoder``'s frozen mean-pooled features of the GUE task."""
        train, test = self.gue()
        train = train.select(subsample(len(train), self.budget.probe_train))
        return probe_mcc(*((mean_pooled_features(encoder, split, self.tokenizer), split["labels"])
                           for split in (train, test)))


def record(runs: list[Run], section: str, row: str, seed: int, measure: Callable[[], dict]) -> None:
    """Append ``Run(section, row, seed, measure())`` with its time, and print it."""
    metrics, wall, cpu = timed(measure)
    runs.append(Run(section, row, seed, metrics, wall, cpu))
    shown = ", ".join(f"{name}={value:.3f}" for name, value in metrics.items())
    print(f"  [{section}] {row} | seed {seed}: {shown} ({wall:.0f} s)", flush=True)


# ---- sections ------------------------------------------------------------------------------------------


def section_position(bench: Workbench) -> list[Run]:
    runs = []
    for seed in bench.budget.seeds:
        for position, name in POSITION_ROWS.items():
            for region, region_name in REGIONS.items():
                record(runs, "position", f"{name}, {region_name}", seed,
                       lambda: bench.heldout_metrics(bench.encoder("fixed", seed, position=position), region))
    return runs


def section_pretraining(bench: Workbench) -> list[Run]:
    budget, runs = bench.budget, []
    num_labels = len(set(bench.gue()[0]["labels"]))
    for seed in budget.seeds:
        for objective, row in MASKING_ROWS.items():
            def measure(objective=objective, row=row) -> dict:
                encoder = bench.encoder(objective, seed)
                model = bench.classifier(encoder, num_labels, seed)
                mcc = bench.finetune_gue(model, budget.transformer_lr, seed, f"{row} seed {seed}")
                return {**bench.heldout_metrics(encoder), "mcc": mcc}

            record(runs, "pretraining", row, seed, measure)
        record(runs, "pretraining", "none (from scratch)", seed, lambda: {"mcc": bench.finetune_gue(
            bench.classifier(None, num_labels, seed), budget.transformer_lr, seed, f"scratch seed {seed}")})
        record(runs, "pretraining", "CNN (BEACON baseline, no pretraining)", seed, lambda: {"mcc": bench.finetune_gue(
            bench.cnn(num_labels, seed), budget.cnn_lr, seed, f"CNN seed {seed}")})
    return runs


def section_self_distillation(bench: Workbench) -> list[Run]:
    budget, runs = bench.budget, []
    num_labels = len(set(bench.gue()[0]["labels"]))
    for seed in budget.seeds:
        for (objective, weights), row in DISTILLATION_ROWS.items():
            def measure(objective=objective, weights=weights, row=row) -> dict:
                encoder = bench.encoder(objective, seed, weights)
                metrics = {**bench.heldout_metrics(encoder), "probe_mcc": bench.probe(encoder)}
                if FINETUNED_WEIGHTS[objective] == weights:
                    metrics["mcc"] = bench.finetune_gue(bench.classifier(encoder, num_labels, seed),
                                                        budget.transformer_lr, seed, f"{row} seed {seed}")
                return metrics

            record(runs, "self_distillation", row, seed, measure)
    return runs


def section_semi_supervised(bench: Workbench) -> list[Run]:
    budget, runs = bench.budget, []
    _, labels, test = bench.nrc()
    for per_class in budget.labels_per_class:
        for seed in budget.seeds:
            labeled_index = stratified_labels(labels, per_class, seed)
            rest = np.setdiff1d(np.arange(len(labels)), labeled_index)
            labeled = bench.nrc_subset(labeled_index)
            # The unlabeled set keeps its labels: LayerMatchTrainer hides them from the method and logs the accuracy
            # of the kept pseudo-labels with them.
            unlabeled = bench.nrc_subset(rest[subsample(len(rest), budget.max_unlabeled, seed)])
            for method, (mode, grad_relu, avg_clustering) in SSL_METHODS.items():
                def measure(mode=mode, grad_relu=grad_relu, avg_clustering=avg_clustering, method=method) -> dict:
                    trainer = bench.train(
                        bench.cnn(len(NCRNA_LABELS), seed), labeled, budget.ssl_steps, budget.ssl_batch,
                        budget.cnn_lr, seed, f"nRC {method} {per_class}/class seed {seed}",
                        trainer_class=LayerMatchTrainer, mode=mode, grad_relu=grad_relu, avg_clustering=avg_clustering,
                        unlabeled_dataset=None if mode == "supervised" else unlabeled, mu=budget.ssl_mu,
                        threshold=SSL_THRESHOLD, compute_metrics=class_balanced_metrics,
                    )
                    scores = trainer.evaluate(test)
                    accuracy, ema = scores["eval_balanced_accuracy"], scores["eval_ema_balanced_accuracy"]
                    return {"accuracy": accuracy, "ema_accuracy": ema, "ema_minus_model": ema - accuracy,
                            **pseudo_label_summary(trainer.state.log_history)}

                record(runs, "semi_supervised", f"{method}, {per_class} labels/class", seed, measure)
    return runs


def section_imbalance(bench: Workbench) -> list[Run]:
    budget, runs = bench.budget, []
    _, labels, test = bench.nrc()
    for seed in budget.seeds:
        train = bench.nrc_subset(long_tailed_indices(labels, budget.imbalance_ratio, budget.head_class_size, seed))
        for arm, (replicas, episodes, multiple) in IMBALANCE_ARMS.items():
            def measure(replicas=replicas, episodes=episodes or budget.imwa_episodes, multiple=multiple, arm=arm):
                holder = {}

                def callbacks(trainer):
                    holder["imwa"] = IMWACallback(trainer, num_models=replicas, num_episodes=episodes,
                                                  ema_decay=budget.ema_decay)
                    return [holder["imwa"]]

                trainer = bench.train(bench.cnn(len(NCRNA_LABELS), seed), train, multiple * budget.imbalance_steps,
                                      budget.imbalance_batch, budget.imbalance_lr, seed, f"nRC {arm} seed {seed}",
                                      callbacks=callbacks, compute_metrics=class_balanced_metrics)
                scores = {**trainer.evaluate(test), **holder["imwa"].evaluate_ema(test)}
                metrics = {name: scores[f"eval_{name}"] for name in ("balanced_accuracy", "macro_f1",
                                                                      "ema_balanced_accuracy", "ema_macro_f1")}
                # The last training log averages the last quarter of the steps (logging_steps = steps // 4).
                losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
                return {**metrics, "ema_minus_model": metrics["ema_balanced_accuracy"] - metrics["balanced_accuracy"],
                        "final_train_loss": losses[-1]}

            record(runs, "imbalance", arm, seed, measure)
    return runs


SECTION_FUNCTIONS = {
    "position": section_position,
    "pretraining": section_pretraining,
    "self_distillation": section_self_distillation,
    "semi_supervised": section_semi_supervised,
    "imbalance": section_imbalance,
}

# ---- report ---------------------------------------------------------------------------------------------

LOSS_CELLS = [("loss", "held-out MLM loss"), ("floor", "floor", mean_only), ("loss_minus_floor", "loss - floor")]


def table(runs: list[Run], row_header: str, cells: list[tuple]) -> str:
    """Markdown table: one line per row label (first-seen order), one column per ``(metric, header[, fmt])`` cell,
    formatted by ``fmt`` (default :func:`mean_std`) over the seeds; ``n/a`` where a row lacks the metric."""
    rows = list(dict.fromkeys(run.row for run in runs))
    lines = [f"| {row_header} | " + " | ".join(cell[1] for cell in cells) + " | seeds |",
             "|---" * (len(cells) + 2) + "|"]
    for row in rows:
        found = [run for run in runs if run.row == row]
        values = []
        for metric, _, *fmt in cells:
            measured = [run.metrics[metric] for run in found if metric in run.metrics]
            values.append((fmt[0] if fmt else mean_std)(measured) if measured else "n/a")
        lines.append(f"| {row} | " + " | ".join(values) + f" | {len({run.seed for run in found})} |")
    return "\n".join(lines)


def comparisons(runs: list[Run], pairs: list[tuple[str, str, str]], metric: str) -> str:
    """A bullet per ``(label, A, B)``: ``metric`` of row A minus row B, per seed."""
    return "\n".join(f"- {describe_difference(label, paired_differences(runs, a, b, metric))}" for label, a, b in pairs)


def below_floor(runs: list[Run], row: str) -> str:
    margins = [run.metrics["loss_minus_floor"] for run in runs if run.row == row and "loss_minus_floor" in run.metrics]
    return f"- {row}: below the floor in {sum(margin < 0 for margin in margins)} of {len(margins)} seeds"


def render_section(name: str, runs: list[Run], budget: Budget, minutes: float | None) -> str:
    runs = [run for run in runs if run.section == name]
    pretraining = (f"{budget.pretrain_steps} steps x {budget.pretrain_batch} windows of <= {TRAIN_TOKENS - 2} bp of "
                   f"human chr1 + lambda, lr {budget.pretrain_lr:g}")
    heldout = (f"Held-out loss: the last {budget.heldout_bp:,} bp of chr1 (never in pretraining), "
               f"{EVAL_MLM_PROBABILITY:.0%} of tokens masked one by one (80/10/10, the same masks for every model); "
               "floor: the lowest loss a predictor without context reaches on the same tokens "
               "(`hf_genomics.no_context_mlm_loss`).")
    finetune = (f"fine-tuned on GUE {budget.gue_task} ({budget.finetune_steps} steps x {budget.finetune_batch}, "
                f"lr {budget.transformer_lr:g}, mean pooling; test MCC)")
    if name == "position":
        body = table(runs, "position encoding, tokens scored", LOSS_CELLS)
        rows = {(position, region): f"{POSITION_ROWS[position]}, {REGIONS[region]}"
                for position in POSITION_ROWS for region in REGIONS}
        pairs = [(f"{REGIONS[region]}: learned absolute - ALiBi", rows["absolute", region], rows["alibi", region])
                 for region in ("beyond", "before")]
        pairs += [(f"{POSITION_ROWS[position]}: positions {TRAIN_TOKENS}-511 - positions < {TRAIN_TOKENS}",
                   rows[position, "beyond"], rows[position, "before"]) for position in POSITION_ROWS]
        text = (f"### Position encoding: masked-LM loss beyond the training length (lower is better)\n\n"
                f"BEACON-mini pretrained with fixed masking ({pretraining}; one pretraining per seed, the ALiBi ones "
                f"are the next section's fixed arm). {heldout} The learned-absolute model has a 512-position table "
                f"but trained on {TRAIN_TOKENS}-token windows, so its positions {TRAIN_TOKENS}-511 keep their random "
                "initialisation (a learned table cannot run past its size at all; this is the fairest way to score "
                "it there).\n\n" + "\n".join(below_floor(runs, row) for row in rows.values()) + "\n"
                + comparisons(runs, [(f"held-out loss, {label}", a, b) for label, a, b in pairs], "loss"))
    elif name == "pretraining":
        body = table(runs, "pretraining", [*LOSS_CELLS, ("mcc", f"{budget.gue_task} MCC")])
        fixed, randommask = MASKING_ROWS["fixed"], MASKING_ROWS["randommask"]
        scratch = "none (from scratch)"
        text = (f"### RandomMask vs fixed masking ({len(budget.seeds)} pretraining seeds per arm)\n\nBEACON-mini, "
                "single nucleotides, "
                f"{pretraining}; span centres drawn with probability {budget.centre_probability} per token in both "
                "arms (RandomMask widens the span every fifth of the run, so it masks more tokens late in the run, "
                f"as in the paper). {heldout} Then each encoder is {finetune}; the from-scratch row and BEACON's CNN "
                f"({budget.cnn_hidden} channels, lr {budget.cnn_lr:g}) get the same fine-tuning.\n\n"
                + "\n".join(below_floor(runs, row) for row in MASKING_ROWS.values()) + "\n"
                + comparisons(runs, [("held-out loss, RandomMask - fixed", randommask, fixed)], "loss") + "\n"
                + comparisons(runs, [("MCC, RandomMask - fixed", randommask, fixed),
                                     ("MCC, fixed - from scratch", fixed, scratch),
                                     ("MCC, RandomMask - from scratch", randommask, scratch)], "mcc"))
    elif name == "self_distillation":
        base = momentum_base_for(budget.pretrain_steps, budget.teacher_initial_weight_left)
        left = initial_weight_in_teacher(budget.pretrain_steps, base)
        body = table(runs, "pretraining, weights", [*LOSS_CELLS, ("probe_mcc", "frozen probe MCC"),
                                                    ("mcc", "fine-tuned MCC")])
        sd, mlm = (DISTILLATION_ROWS[objective, weights] for objective, weights in FINETUNED_WEIGHTS.items())
        mlm_teacher = DISTILLATION_ROWS["mlm_only", "teacher"]
        text = (f"### Self-distillation vs MLM-only at equal compute\n\n`SelfDistillationTrainer` on BEACON-mini, "
                f"{pretraining}, with its default views (student: 1% point mutations, reverse complement p = 0.5, "
                "15% masked; teacher: shifted); MLM-only is the same run with distillation weight 0 (same views, "
                f"steps and forward passes). Teacher momentum: cosine from {base:.4f} to 1, so after "
                f"{budget.pretrain_steps} steps the teacher keeps **{left:.2%}** of its random initial weights. "
                f"{heldout} Frozen probe: logistic regression on the mean-pooled last hidden states of "
                f"{budget.probe_train} {budget.gue_task} training sequences, test MCC. What each method hands to "
                f"users (self-distillation: the EMA teacher; MLM-only: the student) is {finetune}.\n\n"
                + "\n".join(below_floor(runs, row) for row in DISTILLATION_ROWS.values()) + "\n"
                + comparisons(runs, [("fine-tuned MCC, self-distillation teacher - MLM-only student", sd, mlm)], "mcc")
                + "\n" + comparisons(runs, [("probe MCC, self-distillation teacher - MLM-only student", sd, mlm),
                                            ("probe MCC, self-distillation teacher - MLM-only teacher (same EMA)", sd,
                                             mlm_teacher)], "probe_mcc")
                + "\n" + comparisons(runs, [("held-out loss, self-distillation teacher - MLM-only student", sd, mlm)],
                                     "loss"))
    elif name == "semi_supervised":
        body = table(runs, "method, labels", [
            ("accuracy", "accuracy"), ("ema_accuracy", "EMA teacher accuracy"), ("ema_minus_model", "EMA - model"),
            ("mask_rate", "mask rate"), ("mask_rate_last", "mask rate, last quarter"),
            ("kept_label_accuracy", "kept-label accuracy")])
        pairs = [(f"{n} labels/class, {a} - {b}", f"{a}, {n} labels/class", f"{b}, {n} labels/class")
                 for n in budget.labels_per_class
                 for a, b in (("FixMatch", "supervised only"), ("Grad-ReLU only", "FixMatch"),
                              ("Avg-Clustering only", "FixMatch"), ("LayerMatch", "FixMatch"),
                              ("LayerMatch", "supervised only"))]
        text = (f"### Semi-supervised: nRC with BEACON's CNN (balanced test set, accuracy)\n\n`LayerMatchTrainer`, "
                f"{budget.ssl_steps} steps of {budget.ssl_batch} labeled RNAs plus mu = {budget.ssl_mu} times as many "
                f"unlabeled ones ({budget.max_unlabeled} drawn per seed from the rest of nRC's training set); labels "
                f"drawn per family and seed; threshold {SSL_THRESHOLD}; views without reverse complement; CNN with "
                f"{budget.cnn_hidden} channels, lr {budget.cnn_lr:g}, RNAs cut to {budget.nrc_max_length - 2} nt; "
                f"test: {budget.nrc_test_per_class or 'all'} nRC test RNAs per family. Mask rate: share of unlabeled "
                "RNAs whose pseudo-label passed the threshold; kept-label accuracy: share of those that were right "
                "(the true labels serve only this count). The EMA teacher (momentum 0.99 with warm-up) is scored on "
                "the same test set. Accuracy differences:\n\n" + comparisons(runs, pairs, "accuracy"))
    else:
        body = table(runs, "method", [
            ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro-F1"),
            ("ema_balanced_accuracy", "EMA balanced accuracy"), ("ema_macro_f1", "EMA macro-F1"),
            ("ema_minus_model", "EMA - model (balanced acc.)"), ("final_train_loss", "final training loss")])
        pairs = [("IMWA-2x", "plain-2x"), ("IMWA-2x", "MWA-2x"), ("IMWA-1x", "plain-1x"), ("plain-2x", "plain-1x")]
        smallest = max(1, round(budget.head_class_size / budget.imbalance_ratio))
        text = (f"### Class imbalance: nRC long-tailed (ratio {budget.imbalance_ratio:g}), balanced test\n\n"
                f"Training set from `hf_genomics.long_tailed_indices` (largest family {budget.head_class_size}, "
                f"smallest {smallest}; family order drawn per seed); BEACON's CNN ({budget.cnn_hidden} channels), "
                f"RNAs cut to {budget.nrc_max_length - 2} nt, batch {budget.imbalance_batch}, lr "
                f"{budget.imbalance_lr:g} (higher than the other sections' {budget.cnn_lr:g}, so that 1x reaches the "
                f"plateau); 1x = {budget.imbalance_steps} optimizer steps; test: {budget.nrc_test_per_class or 'all'} "
                "nRC test RNAs per family. Every arm is an `IMWACallback` run: plain = 1 replica; MWA-2x = 2 "
                "replicas of 1x steps each, averaged once at the end (vanilla model weight averaging); IMWA = 2 "
                f"replicas, {budget.imwa_episodes} episodes, each replica making half of the run's steps (IMWA-2x "
                f"gives each the 1x budget: the paper's 2x cost). Each arm's EMA (decay {budget.ema_decay} per "
                "replica step, with warm-up) follows the averaged model. The final training loss (mean over the last "
                "quarter of the run; with 2 replicas, theirs before the last average) shows whether 1x had levelled "
                "off: compare plain-1x with plain-2x.\n\n"
                + comparisons(runs, [(f"balanced accuracy, {a} - {b}", a, b) for a, b in pairs], "balanced_accuracy")
                + "\n" + comparisons(runs, [(f"macro-F1, {a} - {b}", a, b) for a, b in pairs], "macro_f1"))
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
        f"These are **tiny CPU models** (BEACON-mini: {budget.num_layers} layers x {budget.hidden_size} hidden, "
        f"{budget.num_heads} heads, single-nucleotide tokens; BEACON's CNN with {budget.cnn_hidden} channels) trained "
        "for minutes on real data shipped in `data/` (human chr1 + lambda, GUE, nRC). They compare methods under one "
        "protocol at this scale, not the published models. Every cell is the mean ± sample standard deviation over "
        f"seeds {', '.join(map(str, budget.seeds))}; a seed fixes the pretraining run too. Comparisons are per seed "
        "(A - B within a seed, then mean ± std over seeds). The protocol is in the module docstring of "
        "`benchmarks/compare_methods.py`; raw runs: `benchmarks/results_methods.json`.\n"
    )
    return header + "\n" + "\n".join(render_section(name, runs, budget, section_minutes.get(name))
                                      for name in sections)


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
                        help="torch threads (default: all cores; 1 with --quick, where tiny models gain nothing)")
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
        for name in SECTIONS:
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
