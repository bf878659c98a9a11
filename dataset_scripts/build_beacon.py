"""Convert the official BEACON data release into one Hub dataset folder (Parquet per task and split + card).

    python dataset_scripts/build_beacon.py --raw_dir RAW --output_dir OUT [--tasks SSP ncRNA ...]

RAW is the unpacked Google Drive folder of terry-r123/RNABenchmark, one sub-folder per task named as in BEACON
(`Secondary_structure_prediction`, `ContactMap`, ..., see `hf_genomics.data.beacon`). Without --tasks, tasks whose
folder is missing are skipped; a task folder that is there (or asked for) must hold all its split files. Configs
already in OUT that are not rebuilt are kept. Afterwards `datasets.load_dataset(OUT, "ncRNA")` works offline.
"""

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from hf_genomics.data.beacon import BEACON_TASKS, get_task
from hf_genomics.data.hub_dataset import HubConfig, beacon_features, write_hub_dataset
from hf_genomics.data.structure import dot_bracket_to_pairs, matrix_to_pairs
from hf_genomics.io.tables import read_csv_records


BEACON_CITATION = """@inproceedings{ren2024beacon,
  title={{BEACON}: Benchmark for Comprehensive {RNA} Tasks and Language Models},
  author={Ren, Yuchen and Chen, Zhiyuan and Qiao, Lifeng and Jing, Hongtai and Cai, Yuchen and Xu, Sheng and
          Ye, Peng and Ma, Xinzhu and Sun, Siqi and Yan, Hongliang and others},
  booktitle={Advances in Neural Information Processing Systems (Datasets and Benchmarks Track)},
  year={2024}
}"""
SPLIT_FILES = {"train": "train", "validation": "val", "test": "test"}
EXTRA_STRUCTURE_TEST_SETS = ("RFAM19", "DIRECT")
# Columns each task's CSV is read by, by position as in BEACON (names only for error messages; headers vary).
# BEACON's CSV header per task (by position) and, for each CSV column, the column of our layout it fills (None:
# unused by BEACON; a column named twice gets the fields joined, as PRS's three targets). Default: seq, label.
CSV_COLUMNS = {
    "CMP": (("id", "id"), ("seq", "sequence")),
    "DMP": (("id", "id"), ("seq", "sequence")),
    "SSI": (("seq", "sequence"), ("struct", "struct"), ("label", "label")),
    "APA": (("index", None), ("seq", "sequence"), ("label", "label")),
    "PRS": (("seq", "sequence"), ("ON", "label"), ("OFF", "label"), ("ON_OFF", "label")),
    "CRI-Off": (("sgrna", "sgrna"), ("target", "target"), ("label", "label")),
}
DEFAULT_CSV_COLUMNS = (("seq", "sequence"), ("label", "label"))
SSP_COLUMNS = ("data_name", "file_name", "seq")
# Labels are stored as float32: a larger number would become inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _clean_sequence(sequence: str, where: str) -> str:
    sequence = sequence.strip().upper()
    if not sequence.isalpha():
        raise ValueError(f"{where}: sequence {sequence[:30]!r} contains non-letter characters.")
    return sequence


def _require_file(path: Path, expected: str) -> Path:
    if not path.is_file():
        raise ValueError(f"{path} is missing; expected {expected}.")
    return path


def _csv_rows(path: Path, columns: tuple[str, ...]):
    """(where, fields) for each data row of a BEACON CSV, header skipped; every row needs `columns` by position."""
    n_rows = 0
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for line, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) < len(columns):
                raise ValueError(f"{path}:{line}: {len(fields)} column(s); expected {len(columns)} "
                                 f"({', '.join(columns)}, by position).")
            n_rows += 1
            yield f"{path}:{line}", fields
    if not n_rows:
        raise ValueError(f"{path}: no data rows after the header; expected rows of {', '.join(columns)}.")


def _floats(text: str, where: str, expected: int | None = None) -> list[float]:
    """Space-separated finite numbers (`expected` of them): nan/inf labels would be trained on as if real."""
    try:
        values = [float(x) for x in text.split()]
    except ValueError:
        raise ValueError(f"{where}: expected space-separated numbers, got {text[:40]!r}.") from None
    if expected is not None and len(values) != expected:
        raise ValueError(f"{where}: expected {expected} numbers, got {len(values)} in {text[:40]!r}.")
    for value in values:
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise ValueError(f"{where}: {value} in {text[:40]!r} is not a finite float32; only finite numbers "
                             "are accepted.")
    return values


def _split_paths(task_dir: Path, extra: tuple[str, ...] = ()) -> dict[str, Path]:
    """train/val/test CSVs (all required) and those of the optional `extra` test sets that exist."""
    paths = {split: _require_file(task_dir / f"{stem}.csv", f"{stem}.csv next to the other BEACON split files")
             for split, stem in SPLIT_FILES.items()}
    return paths | {name: task_dir / f"{name}.csv" for name in extra if (task_dir / f"{name}.csv").exists()}


def _load_matrix(path: Path, length: int, where: str) -> np.ndarray:
    if not path.exists():
        raise ValueError(f"{where}: matrix file {path} is missing.")
    try:
        matrix = np.load(path)
    except (ValueError, OSError) as error:
        raise ValueError(f"{where}: {path} is not a readable .npy matrix ({error}).") from error
    if matrix.shape != (length, length):
        raise ValueError(f"{where}: matrix {path.name} has shape {matrix.shape} but the sequence has length {length}.")
    if not np.isfinite(matrix).all():
        i, j = np.argwhere(~np.isfinite(matrix))[0]
        raise ValueError(f"{where}: matrix {path.name} holds {matrix[i, j]} at [{i}, {j}]; only finite values "
                         "are accepted.")
    return matrix


def convert_ssp(task_dir: Path) -> dict[str, list[dict]]:
    """bpRNA/bpRNA.csv (data_name in TR0/VL0/TS0, file_name, seq[, structure]) + bpRNA/<set>/<file_name>.npy."""
    root = task_dir / "bpRNA"
    path = _require_file(root / "bpRNA.csv", "the SSP index with columns data_name, file_name, seq")
    split_of = {"TR0": "train", "VL0": "validation", "TS0": "test"}
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for where, row in read_csv_records(path, SSP_COLUMNS):
        where = f"{where} ({row['file_name']})"
        if row["data_name"] not in split_of:
            raise ValueError(f"{where}: data_name {row['data_name']!r} is not one of {list(split_of)}.")
        sequence = _clean_sequence(row["seq"], where)
        file_name = row["file_name"] if row["file_name"].endswith(".npy") else row["file_name"] + ".npy"
        matrix = _load_matrix(root / row["data_name"] / file_name, len(sequence), where)
        if not np.array_equal(matrix, matrix.T):
            raise ValueError(f"{where}: pairing matrix is not symmetric.")
        pairs = matrix_to_pairs(matrix)
        structure = row.get("structure") or row.get("dot_bracket") or None
        if structure is not None and not np.array_equal(dot_bracket_to_pairs(structure, sequence, where), pairs):
            raise ValueError(f"{where}: dot-bracket structure disagrees with the pairing matrix.")
        splits[split_of[row["data_name"]]].append(
            {"id": Path(file_name).stem, "sequence": sequence, "structure": structure, "pairs": pairs.tolist()}
        )
    for data_name, split in split_of.items():
        if not splits[split]:
            raise ValueError(f"{path}: no row has data_name {data_name}; each of {list(split_of)} makes a split.")
    return splits


def convert_contact_or_distance(task_dir: Path, task_name: str) -> dict[str, list[dict]]:
    """{train,val,test,RFAM19,DIRECT}.csv [id, seq] + contact_map/<id>.npy (CMP: stored as i <= j pairs) or
    distance_map/<id>.npy (DMP: stored as the L x L matrix)."""
    task = get_task(task_name)
    as_pairs = task.columns[task.label_column] == "pairs"
    folder = task_dir / ("contact_map" if as_pairs else "distance_map")
    splits = {}
    for split, path in _split_paths(task_dir, EXTRA_STRUCTURE_TEST_SETS).items():
        rows = []
        for where, fields in _csv_rows(path, [name for name, _ in CSV_COLUMNS[task.name]]):
            record_id, sequence = fields[0], _clean_sequence(fields[1], where)
            matrix = _load_matrix(folder / f"{record_id}.npy", len(sequence), where)
            label = np.argwhere(np.triu(matrix.astype(bool))) if as_pairs else matrix.astype(np.float32)
            rows.append({"id": record_id, "sequence": sequence, task.label_column: label.tolist()})
        splits[split] = rows
    return splits


def _parse_column(task, kind: str, text: str, where: str, length: int):
    """One CSV field (fields joined by spaces) as a value of the stored column `kind` (`BeaconTask.columns`)."""
    if kind == "classes":  # one class digit per nucleotide (SPL)
        digits = {str(k) for k in range(task.num_labels)}
        if len(text) != length or set(text) - digits:
            raise ValueError(f"{where}: {task.name} labels must be one digit 0..{task.num_labels - 1} per nucleotide "
                             f"({length}).")
        return [int(c) for c in text]
    if kind == "class":
        if text.strip() not in {str(k) for k in range(task.num_labels)}:
            raise ValueError(f"{where}: unknown {task.name} label {text!r}; expected an integer "
                             f"0..{task.num_labels - 1}.")
        return int(text)
    if kind == "multi_hot":
        values = _floats(text, where, task.num_labels)
        if set(values) - {0.0, 1.0}:
            raise ValueError(f"{where}: {task.name} labels must be 0/1, got {text!r}.")
        return [int(x) for x in values]
    if kind == "floats":
        return _floats(text, where, length if task.level == "nucleotide" else task.num_labels)
    return _floats(text, where, 1)[0]


def _row_converter(task_name: str):
    """A function (where, fields, index) -> row for the one-CSV-row-per-example tasks, parsing each field by the
    kind of the column it fills."""
    task = get_task(task_name)
    targets = [column for _, column in CSV_COLUMNS.get(task.name, DEFAULT_CSV_COLUMNS)]

    def convert(where: str, fields: list[str], record_id: str) -> dict:
        texts: dict[str, list[str]] = {}
        for column, text in zip(targets, fields):
            if column is not None:
                texts.setdefault(column, []).append(text)
        row = {"id": record_id} | {column: _clean_sequence(texts[column][0], where) for column in task.inputs}
        lengths = sorted({len(row[column]) for column in task.inputs})
        if len(lengths) > 1:
            raise ValueError(f"{where}: the inputs {', '.join(task.inputs)} differ in length ({lengths} nt).")
        return row | {column: _parse_column(task, kind, " ".join(texts[column]), where, lengths[0])
                      for column, kind in task.columns.items()}

    return convert


def convert_csv_task(task_dir: Path, task_name: str) -> dict[str, list[dict]]:
    convert = _row_converter(task_name)
    splits = {}
    for split, path in _split_paths(task_dir).items():
        columns = [name for name, _ in CSV_COLUMNS.get(task_name, DEFAULT_CSV_COLUMNS)]
        reader = CSV_READERS[task_name](path) if task_name in CSV_READERS else _csv_rows(path, columns)
        splits[split] = [convert(where, fields, f"{split}_{k}") for k, (where, fields) in enumerate(reader)]
    return splits


def _modif_rows(path: Path):
    """Modification CSVs are read by column name (`sequence`, `label`) in BEACON."""
    n_rows = 0
    for where, row in read_csv_records(path, ("sequence", "label")):
        n_rows += 1
        yield where, [row["sequence"], row["label"]]
    if not n_rows:
        raise ValueError(f"{path}: no data rows after the header; expected rows of sequence, label.")


VDP_TARGETS = ("reactivity", "deg_Mg_pH10", "deg_Mg_50C")
# BEACON's train_degradation.py keeps training rows with signal_to_noise >= 0.6 and validation rows >= 1.0.
VDP_MIN_SIGNAL_TO_NOISE = {"train": 0.6, "validation": 1.0, "test": None}


# Tasks whose BEACON CSV is read by column name instead of by position.
CSV_READERS = {"Modif": _modif_rows}


def _read_json_records(path: Path) -> list[dict]:
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        records = []
        for line, record in enumerate(text.splitlines(), start=1):
            try:
                records += [json.loads(record)] if record.strip() else []
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line}: not JSON ({error}); expected a JSON list, a pandas "
                                 "column-oriented JSON object or one JSON record per line.") from None
        return records
    if isinstance(data, dict):  # pandas "columns" orientation: {column: {row: value}}
        keys = list(next(iter(data.values())))
        return [{column: data[column][k] for column in data} for k in keys]
    return data


def convert_vdp(task_dir: Path) -> dict[str, list[dict]]:
    """train-val-test/{train_1,val_1,test_1}.json in the Kaggle OpenVaccine schema; test has no labels."""
    splits = {}
    for split, stem in (("train", "train_1"), ("validation", "val_1"), ("test", "test_1")):
        path = _require_file(task_dir / "train-val-test" / f"{stem}.json", "the OpenVaccine-schema JSON split")
        rows = []
        for k, record in enumerate(_read_json_records(path)):
            where = f"{path} (record {k}, id {record.get('id')!r})"
            threshold = VDP_MIN_SIGNAL_TO_NOISE[split]
            # Training and validation rows are filtered by signal_to_noise and scored; test labels are optional.
            labelled = threshold is not None or any(column in record for column in VDP_TARGETS)
            required = ("sequence",) + (("signal_to_noise",) if threshold is not None else ())
            required += ("seq_scored", *VDP_TARGETS) if labelled else ()
            missing = [column for column in required if record.get(column) is None]
            if missing:
                raise ValueError(f"{where}: no {', '.join(missing)}; {split} records need {', '.join(required)}.")
            sequence = _clean_sequence(record["sequence"], where)
            for column in ("structure", "predicted_loop_type"):
                if column in record and len(record[column]) != len(sequence):
                    raise ValueError(f"{where}: {column} has length {len(record[column])}, sequence {len(sequence)}.")
            noise = record.get("signal_to_noise")
            if noise is not None and not (isinstance(noise, (int, float)) and math.isfinite(noise)):
                raise ValueError(f"{where}: signal_to_noise {noise!r} is not a finite number.")
            if threshold is not None and noise < threshold:
                continue
            scored = record.get("seq_scored", 0)
            if not isinstance(scored, int) or not 0 <= scored <= len(sequence):
                raise ValueError(f"{where}: seq_scored {scored!r} must be an integer in 0..{len(sequence)}.")
            label = None
            if labelled:
                columns = [record[column][:scored] for column in VDP_TARGETS]
                if any(len(values) != scored for values in columns):
                    raise ValueError(f"{where}: targets are shorter than seq_scored={scored}.")
                try:
                    label = np.asarray(columns, dtype=np.float32).T  # JSON null becomes nan, caught below
                except (TypeError, ValueError) as error:
                    raise ValueError(f"{where}: targets must be lists of numbers ({error}).") from None
                if not np.isfinite(label).all():
                    position, target = np.argwhere(~np.isfinite(label))[0]
                    raise ValueError(f"{where}: {VDP_TARGETS[target]}[{position}] is "
                                     f"{record[VDP_TARGETS[target]][position]!r}; only finite numbers are accepted.")
                label = label.tolist()
            rows.append(
                {
                    "id": record.get("id"),
                    "sequence": sequence,
                    "structure": record.get("structure"),
                    "predicted_loop_type": record.get("predicted_loop_type"),
                    "signal_to_noise": noise,
                    "seq_scored": scored,
                    "label": label,
                }
            )
        splits[split] = rows
    return splits


# The BEACON release's file layout per task folder, as functions (task folder, task name) -> rows per split;
# every other task is one CSV row per example.
RAW_READERS = {
    "SSP": lambda task_dir, _: convert_ssp(task_dir),
    "CMP": convert_contact_or_distance,
    "DMP": convert_contact_or_distance,
    "VDP": lambda task_dir, _: convert_vdp(task_dir),
}
# BEACON's integer class ids with no published names (RNABenchmark issue #11): stored as "0", "1", ...
UNNAMED_CLASS_IDS = frozenset({"ncRNA"})


def convert_task(raw_dir: Path, task_name: str) -> dict[str, list[dict]]:
    task = get_task(task_name)
    return RAW_READERS.get(task.name, convert_csv_task)(raw_dir / task.beacon_dir, task.name)


def build(raw_dir: str | Path, output_dir: str | Path, tasks: list[str] | None = None) -> list[str]:
    """Convert every task present under `raw_dir` (or only `tasks`); returns the config names written."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ValueError(f"raw_dir {raw_dir} is not a folder; expected the unpacked BEACON release with one "
                         "sub-folder per task (e.g. Secondary_structure_prediction, NoncodingRNAFamily).")
    names = [get_task(name).name for name in tasks] if tasks else [
        name for name, task in BEACON_TASKS.items() if (raw_dir / task.beacon_dir).is_dir()
    ]
    folders = [raw_dir / get_task(name).beacon_dir for name in names]
    missing = [str(folder) for folder in folders if not folder.is_dir()]
    if missing:
        raise ValueError(f"task folder(s) {', '.join(missing)} not found; --tasks {' '.join(names)} needs each "
                         "task's BEACON release folder under raw_dir.")
    if not names:
        raise ValueError(f"no BEACON task folders found in {raw_dir}; expected some of "
                         f"{[task.beacon_dir for task in BEACON_TASKS.values()]}.")
    configs = []
    for name in names:
        task = get_task(name)
        label_names = tuple(str(k) for k in range(task.num_labels)) if task.name in UNNAMED_CLASS_IDS else None
        configs.append(
            HubConfig(
                name=task.name,
                splits=convert_task(raw_dir, task.name),
                features=beacon_features(task.name, label_names),
                description=f"BEACON {task.name} ({task.beacon_dir}): {task.category} task, {task.level}-level "
                f"{task.problem_type}, metric {task.metric}. {task.notes}".strip(),
                source=f"{task.source}, via the BEACON release (terry-r123/RNABenchmark)",
                license="other (BEACON states no data license; see the source dataset)",
                citation=BEACON_CITATION,
            )
        )
    write_hub_dataset(
        output_dir,
        configs,
        title="BEACON RNA benchmark",
        summary="The 13 BEACON RNA tasks (Ren et al., 2024) converted from the official release to Parquet, "
        "one config per task. Sequences are uppercased; U is kept as in the source.",
        task_categories=("text-classification", "token-classification"),
        citation=BEACON_CITATION,
    )
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw_dir", required=True, help="folder with the BEACON task sub-folders")
    parser.add_argument("--output_dir", required=True, help="Hub dataset folder to write")
    parser.add_argument("--tasks", nargs="*", help=f"subset of {list(BEACON_TASKS)}")
    args = parser.parse_args(argv)
    names = build(args.raw_dir, args.output_dir, args.tasks)
    print(f"wrote {len(names)} configs to {args.output_dir}: {', '.join(names)}", file=sys.stderr)


if __name__ == "__main__":
    main()
