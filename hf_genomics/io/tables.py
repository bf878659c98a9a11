"""CSV tables read by the dataset builders: the columns a builder needs must be there, and every error names the
file and line."""

import csv
import gzip
from collections.abc import Iterator
from pathlib import Path


def read_csv_records(path: str | Path, columns: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    """Yields `("path:line", row)` for each row of a CSV file (gzipped if it ends in .gz) whose header names every one
    of `columns`; a missing column, or a row with fewer fields than the header, is a `ValueError` naming the file (and
    line)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in columns if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(map(repr, missing))}; this table is read for "
                             f"{', '.join(map(repr, columns))}, found {reader.fieldnames}.")
        for line, row in enumerate(reader, start=2):
            if None in (row[column] for column in columns):
                raise ValueError(f"{path}:{line}: row has fewer fields than the header ({', '.join(columns)}).")
            yield f"{path}:{line}", row
