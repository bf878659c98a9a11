"""Build a BEACON-style Hub dataset folder from the real data shipped in the repository's `data/`.

    python dataset_scripts/build_beacon_real.py --output_dir OUT [--max_ssp_length 512] [--spl_window 400]

With --configs, only those are rebuilt; the other configs already in OUT are kept.

Configs (same columns as `build_beacon.py`, so `examples/run_beacon.py` trains on either):
  ncRNA         nRC (BEACON's source): 13 classes; a stratified, seeded validation split held out from train
  SSP           bpRNA (OmniGenBench "RGB" copy of a filtered bpRNA-1m split), train/valid/test
  SSP_archiveii ArchiveII, sincFold fold 0 (train/valid/test)
  CRI-On        Behan et al. 2019 sgRNA activity (rs3 test data), 23-nt sgRNA + PAM, seeded 70/10/20 split
  SPL           per-nucleotide none/acceptor/donor labels on C. elegans gene windows (WormBase WS282 introns)
  MRL           UTR-LM 5'UTR expression readout (211 designed UTRs), seeded 70/10/20 split
"""

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from hf_genomics.data.hub_dataset import HubConfig, beacon_features, write_hub_dataset
from hf_genomics.data.structure import dot_bracket_to_pairs
from hf_genomics.io import read_fasta, read_nrc
from hf_genomics.io.tables import read_csv_records


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
    """(where, record) for each line of a JSON-lines file; every record must have `keys`."""
    for line, text in enumerate(path.read_text().splitlines(), start=1):
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


CONFIG_NAMES = ("ncRNA", "SSP", "SSP_archiveii", "CRI-On", "SPL", "MRL")


def build(output_dir: str | Path, data_dir: str | Path = DATA_DIR, seed: int = 42, max_ssp_length: int = 512,
          spl_window: int = 400, configs: tuple[str, ...] = CONFIG_NAMES) -> list[str]:
    unknown = sorted(set(configs) - set(CONFIG_NAMES))
    if unknown or not configs:
        raise ValueError(f"unknown config(s) {unknown or '(none given)'}; choose from {', '.join(CONFIG_NAMES)}.")
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
    }
    configs = [builders[name]() for name in CONFIG_NAMES if name in configs]
    write_hub_dataset(
        output_dir,
        configs,
        title="BEACON-style RNA tasks from openly redistributable sources",
        summary="Real datasets laid out like the BEACON benchmark (Ren et al., 2024) so `examples/run_beacon.py` "
        "trains on them. Each config names its source, license and any filtering below; only ncRNA uses the same "
        "source data as BEACON.",
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
    parser.add_argument("--configs", nargs="+", default=list(CONFIG_NAMES), choices=CONFIG_NAMES,
                        help="which configs to build (default: all)")
    args = parser.parse_args(argv)
    names = build(args.output_dir, args.data_dir, args.seed, args.max_ssp_length, args.spl_window,
                  tuple(args.configs))
    print(f"wrote {', '.join(names)} to {args.output_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
