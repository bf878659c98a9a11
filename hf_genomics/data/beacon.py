"""Registry of the 13 BEACON RNA tasks (Ren et al., 2024, "BEACON: Benchmark for Comprehensive RNA Tasks and
Language Models", NeurIPS Datasets & Benchmarks, arXiv:2406.10391), plus tasks built from other real data.

A `BeaconTask` is the one place a task's behaviour lives: its dataset columns (`features`), how a batch of rows is
tokenized and its labels cut to the tokenized length (`encode`), how labels are laid out and which ignore value pads
them (`label_shape`, read by `DataCollatorForBeacon`), which metric scores it (`metric`, reduced by
`hf_genomics.metrics.BeaconMetrics`) and the test-set numbers published in BEACON's Table 3 (mean over 3 seeds, in
the paper's units). Adding a task means adding one object; no module branches on task names.
"""

from dataclasses import dataclass, field

import datasets
import numpy as np


SEQUENCE_HEAD = "BeaconForSequenceClassification"
TOKEN_HEAD = "BeaconForTokenClassification"
PAIRWISE_HEAD = "BeaconForPairwisePrediction"
PAIR_INPUT_HEAD = "BeaconForSequencePairClassification"

# Column order of BEACON Table 3.
RESULT_COLUMNS = (
    "SSP", "CMP", "DMP", "SSI", "SPL", "APA", "ncRNA", "Modif", "MRL", "VDP", "PRS", "CRI-On", "CRI-Off",
)  # fmt: skip

# BEACON Table 3 (test split; % except VDP MCRMSE). Transcribed from RNABenchmark images/exp1.png.
PUBLISHED_RESULTS = {
    "Lit. SOTA": (65.4, 66.0, 68.75, 37.2, 32.18, 50.82, 85.73, 84.0, 78.0, 0.263, 55.67, 44.1, 12.6),
    "CNN": (49.95, 43.89, 27.76, 34.36, 8.43, 50.93, 88.62, 70.87, 74.13, 0.361, 45.40, 29.69, 11.40),
    "ResNet": (57.26, 59.59, 30.26, 37.74, 21.15, 56.45, 88.33, 71.03, 74.34, 0.349, 55.21, 28.55, 11.50),
    "LSTM": (58.61, 40.41, 44.77, 35.44, 36.66, 67.03, 88.78, 94.83, 83.94, 0.329, 55.45, 26.83, 8.60),
    "RNA-FM": (68.50, 47.56, 51.45, 42.36, 34.84, 70.32, 96.81, 94.98, 79.47, 0.347, 55.98, 31.62, 2.49),
    "RNABERT": (57.27, 45.21, 48.19, 31.62, 0.18, 57.66, 68.95, 82.82, 29.79, 0.378, 54.60, 29.77, 4.27),
    "RNA-MSM": (57.98, 57.26, 37.49, 39.22, 38.33, 70.40, 84.85, 94.89, 83.48, 0.330, 56.94, 34.92, 3.85),
    "Splice-H510": (64.93, 45.80, 55.56, 38.91, 44.80, 58.65, 95.92, 62.57, 83.49, 0.321, 54.90, 26.61, 4.00),
    "Splice-MS510": (43.24, 52.64, 10.27, 38.58, 50.55, 52.46, 95.87, 55.87, 84.98, 0.315, 50.98, 27.13, 3.49),
    "Splice-MS1024": (68.26, 47.32, 55.89, 39.22, 48.52, 60.03, 96.05, 53.45, 67.15, 0.313, 57.72, 27.59, 5.00),
    "UTR-LM-MRL": (59.71, 45.51, 55.21, 39.52, 36.20, 64.99, 89.97, 56.41, 77.78, 0.325, 57.28, 28.49, 4.28),
    "UTR-LM-TE&EL": (59.57, 60.32, 54.94, 40.15, 37.35, 72.09, 81.33, 59.70, 82.50, 0.319, 53.37, 32.49, 2.91),
    "UTRBERT-3mer": (60.37, 51.03, 50.95, 34.31, 44.24, 69.52, 92.88, 95.14, 83.89, 0.337, 56.83, 29.92, 4.48),
    "UTRBERT-4mer": (59.41, 44.91, 47.77, 33.22, 42.04, 72.71, 94.32, 95.10, 82.90, 0.341, 56.43, 23.20, 3.11),
    "UTRBERT-5mer": (47.92, 44.71, 48.67, 31.27, 39.19, 72.70, 93.04, 94.78, 75.64, 0.343, 57.16, 25.74, 3.93),
    "UTRBERT-6mer": (38.56, 51.56, 50.02, 29.93, 38.58, 71.17, 93.12, 95.08, 83.60, 0.340, 57.14, 28.60, 4.90),
    "BEACON-B": (64.18, 60.81, 56.28, 38.78, 37.43, 70.59, 94.63, 94.74, 72.29, 0.320, 54.67, 26.01, 4.42),
    "BEACON-B512": (58.75, 61.20, 56.82, 39.13, 37.24, 72.00, 94.99, 94.92, 72.35, 0.320, 55.20, 28.17, 3.82),
}

# nRC class names; BEACON's integer ids are undocumented (RNABenchmark issue #11), so ours are alphabetical.
NCRNA_LABELS = (
    "5S_rRNA", "5_8S_rRNA", "CD-box", "HACA-box", "IRES", "Intron_gpI", "Intron_gpII",
    "leader", "miRNA", "riboswitch", "ribozyme", "scaRNA", "tRNA",
)  # fmt: skip
MODIFICATION_LABELS = (
    "hAm", "hCm", "hGm", "hUm", "hm1A", "hm5C", "hm5U", "hm6A", "hm6Am", "hm7G", "hPsi", "Atol",
)  # fmt: skip
SPLICE_LABELS = ("none", "acceptor", "donor")


# The value every padded or unlabelled position of a label tensor holds (transformers' `ignore_index`).
IGNORE_INDEX = -100

# How a column of our Hub layout is stored (`BeaconTask.columns`).
_COLUMN_FEATURES = {
    "string": datasets.Value("string"),
    "float": datasets.Value("float32"),
    "int": datasets.Value("int32"),
    "floats": datasets.List(datasets.Value("float32")),  # one number per nucleotide, or per target
    "float_rows": datasets.List(datasets.List(datasets.Value("float32"))),  # L x T per-nucleotide targets, or L x L
    "pairs": datasets.List(datasets.List(datasets.Value("int32"))),  # 0-based [i, j] pairs
    "multi_hot": datasets.List(datasets.Value("int8")),
}


@dataclass(frozen=True)
class BeaconTask:
    """One task: columns, label layout, head, metric and published results.

    `inputs` are the sequence columns (two for a pair input); `columns` maps every other stored column to its kind
    (a key of `_COLUMN_FEATURES`, or "class" / "classes" for one / per-nucleotide class ids named by `label_names`);
    `label_column` holds the target. Per-nucleotide labels are scored only where the input column
    `scored_where_missing` is -1 when that is set (SSI), and cover only a prefix of the sequence when
    `labels_cover_prefix` (VDP scores the first `seq_scored` nucleotides).

    `metric` names a function of `hf_genomics.metrics`; `metric_key` is the key it gets in `compute_metrics`
    output (so `TrainingArguments(metric_for_best_model=task.metric_key)`). `percent` says whether BEACON reports
    the metric multiplied by 100. `strand_specific` says whether a label holds only for the sequence as given, not
    for its reverse complement (true of every BEACON task: RNA is single-stranded), with the reason in
    `strand_reason`; augmentations then keep reverse complement off by default
    (`hf_genomics.data.augment.reverse_complement_probability`).
    """

    name: str
    beacon_dir: str
    category: str  # "structure" | "function" | "engineering"
    input_kind: str  # "single" | "pair"
    level: str  # "sequence" | "nucleotide" | "pairwise"
    problem_type: str  # transformers `config.problem_type`
    num_labels: int
    metric: str
    metric_key: str
    head: str
    source: str
    split_sizes: tuple[int, int, int]
    strand_specific: bool
    strand_reason: str
    columns: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    label_column: str = "label"
    inputs: tuple[str, ...] = ("sequence",)
    scored_where_missing: str | None = None
    labels_cover_prefix: bool = False
    label_names: tuple[str, ...] | None = None
    target_names: tuple[str, ...] | None = None
    greater_is_better: bool = True
    percent: bool = True
    notes: str = ""
    published: dict[str, float] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if not self.columns:  # sequence-level tasks store one `label` column, typed by the problem
            if self.problem_type == "single_label_classification":
                kind = "class"
            elif self.problem_type == "multi_label_classification":
                kind = "multi_hot"
            else:
                kind = "floats" if self.num_labels > 1 else "float"
            object.__setattr__(self, "columns", {"label": kind})

    @property
    def is_regression(self) -> bool:
        return self.problem_type == "regression"

    @property
    def label_shape(self) -> tuple[str, ...]:
        """Axes of one example's collated label: () a class id or number, ("targets",), ("tokens",),
        ("tokens", "targets") or ("tokens", "tokens"); "tokens" axes span the whole tokenized sequence."""
        targets = ("targets",) if self.num_labels > 1 and self.problem_type != "single_label_classification" else ()
        if self.level == "pairwise":
            return ("tokens", "tokens")
        if self.level == "nucleotide":
            return ("tokens", *targets)
        return targets

    def features(self, label_names: tuple[str, ...] | None = None) -> datasets.Features:
        """The task's dataset schema in our Hub layout: `id`, the input columns, then `columns`. Class columns are
        named by `label_names` (default: the task's own, else "0", "1", ...)."""
        names = list(label_names or self.label_names or (str(k) for k in range(self.num_labels)))
        kinds = {**_COLUMN_FEATURES, "class": datasets.ClassLabel(names=names)}
        kinds["classes"] = datasets.List(kinds["class"])
        string = _COLUMN_FEATURES["string"]
        return datasets.Features(
            {"id": string, **{column: string for column in self.inputs},
             **{column: kinds[kind] for column, kind in self.columns.items()}}
        )

    def encode(self, batch: dict[str, list], tokenizer, max_length: int = 1026) -> dict[str, list]:
        """`Dataset.map(..., batched=True)` function: `input_ids` (and `input_ids_b` for a pair input) and `labels`
        in the compact per-example form `DataCollatorForBeacon` expands. Sequences longer than `max_length - 2`
        are truncated and their labels (pairs, maps) cut to match, as in BEACON."""
        kwargs = {"truncation": True, "max_length": max_length, "return_attention_mask": False}
        encoded = {key: tokenizer(batch[column], **kwargs)["input_ids"]
                   for key, column in zip(("input_ids", "input_ids_b"), self.inputs)}
        labels = batch[self.label_column]
        if self.level == "sequence":
            return {**encoded, "labels": labels}
        # Nucleotides per row: the tokens between the two special tokens. A missing label (an unlabelled test row)
        # labels no position.
        lengths = [len(ids) - 2 for ids in encoded["input_ids"]]
        labels = [[] if label is None else label for label in labels]
        if self.columns[self.label_column] == "pairs":
            labels = [[pair for pair in pairs if pair[0] < n and pair[1] < n] for pairs, n in zip(labels, lengths)]
        elif self.level == "pairwise":
            labels = [[row[:n] for row in matrix[:n]] for matrix, n in zip(labels, lengths)]
        elif self.scored_where_missing:
            labels = [np.where(np.asarray(inputs[:n]) == -1, label[:n], IGNORE_INDEX).tolist()
                      for inputs, label, n in zip(batch[self.scored_where_missing], labels, lengths)]
        else:
            labels = [label[:n] for label, n in zip(labels, lengths)]
        return {**encoded, "labels": labels}


def _published(name: str) -> dict[str, float]:
    column = RESULT_COLUMNS.index(name)
    return {model: row[column] for model, row in PUBLISHED_RESULTS.items()}


BEACON_TASKS: dict[str, BeaconTask] = {
    task.name: task
    for task in (
        BeaconTask(
            name="SSP", beacon_dir="Secondary_structure_prediction", category="structure", input_kind="single",
            level="pairwise", problem_type="multi_label_classification", num_labels=1,
            metric="secondary_structure_f1", metric_key="f1", head=PAIRWISE_HEAD,
            columns={"structure": "string", "pairs": "pairs"}, label_column="pairs",
            source="bpRNA-1m (TR0/VL0/TS0)", split_sizes=(10814, 1300, 1305),
            strand_specific=True,
            strand_reason="base pairs of one RNA strand; its reverse complement is another molecule (G-U becomes C-A).",
            notes="F1 pooled over all L x L cells of all test sequences at p > 0.5.", published=_published("SSP"),
        ),
        BeaconTask(
            name="CMP", beacon_dir="ContactMap", category="structure", input_kind="single", level="pairwise",
            problem_type="multi_label_classification", num_labels=1, metric="contact_top_l_precision",
            metric_key="top_l_precision", head=PAIRWISE_HEAD, source="RNAcontact (PDB)", split_sizes=(188, 23, 80),
            columns={"contacts": "pairs"}, label_column="contacts",
            strand_specific=True,
            strand_reason="3-D contacts of one RNA molecule; its reverse complement is another molecule.",
            notes="Top-L precision on long-range pairs, counting only predictions with p > 0.5.",
            published=_published("CMP"),
        ),
        BeaconTask(
            name="DMP", beacon_dir="DistanceMap", category="structure", input_kind="single", level="pairwise",
            problem_type="regression", num_labels=1, metric="pearson_r2", metric_key="r2", head=PAIRWISE_HEAD,
            source="RNAcontact (PDB)", split_sizes=(188, 23, 80),
            columns={"distance_map": "float_rows"}, label_column="distance_map",
            strand_specific=True,
            strand_reason="3-D distances of one RNA molecule; its reverse complement is another molecule.",
            published=_published("DMP"),
        ),
        BeaconTask(
            name="SSI", beacon_dir="StructuralScoreImputation", category="structure", input_kind="single",
            level="nucleotide", problem_type="regression", num_labels=1, metric="pearson_r2", metric_key="r2",
            head=TOKEN_HEAD, source="StructureImpute (icSHAPE, HEK293)", split_sizes=(14049, 1756, 3095),
            columns={"struct": "floats", "label": "floats"}, scored_where_missing="struct",
            strand_specific=True,
            strand_reason="icSHAPE reactivity of each base of the transcript, measured on that strand only.",
            notes="Scored only where the input icSHAPE profile is -1 (missing).", published=_published("SSI"),
        ),
        BeaconTask(
            name="SPL", beacon_dir="SpliceAI", category="function", input_kind="single", level="nucleotide",
            problem_type="single_label_classification", num_labels=3, label_names=SPLICE_LABELS,
            metric="splice_topk_accuracy", metric_key="acc_at_k", head=TOKEN_HEAD, source="SpliceAI",
            split_sizes=(144628, 18078, 16505),
            columns={"label": "classes"},
            strand_specific=True,
            strand_reason="donor (GU) and acceptor (AG) sites are read along the pre-mRNA, 5' to 3'.",
            published=_published("SPL"),
        ),
        BeaconTask(
            name="APA", beacon_dir="Isoform", category="function", input_kind="single", level="sequence",
            problem_type="regression", num_labels=1, metric="logit_pearson_r2", metric_key="r2",
            head=SEQUENCE_HEAD, source="APARENT (Bogard et al. MPRA)", split_sizes=(145463, 33170, 49755),
            strand_specific=True,
            strand_reason="the polyadenylation signal (AAUAAA) and cleavage site act on the sense transcript only.",
            notes="Pearson^2 after a logit transform of clipped predictions and targets.",
            published=_published("APA"),
        ),
        BeaconTask(
            name="ncRNA", beacon_dir="NoncodingRNAFamily", category="function", input_kind="single",
            level="sequence", problem_type="single_label_classification", num_labels=13, label_names=NCRNA_LABELS,
            metric="accuracy", metric_key="accuracy", head=SEQUENCE_HEAD, source="nRC (Fiannaca et al. 2017)",
            split_sizes=(5679, 650, 2600),
            strand_specific=True,
            strand_reason="an ncRNA family is defined by the molecule's sequence and fold, not its reverse complement.",
            published=_published("ncRNA"),
        ),
        BeaconTask(
            name="Modif", beacon_dir="Modification", category="function", input_kind="single", level="sequence",
            problem_type="multi_label_classification", num_labels=12, label_names=MODIFICATION_LABELS,
            metric="mean_roc_auc", metric_key="mean_auc", head=SEQUENCE_HEAD, source="MultiRM",
            split_sizes=(304661, 3599, 1200),
            strand_specific=True,
            strand_reason="modified bases sit on the RNA strand, in motifs read 5' to 3'.",
            published=_published("Modif"),
        ),
        BeaconTask(
            name="MRL", beacon_dir="MeanRibosomeLoading", category="function", input_kind="single",
            level="sequence", problem_type="regression", num_labels=1, metric="pearson_r2", metric_key="r2",
            head=SEQUENCE_HEAD, source="Optimus (Sample et al. 2019)", split_sizes=(76319, 7600, 7600),
            strand_specific=True,
            strand_reason="ribosomes scan the 5'UTR 5' to 3'; its start codons and uORFs are on that strand only.",
            published=_published("MRL"),
        ),
        BeaconTask(
            name="VDP", beacon_dir="Degradation", category="engineering", input_kind="single", level="nucleotide",
            problem_type="regression", num_labels=3, target_names=("reactivity", "deg_Mg_pH10", "deg_Mg_50C"),
            metric="mcrmse", metric_key="mcrmse", head=TOKEN_HEAD, source="OpenVaccine (Kaggle)",
            split_sizes=(2155, 245, 629),
            columns={"structure": "string", "predicted_loop_type": "string", "signal_to_noise": "float",
                     "seq_scored": "int", "label": "float_rows"},
            labels_cover_prefix=True,
            strand_specific=True,
            strand_reason="degradation and reactivity of each base of one mRNA molecule.",
            greater_is_better=False, percent=False,
            notes="MCRMSE over the scored (first seq_scored) positions. BEACON's own test labels are Kaggle-only; "
            "build_beacon_real.py's VDP config has them (its test split is the 629 Kaggle public-test rows, labelled).",
            published=_published("VDP"),
        ),
        BeaconTask(
            name="PRS", beacon_dir="ProgrammableRNASwitches", category="engineering", input_kind="single",
            level="sequence", problem_type="regression", num_labels=3, target_names=("ON", "OFF", "ON_OFF"),
            metric="mean_pearson_r2", metric_key="r2", head=SEQUENCE_HEAD,
            source="Angenent-Mari et al. toehold switches", split_sizes=(73227, 9153, 9154),
            strand_specific=True,
            strand_reason="a toehold switch is one RNA strand: its toehold and RBS work in that orientation.",
            published=_published("PRS"),
        ),
        BeaconTask(
            name="CRI-On", beacon_dir="CRISPROnTarget", category="engineering", input_kind="single",
            level="sequence", problem_type="regression", num_labels=1, metric="spearman", metric_key="spearman",
            head=SEQUENCE_HEAD, source="DeepCRISPR", split_sizes=(1453, 207, 416),
            strand_specific=True,
            strand_reason="the sgRNA spacer is followed by its PAM (NGG) on one strand; the order is the input.",
            published=_published("CRI-On"),
        ),
        BeaconTask(
            name="CRI-Off", beacon_dir="CRISPROffTarget", category="engineering", input_kind="pair",
            level="sequence", problem_type="regression", num_labels=1, metric="spearman", metric_key="spearman",
            head=PAIR_INPUT_HEAD, source="DeepCRISPR", split_sizes=(14223, 2032, 4064),
            inputs=("sgrna", "target"),
            strand_specific=True,
            strand_reason="sgRNA and off-target site are aligned 5' to 3' with the PAM last.",
            published=_published("CRI-Off"),
        ),
    )
}


# Rfam 14.2 RNA types (`#=GF TP`, first two levels) with at least 25 seed families; rRNA, antitoxin, Intron and tRNA
# have fewer and are left out. "gene" and "cis-reg" are Rfam's families typed no further than that.
RFAM_TYPE_LABELS = (
    "CRISPR", "IRES", "antisense", "cis-reg", "frameshift_element", "gene", "leader", "lncRNA", "miRNA", "riboswitch",
    "ribozyme", "sRNA", "snRNA", "thermoregulator",
)  # fmt: skip

# Tasks built from real data beyond BEACON's 13 (no published numbers).
EXTRA_TASKS: dict[str, BeaconTask] = {
    task.name: task
    for task in (
        BeaconTask(
            name="RNAType", beacon_dir="", category="function", input_kind="single", level="sequence",
            problem_type="single_label_classification", num_labels=len(RFAM_TYPE_LABELS), label_names=RFAM_TYPE_LABELS,
            metric="accuracy", metric_key="accuracy", head=SEQUENCE_HEAD, source="Rfam 14.2 seed alignments",
            split_sizes=(53883, 4808, 2782),
            strand_specific=True,
            strand_reason="an RNA's type is defined by the molecule's sequence and fold, not its reverse complement.",
            notes="Split by family: no Rfam family has sequences in two splits.",
        ),
    )
}

ALL_TASKS: dict[str, BeaconTask] = {**BEACON_TASKS, **EXTRA_TASKS}


def get_task(name: str) -> BeaconTask:
    """Look up a task by its abbreviation (case-insensitive), e.g. `get_task("ncRNA")`: BEACON's 13 and
    `EXTRA_TASKS`."""
    by_lower = {key.lower(): task for key, task in ALL_TASKS.items()}
    task = by_lower.get(str(name).lower())
    if task is None:
        raise ValueError(f"Unknown task {name!r}; valid names are: {', '.join(ALL_TASKS)}.")
    return task
