"""Build a Hub dataset folder of DNABERT-style pretraining chunks from FASTA / text / Parquet files.

    python dataset_scripts/build_pretraining_corpus.py --output_dir outputs/dna_pretraining_corpus
    python examples/run_randommask.py --dataset_dir outputs/dna_pretraining_corpus

The folder holds `data/{train,validation}-0000i-of-0000n.parquet` (column `sequence`, plus `source`) and a
`README.md` whose YAML `configs:` lets `datasets.load_dataset(folder)` load it offline (no loading script).
Without `--input`, the embedded real corpus (human chr1 fragment + lambda phage, see data/PROVENANCE.md) is used.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from hf_genomics.corpus import default_corpus_files
from hf_genomics.data.pretraining_corpus import SPLITS, build_pretraining_dataset


def write_shards(dataset, folder: Path, split: str, num_shards: int) -> list[str]:
    num_shards = max(1, min(num_shards, len(dataset)))
    names = []
    for index in range(num_shards):
        name = f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        dataset.shard(num_shards=num_shards, index=index, contiguous=True).to_parquet(str(folder / name))
        names.append(name)
    return names


def dataset_card(inputs: list[str], counts: dict[str, int], args: argparse.Namespace) -> str:
    return f"""---
license: {args.license}
task_categories:
- fill-mask
tags:
- dna
- genomics
- pretraining
configs:
- config_name: default
  default: true
  data_files:
  - split: train
    path: data/train-*.parquet
  - split: validation
    path: data/validation-*.parquet
dataset_info:
  features:
  - name: sequence
    dtype: string
  - name: source
    dtype: string
---

# DNA pretraining chunks

Built by hf_genomics' `dataset_scripts/build_pretraining_corpus.py` from: {", ".join(inputs)}.

Each record was upper-cased (soft-masked repeats become ordinary bases) and split at runs of N; each N-free piece
was cut into consecutive chunks, {args.full_length_fraction:.0%} of them {args.max_length} bp long and the rest of a
uniform random length in [{args.min_length}, {args.max_length}] bp (DNABERT's recipe). {args.validation_fraction:.0%} of
the chunks (seeded draw, seed {args.seed}) form the validation split.

| split | chunks |
|---|---|
""" + "".join(f"| {split} | {count} |\n" for split, count in counts.items()) + """
`source` names the file and record each chunk comes from. Check the licenses of the input files before
publishing; for the embedded corpus see the repository's `data/PROVENANCE.md`.
"""


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", nargs="+", help="FASTA(.gz), text or Parquet files (default: embedded corpus).")
    parser.add_argument("--output_dir", required=True, help="Folder to create (must not exist or be empty).")
    parser.add_argument("--max_length", type=int, default=510)
    parser.add_argument("--min_length", type=int, default=5)
    parser.add_argument("--full_length_fraction", type=float, default=0.5)
    parser.add_argument("--validation_fraction", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows_per_shard", type=int, default=20_000)
    parser.add_argument("--min_train_shards", type=int, default=2, help="So streaming runs can shard across processes.")
    parser.add_argument("--license", default="other")
    args = parser.parse_args(argv)

    inputs = args.input or [str(path) for path in default_corpus_files("dna")]
    output = Path(args.output_dir)
    if output.exists() and any(output.iterdir()):
        raise ValueError(f"{output} exists and is not empty; choose a new --output_dir.")
    (output / "data").mkdir(parents=True, exist_ok=True)
    chunking = dict(
        max_length=args.max_length,
        min_length=args.min_length,
        full_length_fraction=args.full_length_fraction,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
    )
    counts = {}
    for split in SPLITS:
        dataset = build_pretraining_dataset(inputs, split=split, **chunking)
        minimum = args.min_train_shards if split == "train" else 1
        write_shards(dataset, output / "data", split, max(minimum, math.ceil(len(dataset) / args.rows_per_shard)))
        counts[split] = len(dataset)
    (output / "README.md").write_text(dataset_card([Path(path).name for path in inputs], counts, args))
    print(f"Wrote {counts} chunks to {output}")
    return output


if __name__ == "__main__":
    main()
