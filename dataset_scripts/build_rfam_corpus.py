"""Build the Rfam 14.2 seed RNA pretraining corpus as a Hub dataset folder, deduplicated against evaluation data.

    python dataset_scripts/build_beacon_real.py --output_dir outputs/beacon
    python dataset_scripts/build_rfam_corpus.py --output_dir outputs/rfam_corpus --exclude_dataset_dir outputs/beacon
    python examples/run_randommask.py --tokenizer nucleotide --dataset_dir outputs/rfam_corpus

Source: `data/rfam_seed_14_2/rfam14.2_seed.fa.gz` (72,262 seed sequences of 3,026 Rfam families, CC0; see
data/PROVENANCE.md). Sequences are upper-cased with T read as U. Then, in this order:
  1. every sequence identical to a sequence of any split of any config of each `--exclude_dataset_dir` is dropped
     (nRC, BEACON's ncRNA source, is itself cut from Rfam; the card reports the count per config and split);
  2. repeated sequences are kept once;
  3. a seeded `--heldout_family_fraction` of the families goes whole to `test`, so its loss measures what
     transfers to RNA families the model never saw; of the other families' sequences a seeded
     `--validation_fraction` goes to `validation` (families seen in training, sequences not) and the rest to `train`.
The folder has one config, `default`, with `train`, `validation` and `test` splits (columns `sequence`, `family`,
`id`).
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq

from hf_genomics.data.hub_dataset import HubConfig, write_hub_dataset

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
RFAM_SEED = DATA_DIR / "rfam_seed_14_2" / "rfam14.2_seed.fa.gz"
FEATURES = datasets.Features(
    {"sequence": datasets.Value("string"), "family": datasets.Value("string"), "id": datasets.Value("string")}
)


def normalize(sequence: str) -> str:
    """The form sequences are compared in: upper case, RNA letters."""
    return sequence.upper().replace("T", "U")


def read_rfam_seed(path: Path) -> list[tuple[str, str, str]]:
    """``(family, id, sequence)`` per record of the seed FASTA, whose headers read ``>RF00001|X01556.1/3-118``."""
    records, header, parts = [], None, []
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                if header is not None:
                    records.append((*header, "".join(parts)))
                family, _, name = line[1:].strip().partition("|")
                if not family.startswith("RF") or not name:
                    raise ValueError(f"{path}: header {line.strip()!r} is not '>RFxxxxx|<id>'.")
                header, parts = (family, name), []
            else:
                parts.append(line.strip())
    if header is not None:
        records.append((*header, "".join(parts)))
    return records


def evaluation_sequences(folder: Path) -> dict[str, set[str]]:
    """Normalized sequences of every split of every config of a Hub dataset folder, keyed ``config/split``."""
    found = {}
    for path in sorted(folder.glob("*/*.parquet")):
        table = pq.read_table(path, columns=["sequence"]) if "sequence" in pq.read_schema(path).names else None
        if table is not None:
            key = f"{folder.name}/{path.parent.name}/{path.name.split('-')[0]}"
            found.setdefault(key, set()).update(normalize(s) for s in table.column("sequence").to_pylist())
    if not found:
        raise ValueError(f"{folder} holds no <config>/<split>*.parquet files with a 'sequence' column.")
    return found


def build_corpus(records, excluded: dict[str, set[str]], heldout_family_fraction: float, validation_fraction: float,
                 seed: int):
    """(splits, report): rows per split after deduplication and the family hold-out, and what was dropped."""
    for name, value in (("heldout_family_fraction", heldout_family_fraction), ("validation_fraction",
                                                                                  validation_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value}.")
    everything = set().union(*excluded.values()) if excluded else set()
    overlap = Counter()
    seen, kept = set(), []
    for family, name, sequence in records:
        sequence = normalize(sequence)
        hits = [key for key, sequences in excluded.items() if sequence in sequences]
        for key in hits:
            overlap[key] += 1
        if hits or sequence in seen:
            continue
        seen.add(sequence)
        kept.append({"sequence": sequence, "family": family, "id": name})
    families = sorted({family for family, _, _ in records})
    rng = np.random.default_rng(seed)
    heldout = set(rng.choice(families, size=max(1, round(heldout_family_fraction * len(families))), replace=False))
    seen_families = [row for row in kept if row["family"] not in heldout]
    in_validation = rng.random(len(seen_families)) < validation_fraction
    splits = {"train": [row for row, chosen in zip(seen_families, in_validation) if not chosen],
              "validation": [row for row, chosen in zip(seen_families, in_validation) if chosen],
              "test": [row for row in kept if row["family"] in heldout]}
    # Seeded shuffles: the first rows of a split (what `--max_eval_samples` scores) are a sample of all its families.
    splits = {split: [rows[index] for index in rng.permutation(len(rows))] for split, rows in splits.items()}
    in_evaluation = sum(normalize(sequence) in everything for _, _, sequence in records)
    report = {
        "records": len(records),
        "families": len(families),
        "dropped_in_evaluation_data": in_evaluation,
        "evaluation_overlap": dict(sorted(overlap.items())),
        "dropped_repeats": len(records) - in_evaluation - len(kept),
        "heldout_families": len(heldout),
        "rows": {split: len(rows) for split, rows in splits.items()},
        "nucleotides": {split: sum(len(row["sequence"]) for row in rows) for split, rows in splits.items()},
    }
    return splits, report


# The split the shipped checkpoint's corpus was built with (build_beacon_real.py's RNAType reuses its test families).
DEFAULT_SPLIT = {"heldout_family_fraction": 0.05, "validation_fraction": 0.02, "seed": 0}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--rfam_fasta", default=str(RFAM_SEED), help="Rfam seed FASTA(.gz) with RFxxxxx| headers.")
    parser.add_argument("--exclude_dataset_dir", action="append", default=[],
                        help="Hub dataset folder whose sequences (all configs and splits) are dropped; repeatable.")
    parser.add_argument("--heldout_family_fraction", type=float, default=DEFAULT_SPLIT["heldout_family_fraction"],
                        help="Share of the families held out whole, as the test split.")
    parser.add_argument("--validation_fraction", type=float, default=DEFAULT_SPLIT["validation_fraction"],
                        help="Share of the other families' sequences held out as the validation split.")
    parser.add_argument("--seed", type=int, default=DEFAULT_SPLIT["seed"])
    args = parser.parse_args(argv)

    excluded = {}
    for folder in args.exclude_dataset_dir:
        excluded.update(evaluation_sequences(Path(folder)))
    splits, report = build_corpus(read_rfam_seed(Path(args.rfam_fasta)), excluded, args.heldout_family_fraction,
                                  args.validation_fraction, args.seed)
    overlap = ", ".join(f"{key} {count:,}" for key, count in report["evaluation_overlap"].items()) or "none"
    config = HubConfig(
        name="default",
        splits=splits,
        features=FEATURES,
        description=(
            f"Rfam 14.2 seed sequences, upper-cased, T read as U. {report['dropped_in_evaluation_data']:,} of the "
            f"{report['records']:,} records were dropped because they occur verbatim in evaluation data (per "
            f"config/split: {overlap}); {report['dropped_repeats']:,} repeats were dropped. `test` holds every kept "
            f"sequence of {report['heldout_families']} of the {report['families']:,} families, none of which is in "
            f"`train`; `validation` holds {args.validation_fraction:.0%} of the other families' sequences (seed "
            f"{args.seed})."
        ),
        source="Rfam 14.2 seed alignments (Kalvari et al. 2021), via bioinformatics-torvergata/RIG@f4ea738c09c9",
        license="CC0 (Rfam)",
        extra={"Nucleotides": ", ".join(f"{split} {count:,}" for split, count in report["nucleotides"].items())},
    )
    write_hub_dataset(
        args.output_dir, [config], title="Rfam 14.2 seed RNA pretraining corpus",
        summary="RNA masked-LM pretraining corpus built by hf_genomics' `dataset_scripts/build_rfam_corpus.py`.",
        license="cc0-1.0", task_categories=("fill-mask",), tags=("biology", "rna", "pretraining"),
    )
    (Path(args.output_dir) / "build_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
