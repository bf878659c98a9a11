"""Build a BEACON-style Hub dataset folder from the real data shipped in the repository's `data/`.

    python dataset_scripts/build_beacon_real.py --output_dir OUT [--max_ssp_length 512] [--spl_window 400]

With --configs, only those are rebuilt; the other configs already in OUT are kept. Every config but RNAType is built
by default: RNAType is Rfam itself, so a folder holding it, passed to build_rfam_corpus.py's --exclude_dataset_dir,
would empty the pretraining corpus of the 14 types' families. --max_rows_per_split keeps the first rows of each split
(for tests).

Configs (same columns as `build_beacon.py`, so `examples/run_beacon.py` trains on either):
  ncRNA         nRC (BEACON's source): 13 classes; a stratified, seeded validation split held out from train
  SSP           bpRNA (OmniGenBench "RGB" copy of a filtered bpRNA-1m split), train/valid/test
  SSP_archiveii ArchiveII, sincFold fold 0 (train/valid/test)
  CRI-On        Behan et al. 2019 sgRNA activity (rs3 test data), 23-nt sgRNA + PAM, seeded 70/10/20 split
  SPL           per-nucleotide none/acceptor/donor labels on C. elegans gene windows (WormBase WS282 introns)
  MRL           UTR-LM 5'UTR expression readout (211 designed UTRs), seeded 70/10/20 split
  VDP           OpenVaccine with measured labels: test = Kaggle public test (BEACON's rows), train/validation = private
  CRI-Off       SITE-seq guide/site pairs, label log1p(reads), split by guide
  RNAType       Rfam 14.2 seed sequences, 14 RNA types, split by family (test = build_rfam_corpus.py's held-out ones)
"""

import argparse
import csv
import gzip
import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from hf_genomics.data.beacon import RFAM_TYPE_LABELS, get_task
from hf_genomics.data.hub_dataset import HubConfig, beacon_features, write_hub_dataset
from hf_genomics.data.structure import dot_bracket_to_pairs
from hf_genomics.io import read_fasta, read_nrc
from hf_genomics.io.tables import read_csv_records

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script below, also when imported by path
# build_rfam_corpus.py's default split, with which pretrained/beacon-b-small's corpus was built: its `test` families
# (held out whole) are RNAType's test families, so that checkpoint saw no test sequence.
from build_rfam_corpus import DEFAULT_SPLIT as RFAM_CORPUS_SPLIT, build_corpus, read_rfam_seed  # noqa: E402


DATA_DIR = Path(__file__).resolve().parents[1] / "data"
RNA_LETTERS = "ACGU"
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
# Labels are stored as float32: a larger number would become inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _data_file(data_dir: Path, relative: str) -> Path:
    path = data_dir / relative
    if not path.is_file():
        raise ValueError(f"{path} is missing; --data_dir must be the repository's data/ folder (or a copy with the "
                         f"same layout, see data/PROVENANCE.md) holding {relative}.")
    return path


def _json_lines(path: Path, keys: tuple[str, ...]):
    """(where, record) for each line of a JSON-lines file (gzipped if it ends in .gz); every record must have
    `keys`."""
    lines = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    for line, text in enumerate(lines.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line}: not JSON ({error}); expected one JSON record per line.") from None
        missing = [key for key in keys if not isinstance(record, dict) or key not in record]
        if missing:
            raise ValueError(f"{path}:{line}: record has no {', '.join(map(repr, missing))}; expected keys "
                             f"{', '.join(map(repr, keys))}.")
        yield f"{path}:{line}", record


def _label(text: str, where: str) -> float:
    """A regression label: nan/inf (or past float32) would be trained on as if real, so only finite numbers pass."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError(f"{where}: label {text!r} is not a finite number; only finite numbers (float32 range) "
                         "are accepted.")
    return value


def _seeded_splits(rows: list[dict], seed: int, valid: float = 0.1, test: float = 0.2, stratify=None) -> dict:
    """Seeded train/validation/test split of `rows` (fractions of the whole)."""
    index = np.arange(len(rows))
    rest, test_index = train_test_split(index, test_size=test, random_state=seed, stratify=stratify)
    rest_stratify = None if stratify is None else np.asarray(stratify)[rest]
    train_index, valid_index = train_test_split(
        rest, test_size=valid / (1 - test), random_state=seed, stratify=rest_stratify
    )
    return {split: [rows[k] for k in sorted(part)] for split, part in
            (("train", train_index), ("validation", valid_index), ("test", test_index))}


def build_ncrna(data_dir: Path, seed: int, validation_size: int = 650) -> HubConfig:
    """nRC train (6,320) / test (2,600); `validation_size` rows (BEACON: 650) held out of train, stratified."""
    train = read_nrc(_data_file(data_dir, "nrc_ncrna/dataset_Rfam_6320_13classes.fasta"))
    test = read_nrc(_data_file(data_dir, "nrc_ncrna/dataset_Rfam_validated_2600_13classes.fasta"))
    train_rows, valid_rows = train_test_split(
        train, test_size=validation_size, random_state=seed, stratify=[row["label"] for row in train]
    )
    return HubConfig(
        name="ncRNA",
        splits={"train": train_rows, "validation": valid_rows, "test": test},
        features=beacon_features("ncRNA"),
        description=f"nRC ncRNA family classification (13 classes), BEACON's ncRNA source. Validation: "
        f"{validation_size} train rows held out, stratified by class (seed {seed}). Test: the 2,600-row nRC test "
        "file BEACON also ships. Class ids follow the alphabetical class names (BEACON's ids are undocumented). "
        "Sequences are DNA letters with IUPAC codes, as in the source.",
        source="Fiannaca et al. 2017 (nRC), via diegodslima/NCYPred@5db66740131d",
        license="GPL-3.0 (NCYPred repository); nRC is derived from Rfam (CC0)",
    )


def _clean_rna(sequence: str) -> tuple[str, int]:
    """Uppercase; any letter other than A/C/G/U (N, IUPAC codes, X) becomes N. Returns (sequence, #replaced)."""
    sequence = sequence.upper().replace("T", "U")
    letters = np.frombuffer(sequence.encode(), dtype=np.uint8)
    other = ~np.isin(letters, np.frombuffer(RNA_LETTERS.encode(), dtype=np.uint8))
    return np.where(other, ord("N"), letters).astype(np.uint8).tobytes().decode(), int(other.sum())


def _structure_rows(records, max_length: int, prefix: str) -> tuple[list[dict], dict]:
    rows, stats = [], {"too_long": 0, "replaced_letters": 0}
    for record_id, raw_sequence, structure in records:
        if len(raw_sequence) > max_length:
            stats["too_long"] += 1
            continue
        sequence, replaced = _clean_rna(raw_sequence)
        stats["replaced_letters"] += replaced
        pairs = dot_bracket_to_pairs(structure, sequence, name=f"{prefix}:{record_id}")
        rows.append({"id": record_id, "sequence": sequence, "structure": structure, "pairs": pairs.tolist()})
    return rows, stats


def build_ssp_bprna(data_dir: Path, max_length: int) -> HubConfig:
    splits, notes = {}, []
    for split, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
        path = _data_file(data_dir, f"bprna_rgb/{name}.json")
        records = [record for _, record in _json_lines(path, ("seq", "label"))]
        splits[split], stats = _structure_rows(
            ((f"bprna_{name}_{k}", r["seq"], r["label"]) for k, r in enumerate(records)), max_length, str(path)
        )
        notes.append(f"{split}: {len(records)} source rows, {stats['too_long']} longer than {max_length} nt dropped, "
                     f"{stats['replaced_letters']} non-ACGU letters set to N")
    return HubConfig(
        name="SSP",
        splits=splits,
        features=beacon_features("SSP"),
        description=f"bpRNA secondary structure (BEACON SSP style): `pairs` are 0-based base pairs from the "
        f"dot-bracket `structure` (pseudoknots as `Aa`). Sequences longer than {max_length} nt are dropped so CPU "
        "fine-tuning is feasible; lowercase is uppercased and non-ACGU letters (N, IUPAC, X) become N. This is a "
        "filtered bpRNA-1m split (OmniGenBench RGB), not BEACON's TR0/VL0/TS0, so scores are not directly "
        "comparable to Table 3.",
        source="Danaee et al. 2018 (bpRNA-1m), via yangheng95/OmniGenBench@b189bdc2a8c4 RGB/RNA-SSP-bpRNA",
        license="Apache-2.0 (OmniGenBench repository); bpRNA-1m states no license",
        extra={"Filtering": "; ".join(notes)},
    )


def build_ssp_archiveii(data_dir: Path, max_length: int, fold: int = 0) -> HubConfig:
    records = read_csv_records(_data_file(data_dir, "archiveii/ArchiveII.csv"), ("id", "sequence", "structure"))
    by_id = {row["id"]: row for _, row in records}
    partition = defaultdict(list)
    splits_path = _data_file(data_dir, "archiveii/ArchiveII_splits.csv")
    for _, row in read_csv_records(splits_path, ("id", "fold_number", "partition")):
        if int(row["fold_number"]) == fold:
            partition[row["partition"]].append(row["id"])
    splits, notes = {}, []
    for split, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
        records = ((i, by_id[i]["sequence"], by_id[i]["structure"]) for i in partition[name])
        splits[split], stats = _structure_rows(records, max_length, "ArchiveII.csv")
        notes.append(f"{split}: {stats['too_long']} longer than {max_length} nt dropped")
    return HubConfig(
        name="SSP_archiveii",
        splits=splits,
        features=beacon_features("SSP"),
        description=f"ArchiveII secondary structures (pseudoknots as `[]{{}}<>`), sincFold k-fold split, fold {fold}; "
        f"sequences longer than {max_length} nt dropped.",
        source="Sloma & Mathews 2016 (ArchiveII), via sinc-lab/sincFold@8916bfbf0507",
        license="GPL-3.0 (sincFold repository); ArchiveII states no license",
        extra={"Filtering": "; ".join(notes)},
    )


def build_crispr_on(data_dir: Path, seed: int) -> HubConfig:
    """23-nt sgRNA + PAM cut out of the 30-nt context (4 nt 5' flank, 20 nt spacer, NGG, 3 nt 3' flank)."""
    path = _data_file(data_dir, "crispr_ontarget_rs3/Behan2019_activity.csv")
    columns = ("sgRNA Context Sequence", "sgRNA Sequence", "Target Gene Symbol", "avg_mean_centered_neg_lfc")
    rows = []
    for where, row in read_csv_records(path, columns):
        context, spacer = row["sgRNA Context Sequence"].upper(), row["sgRNA Sequence"].upper()
        if len(context) != 30 or context[4:24] != spacer:
            raise ValueError(f"{where}: context {context!r} does not hold sgRNA {spacer!r} at 4..24.")
        rows.append({"id": f"{spacer}_{row['Target Gene Symbol']}", "sequence": context[4:27],
                     "label": _label(row["avg_mean_centered_neg_lfc"], where)})
    return HubConfig(
        name="CRI-On",
        splits=_seeded_splits(rows, seed),
        features=beacon_features("CRI-On"),
        description=f"CRISPR-Cas9 on-target activity regression (BEACON CRI-On style): 23-nt spacer + PAM, label "
        f"`avg_mean_centered_neg_lfc` (Behan et al. 2019 screen). Random 70/10/20 split, seed {seed}.",
        source="Behan et al. 2019, via gpp-rnd/rs3@99bd62811aed test_data/Behan2019_activity.csv",
        license="Apache-2.0 (rs3 repository)",
    )


def _gff_features(path: Path, kinds: set[str], source: str = "WormBase"):
    with open(path) as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 9 and fields[1] == source and fields[2] in kinds:
                attributes = dict(item.split("=", 1) for item in fields[8].split(";") if "=" in item)
                yield fields[2], fields[0], int(fields[3]), int(fields[4]), fields[6], attributes


def _splice_rows(genome: dict[str, str], genes: list, introns: dict, window: int) -> list[dict]:
    """Tile each gene (transcript orientation) with non-overlapping `window`-nt windows; label introns' ends."""
    rows = []
    for chrom, start, end, strand, gene_id in genes:
        labels = np.zeros(end - start + 1, dtype=np.int64)
        for intron_start, intron_end in introns[chrom, strand]:
            if start <= intron_start and intron_end <= end:
                five_prime, three_prime = (intron_start, intron_end) if strand == "+" else (intron_end, intron_start)
                labels[five_prime - start] = 2  # donor: first intron nucleotide (G of GT)
                labels[three_prime - start] = 1  # acceptor: last intron nucleotide (G of AG)
        sequence = genome[chrom][start - 1 : end]
        if strand == "-":
            sequence, labels = sequence.translate(_COMPLEMENT)[::-1], labels[::-1]
        for offset in range(0, len(sequence) - window + 1, window):
            rows.append({"id": f"{gene_id}:{offset}", "sequence": sequence[offset : offset + window],
                         "label": labels[offset : offset + window].tolist()})
    return rows


def build_splice(data_dir: Path, seed: int, window: int) -> HubConfig:
    fasta = _data_file(data_dir, "celegans_1pct/1pct_elegans.fa")
    gff = _data_file(data_dir, "celegans_1pct/1pct_elegans.gff3")
    genome = {header.split()[0]: sequence for header, sequence in read_fasta(fasta)}
    genes, introns = [], defaultdict(set)
    for kind, chrom, start, end, strand, attributes in _gff_features(gff, {"gene", "intron"}):
        if kind == "intron":
            introns[chrom, strand].add((start, end))
        elif attributes.get("biotype") == "protein_coding":
            genes.append((chrom, start, end, strand, attributes["ID"].removeprefix("Gene:")))
    gene_ids = [gene[-1] for gene in genes]
    gene_split = _seeded_splits([{"id": g} for g in gene_ids], seed, valid=0.1, test=0.2)
    splits = {}
    for split, members in gene_split.items():
        chosen = {row["id"] for row in members}
        splits[split] = _splice_rows(genome, [g for g in genes if g[-1] in chosen], introns, window)
    return HubConfig(
        name="SPL",
        splits=splits,
        features=beacon_features("SPL"),
        description=f"Per-nucleotide splice-site labels (BEACON SPL style: 0 none, 1 acceptor, 2 donor). Each "
        "WormBase protein-coding gene is read in transcript orientation (reverse complement on the - strand) and "
        f"tiled with non-overlapping {window}-nt windows (a shorter tail is dropped). Every WormBase intron inside "
        "the gene marks its first nucleotide (the G of GT) as donor and its last (the G of AG) as acceptor; "
        "introns of all isoforms count. Genes, not windows, are split 70/10/20 at random "
        f"(seed {seed}), so no gene spans two splits.",
        source="WormBase WS282 C. elegans (1% subset), via KorfLab/datacore@9f0501d5c4f1 genome_celegans",
        license="MIT (datacore repository); WormBase data",
    )


def build_mrl(data_dir: Path, seed: int) -> HubConfig:
    path = _data_file(data_dir, "utr_expression_utrlm/ExperimentData_Optimus_MRL.csv")
    rows = []
    for where, row in read_csv_records(path, ("rvac_ID", "utr_originial_varylength", "label")):
        rows.append({"id": row["rvac_ID"], "sequence": row["utr_originial_varylength"].upper(),
                     "label": _label(row["label"], where)})
    return HubConfig(
        name="MRL",
        splits=_seeded_splits(rows, seed),
        features=beacon_features("MRL"),
        description="5'UTR expression regression (MRL style): 211 designed 5'UTRs measured in C2C12 cells "
        f"(luciferase), label = the wet-lab readout. Random 70/10/20 split, seed {seed}. Not the Sample et al. "
        "polysome MRL set BEACON uses; it is small and only for demos and tests.",
        source="UTR-LM (Chu et al. 2024), via a96123155/UTR-LM@b77b589bf182",
        license="GPL-3.0 (UTR-LM repository)",
    )


VDP_TARGETS = get_task("VDP").target_names  # reactivity, deg_Mg_pH10, deg_Mg_50C
VDP_TEST_LENGTH = 107  # Kaggle's public test: BEACON's VDP test rows


def _vdp_row(where: str, record: dict) -> dict:
    sequence, scored = record["sequence"], record["seq_scored"]
    if any(len(record[column]) != len(sequence) for column in ("structure", "predicted_loop_type")):
        raise ValueError(f"{where}: structure or predicted_loop_type is not as long as the sequence ({len(sequence)}).")
    if not isinstance(scored, int) or not 0 < scored <= len(sequence):
        raise ValueError(f"{where}: seq_scored {scored!r} must be an integer in 1..{len(sequence)}.")
    try:
        label = np.array([record[target][:scored] for target in VDP_TARGETS], dtype=np.float64).T
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: the targets' first seq_scored={scored} values must be numbers ({error}).") from None
    bad = ~np.isfinite(label) | (np.abs(label) > FLOAT32_MAX)
    if label.shape != (scored, len(VDP_TARGETS)) or bad.any():
        position, target = np.argwhere(bad)[0] if bad.any() else (label.shape[0], 0)
        raise ValueError(f"{where}: {VDP_TARGETS[target]}[{position}] is missing or not a finite number; the first "
                         f"seq_scored={scored} values of {', '.join(VDP_TARGETS)} must be.")
    # The labelled release has no signal_to_noise: null (as build_beacon.py stores unlabelled test rows), so a filter
    # on it fails loudly instead of dropping every row as NaN comparisons would.
    return {"id": record["id"], "sequence": sequence, "structure": record["structure"],
            "predicted_loop_type": record["predicted_loop_type"], "signal_to_noise": None, "seq_scored": scored,
            "label": label.tolist()}


def build_vdp(data_dir: Path, seed: int, validation: float = 0.1) -> HubConfig:
    """Test: the 107-nt (Kaggle public test) rows; the 130-nt (private test) rows split into train/validation."""
    path = _data_file(data_dir, "openvaccine_labeled/openvaccine_test_labeled.jsonl.gz")
    keys = ("id", "sequence", "structure", "predicted_loop_type", "seq_scored", *VDP_TARGETS)
    rows = [_vdp_row(where, record) for where, record in _json_lines(path, keys)]
    test = [row for row in rows if len(row["sequence"]) == VDP_TEST_LENGTH]
    rest = [row for row in rows if len(row["sequence"]) != VDP_TEST_LENGTH]
    train, valid = train_test_split(rest, test_size=validation, random_state=seed)
    scored = {split: sorted({row["seq_scored"] for row in part}) for split, part in
              (("train", train), ("validation", valid), ("test", test))}
    return HubConfig(
        name="VDP",
        splits={"train": train, "validation": valid, "test": test},
        features=beacon_features("VDP"),
        description="OpenVaccine mRNA degradation (BEACON VDP): per-nucleotide reactivity, deg_Mg_pH10 and "
        "deg_Mg_50C of the first `seq_scored` nucleotides (`label`, one row of the 3 targets per scored nucleotide), "
        "scored by MCRMSE. The rows are the Kaggle test set with the measurements released after the competition. "
        f"Test: the {len(test)} public-test RNAs ({VDP_TEST_LENGTH} nt, 68 scored), the rows BEACON's VDP number "
        "comes from (BEACON submitted to Kaggle's public leaderboard), scored offline here. Train/validation: the "
        f"{len(rest):,} private-test RNAs (130 nt, 91 scored), split {1 - validation:.0%}/{validation:.0%} at random "
        f"(seed {seed}). BEACON trained on Kaggle's 2,400-row training set (107 nt; 2,155 / 245 rows after its "
        "signal_to_noise filters), which we do not have, so only the test rows match BEACON's. The labelled release "
        "has no signal_to_noise: the column is null and no row is filtered (BEACON keeps train rows >= 0.6, "
        "validation rows >= 1.0).",
        source="Kaggle OpenVaccine (Das lab / Eterna) test set with labels, via DasLab/KaggleOpenVaccine@b95af835cc38",
        license="MIT (KaggleOpenVaccine repository)",
        extra={"Scored positions": ", ".join(f"{split} {'/'.join(map(str, n))}" for split, n in scored.items())},
    )


def build_crispr_off(data_dir: Path, seed: int) -> HubConfig:
    """SITE-seq pairs (guide + PAM, 23-nt site), label log1p(reads); guides are split, not rows."""
    path = _data_file(data_dir, "crispr_offtarget_site/SITE.csv.gz")
    by_guide = defaultdict(list)
    for where, row in read_csv_records(path, ("", "on_seq", "off_seq", "reads")):
        reads = _label(row["reads"], where)
        if reads < 0:
            raise ValueError(f"{where}: reads {row['reads']!r} is negative; read counts are >= 0.")
        guide, site = row["on_seq"].upper(), row["off_seq"].upper()
        if len(guide) != 23 or len(site) != 23:
            raise ValueError(f"{where}: on_seq {guide!r} and off_seq {site!r} must both be 23 nt (20 nt + PAM).")
        by_guide[guide].append({"id": f"SITE:{row['']}", "sgrna": guide, "target": site, "label": math.log1p(reads)})
    guide_split = _seeded_splits([{"id": guide} for guide in sorted(by_guide)], seed, valid=0.1, test=0.2)
    rng = np.random.default_rng(seed)
    splits, guides = {}, {}
    for split, members in guide_split.items():
        guides[split] = [member["id"] for member in members]
        rows = [row for guide in guides[split] for row in by_guide[guide]]
        # Shuffled: the first rows (what a row cap or --max_eval_samples keeps) sample every guide of the split.
        splits[split] = [rows[k] for k in rng.permutation(len(rows))]
    active = {split: sum(row["label"] > 0 for row in rows) for split, rows in splits.items()}
    return HubConfig(
        name="CRI-Off",
        splits=splits,
        features=beacon_features("CRI-Off"),
        description="CRISPR-Cas9 off-target cleavage (BEACON CRI-Off layout): a pair input, `sgrna` = the 20-nt "
        "spacer + PAM as the source writes it (`NGG`, N literal) and `target` = the 23-nt genomic site with its own "
        "PAM (DNA letters), scored by Spearman. Label: log1p(SITE-seq reads), 0 for an inactive site. Spearman only "
        "ranks, so it equals the Spearman on raw reads, while the log keeps the MSE loss off counts up to hundreds. "
        "BEACON's CRI-Off (DeepCRISPR data) is likewise a regression target that is mostly 0, but the data differ, so "
        "numbers are not comparable to its Table 3. One guide (GGGGCCACTAGGGACAGGAT) has reads of 0 or 1 only in "
        f"the source. The {len(by_guide)} guides, not the rows, are split 70/10/20 at random (seed {seed}), so no "
        "guide is in two splits; rows are shuffled within each split (same seed). Sites repeated in the genome keep "
        "one row per location.",
        source="SITE-seq (Cameron et al. 2017), CRISPR-M's SITE set, via lyotvincent/CRISPR-M@6ade4696e287",
        license="MIT (CRISPR-M repository)",
        extra={
            "Guides (20-nt spacers)": "; ".join(f"{split} {', '.join(g[:20] for g in members)}"
                                                for split, members in guides.items()),
            "Active sites (reads > 0)": ", ".join(f"{split} {n:,}" for split, n in active.items()),
        },
    )


def rfam_type(type_field: str) -> str:
    """Rfam `#=GF TP` cut to its first two levels: "Gene; snRNA; snoRNA; CD-box;" -> "snRNA", "Cis-reg;" ->
    "cis-reg"."""
    levels = [level.strip() for level in type_field.split(";") if level.strip()]
    return levels[1] if len(levels) > 1 else levels[0].lower()


def build_rna_type(data_dir: Path, seed: int, validation: float = 0.1) -> HubConfig:
    """Rfam seed sequences of the RFAM_TYPE_LABELS types; split by family, test = the corpus' held-out families."""
    table = _data_file(data_dir, "rfam_seed_14_2/rfam14.2_families.tsv")
    with open(table, newline="") as handle:
        types = {row["family"]: rfam_type(row["type"]) for row in csv.DictReader(handle, delimiter="\t")}
    records = read_rfam_seed(_data_file(data_dir, "rfam_seed_14_2/rfam14.2_seed.fa.gz"))
    unknown = sorted({family for family, _, _ in records} - set(types))
    if unknown:
        raise ValueError(f"{table}: no type for famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown[:5])}.")
    corpus, report = build_corpus(records, {}, **RFAM_CORPUS_SPLIT)
    kept = {split: [row for row in rows if types[row["family"]] in RFAM_TYPE_LABELS] for split, rows in corpus.items()}
    # The corpus shuffled its rows: the first rows of each split (what a row cap keeps) sample all its families.
    seen = kept["train"] + kept["validation"]
    families_of = defaultdict(set)
    for row in seen:
        families_of[types[row["family"]]].add(row["family"])
    rng = np.random.default_rng(seed)
    held = set()
    for name in sorted(families_of):
        families = sorted(families_of[name])
        held.update(rng.choice(families, size=max(1, round(validation * len(families))), replace=False))
    rows = {"train": [row for row in seen if row["family"] not in held],
            "validation": [row for row in seen if row["family"] in held], "test": kept["test"]}
    splits = {split: [{"id": f"{row['family']}|{row['id']}", "sequence": row["sequence"],
                       "label": RFAM_TYPE_LABELS.index(types[row["family"]])} for row in part]
              for split, part in rows.items()}
    counts = {split: Counter(RFAM_TYPE_LABELS[row["label"]] for row in part) for split, part in splits.items()}
    family_counts = {split: Counter(types[f] for f in {row["family"] for row in part}) for split, part in rows.items()}
    no_test = [name for name in RFAM_TYPE_LABELS if not counts["test"][name]]
    return HubConfig(
        name="RNAType",
        splits=splits,
        features=beacon_features("RNAType"),
        description=f"Rfam RNA-type classification ({len(RFAM_TYPE_LABELS)} classes): Rfam 14.2 seed sequences "
        "labelled by their family's type (`#=GF TP`, first two levels: `Gene; snRNA; snoRNA; CD-box;` -> snRNA, "
        "`Cis-reg;` -> cis-reg, `Gene;` -> gene); families of other types (rRNA, tRNA, antitoxin, Intron) are left "
        "out. Sequences are upper-cased with T read as U and deduplicated as `build_rfam_corpus.py` does (each "
        f"sequence once, under the first family holding it; {report['dropped_repeats']:,} repeats of all "
        "types dropped). Split by family, so no family and no sequence is in two splits. Test: the families of these "
        f"types among the {report['heldout_families']} that `build_rfam_corpus.py` holds out whole with its defaults "
        f"({RFAM_CORPUS_SPLIT['heldout_family_fraction']:.0%}, seed {RFAM_CORPUS_SPLIT['seed']}), which "
        f"pretrained/beacon-b-small never saw. Validation: {validation:.0%} of each type's other families (at least "
        f"one, seed {seed}); train: the rest. Classes without a test family: {', '.join(no_test) or 'none'}.",
        source="Rfam 14.2 seed alignments (Kalvari et al. 2021), via bioinformatics-torvergata/RIG@f4ea738c09c9",
        license="CC0 (Rfam)",
        extra={
            "Sequences per class": "; ".join(
                f"{split}: " + ", ".join(f"{name} {counts[split][name]:,}" for name in RFAM_TYPE_LABELS)
                for split in splits),
            "Families per class": "; ".join(
                f"{split}: " + ", ".join(f"{name} {family_counts[split][name]}" for name in RFAM_TYPE_LABELS)
                for split in splits),
        },
    )


CONFIG_NAMES = ("ncRNA", "SSP", "SSP_archiveii", "CRI-On", "SPL", "MRL", "VDP", "CRI-Off", "RNAType")
DEFAULT_CONFIGS = tuple(name for name in CONFIG_NAMES if name != "RNAType")  # see the module docstring


def build(output_dir: str | Path, data_dir: str | Path = DATA_DIR, seed: int = 42, max_ssp_length: int = 512,
          spl_window: int = 400, configs: tuple[str, ...] = DEFAULT_CONFIGS,
          max_rows_per_split: int | None = None) -> list[str]:
    unknown = sorted(set(configs) - set(CONFIG_NAMES))
    if unknown or not configs:
        raise ValueError(f"unknown config(s) {unknown or '(none given)'}; choose from {', '.join(CONFIG_NAMES)}.")
    if max_rows_per_split is not None and max_rows_per_split < 1:
        raise ValueError(f"max_rows_per_split must be a positive number of rows or None, got {max_rows_per_split}.")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"data_dir {data_dir} is not a folder; expected the repository's data/ folder.")
    builders = {
        "ncRNA": lambda: build_ncrna(data_dir, seed),
        "SSP": lambda: build_ssp_bprna(data_dir, max_ssp_length),
        "SSP_archiveii": lambda: build_ssp_archiveii(data_dir, max_ssp_length),
        "CRI-On": lambda: build_crispr_on(data_dir, seed),
        "SPL": lambda: build_splice(data_dir, seed, spl_window),
        "MRL": lambda: build_mrl(data_dir, seed),
        "VDP": lambda: build_vdp(data_dir, seed),
        "CRI-Off": lambda: build_crispr_off(data_dir, seed),
        "RNAType": lambda: build_rna_type(data_dir, seed),
    }
    configs = [builders[name]() for name in CONFIG_NAMES if name in configs]
    if max_rows_per_split is not None:
        configs = [replace(config, splits={split: rows[:max_rows_per_split] for split, rows in config.splits.items()},
                           extra={**config.extra, "Row cap": f"only the first {max_rows_per_split} rows of each split "
                                  "(a test build; the counts above are of the whole data)"})
                   for config in configs]
    write_hub_dataset(
        output_dir,
        configs,
        title="BEACON-style RNA tasks from openly redistributable sources",
        summary="Real datasets laid out like the BEACON benchmark (Ren et al., 2024) so `examples/run_beacon.py` "
        "trains on them. Each config names its source, license and any filtering below; only ncRNA and VDP use the "
        "same source data as BEACON (VDP's test rows are BEACON's, with their labels).",
        license="other",
        task_categories=("text-classification", "token-classification"),
    )
    return [config.name for config in configs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--data_dir", default=str(DATA_DIR), help="the repository's data/ folder")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_ssp_length", type=int, default=512, help="drop SSP sequences longer than this")
    parser.add_argument("--spl_window", type=int, default=400, help="SPL window length in nt")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), choices=CONFIG_NAMES,
                        help="which configs to build (default: all but RNAType)")
    parser.add_argument("--max_rows_per_split", type=int, default=None,
                        help="keep only the first N rows of each split (small builds for tests)")
    args = parser.parse_args(argv)
    names = build(args.output_dir, args.data_dir, args.seed, args.max_ssp_length, args.spl_window,
                  tuple(args.configs), args.max_rows_per_split)
    print(f"wrote {', '.join(names)} to {args.output_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
