"""Sequence files -> DNABERT-style pretraining chunks -> `datasets.Dataset` / `IterableDataset`.

DNABERT (Ji et al., 2021) pretrains on genome cuts of which half are full-length windows and half have a
random length (at least 5 bp). Here every record of every file is upper-cased (soft-masked repeats become
ordinary bases), split at runs of N, and each N-free piece is cut left to right into consecutive chunks:
with probability ``full_length_fraction`` the next chunk is ``max_length`` long, otherwise its length is
uniform in ``[min_length, max_length]``. Each chunk goes to the validation split with probability
``validation_fraction``. Both draws come from generators seeded by ``(seed, file index)`` so the chunks
and the split are the same in memory, streamed, and on every process.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from datasets import Dataset, IterableDataset

from ..io.fasta import GZIP_MAGIC, read_fasta, split_on_n_runs

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")
TEXT_SUFFIXES = (".txt", ".seq")
PARQUET_SUFFIXES = (".parquet",)
SPLITS = ("train", "validation")
_CHUNKING_DEFAULTS = {"max_length": 510, "min_length": 5, "full_length_fraction": 0.5, "validation_fraction": 0.02}


def _format_of(path: Path) -> str:
    name = path.name.lower()
    name = name[: -len(".gz")] if name.endswith(".gz") else name
    for kind, suffixes in (("fasta", FASTA_SUFFIXES), ("text", TEXT_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    raise ValueError(
        f"Cannot tell the format of {path}: expected FASTA ({', '.join(FASTA_SUFFIXES)}, optionally .gz), "
        f"plain text with one sequence per line ({', '.join(TEXT_SUFFIXES)}, optionally .gz) or Parquet "
        "(.parquet, with a 'sequence' column)."
    )


def read_sequence_records(path: str | Path, column: str = "sequence") -> Iterator[tuple[str, str]]:
    """Yields ``(record name, sequence)`` from a FASTA(.gz), a text file (one sequence per line) or Parquet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Sequence file not found: {path}")
    kind = _format_of(path)
    if kind == "fasta":
        for header, sequence in read_fasta(path, uppercase=False):
            yield header.split()[0] if header else path.name, sequence
    elif kind == "text":
        with open(path, "rb") as handle:
            compressed = handle.read(2) == GZIP_MAGIC
        with (gzip.open(path, "rt") if compressed else open(path)) as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    yield f"{path.name}:{line_number}", line.strip()
    else:
        parquet = pq.ParquetFile(path)
        if column not in parquet.schema_arrow.names:
            raise ValueError(f"{path} has no {column!r} column (columns: {parquet.schema_arrow.names}).")
        row = 0
        for batch in parquet.iter_batches(columns=[column]):
            for sequence in batch.column(0).to_pylist():
                row += 1
                yield f"{path.name}:{row}", sequence


def cut_chunks(
    sequence: str, rng: np.random.Generator, max_length: int, min_length: int, full_length_fraction: float
) -> list[str]:
    """Consecutive chunks of one N-free piece: full ``max_length`` windows or random lengths (DNABERT-style)."""
    chunks, start = [], 0
    while len(sequence) - start >= min_length:
        full = rng.random() < full_length_fraction
        length = max_length if full else int(rng.integers(min_length, max_length + 1))
        chunk = sequence[start : start + length]
        if len(chunk) >= min_length:
            chunks.append(chunk)
        start += length
    return chunks


def split_long_sequences(batch: dict, max_length: int, min_length: int = 1) -> dict:
    """``Dataset.map(batched=True)`` function: each ``sequence`` longer than ``max_length`` becomes consecutive
    windows of ``max_length`` (a later window shorter than ``min_length`` is dropped); other columns are repeated."""
    out = {key: [] for key in batch}
    for index, sequence in enumerate(batch["sequence"]):
        windows = [sequence[start : start + max_length] for start in range(0, len(sequence), max_length)]
        windows = [window for window in windows if len(window) >= min_length] or windows[:1]
        for key in batch:
            out[key].extend(windows if key == "sequence" else [batch[key][index]] * len(windows))
    return out


def pretraining_chunks(
    paths: Sequence[str | Path],
    split: str = "train",
    max_length: int = 510,
    min_length: int = 5,
    full_length_fraction: float = 0.5,
    validation_fraction: float = 0.02,
    seed: int = 0,
    file_indices: Sequence[int] | None = None,
) -> Iterator[dict[str, str]]:
    """Yields ``{"sequence", "source"}`` chunks of ``split`` ("train" or "validation") from sequence files.

    ``file_indices`` (default ``0, 1, ...``) seed each file's generators; a streaming shard holding a subset
    of the files passes their original indices.
    """
    _check_chunking(split, max_length, min_length, full_length_fraction, validation_fraction)
    file_indices = range(len(paths)) if file_indices is None else file_indices
    for file_index, path in zip(file_indices, paths):
        # Separate streams: changing validation_fraction must not move the chunk boundaries.
        length_rng = np.random.default_rng([seed, file_index, 0])
        split_rng = np.random.default_rng([seed, file_index, 1])
        for name, record in read_sequence_records(path):
            for piece in split_on_n_runs(record.upper()):
                for chunk in cut_chunks(piece, length_rng, max_length, min_length, full_length_fraction):
                    in_validation = split_rng.random() < validation_fraction
                    if in_validation == (split == "validation"):
                        yield {"sequence": chunk, "source": f"{Path(path).name}:{name}"}


def _check_chunking(split, max_length, min_length, full_length_fraction, validation_fraction, seed=0):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"Need 1 <= min_length <= max_length, got min_length={min_length}, max_length={max_length}.")
    for name, value in (("full_length_fraction", full_length_fraction), ("validation_fraction", validation_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}.")


def build_pretraining_dataset(paths: Sequence[str | Path], split: str = "train", **chunking) -> Dataset:
    """In-memory ``datasets.Dataset`` of the chunks of ``split`` (see :func:`pretraining_chunks`)."""
    rows = list(pretraining_chunks([str(path) for path in paths], split=split, **chunking))
    if not rows:
        raise ValueError(f"No {split} chunks of at least min_length bases in {[str(path) for path in paths]}.")
    return Dataset.from_dict({"sequence": [row["sequence"] for row in rows], "source": [row["source"] for row in rows]})


def iterable_pretraining_dataset(paths: Sequence[str | Path], split: str = "train", **chunking) -> IterableDataset:
    """Streaming ``datasets.IterableDataset`` of the same chunks, one shard per file (so processes and
    DataLoader workers can read different files)."""
    paths = [str(path) for path in paths]
    # Fail now on bad arguments or files, not in the first training step.
    _check_chunking(split, **{**_CHUNKING_DEFAULTS, **chunking})
    for path in paths:
        _format_of(Path(path))
    return IterableDataset.from_generator(
        _chunks_of_files,
        gen_kwargs={"paths": paths, "file_indices": list(range(len(paths))), "split": split, "chunking": chunking},
    )


def _chunks_of_files(paths, file_indices, split, chunking):
    yield from pretraining_chunks(paths, split=split, file_indices=file_indices, **chunking)
