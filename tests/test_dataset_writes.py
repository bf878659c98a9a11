"""write_hub_dataset swaps a folder in only once every config loads and keeps the configs it does not rebuild;
build_beacon_real.py rejects missing files, missing columns and non-finite labels, naming them."""

import csv
import json
import re
import shutil
from pathlib import Path

import datasets
import pytest

from hf_genomics.data.hub_dataset import HubConfig, beacon_features, write_hub_dataset
from scripts.example_scripts import load_script

REPO = Path(__file__).resolve().parents[1]
build_beacon_real = load_script("dataset_scripts/build_beacon_real.py")


def _config(name: str, n_train: int) -> HubConfig:
    rows = [{"id": f"{name}{k}", "sequence": "ACGU" * (k + 1), "label": k / 2} for k in range(n_train)]
    test = [{"id": f"{name}_test", "sequence": "GGCA", "label": -1.0}]
    return HubConfig(name, {"train": rows, "test": test}, beacon_features("MRL"), f"Config {name}.", "src", "MIT")


def _write(folder: Path, configs: list[HubConfig]) -> Path:
    return write_hub_dataset(folder, configs, title="Test", summary="Two regression configs.")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def _sizes(folder: Path, name: str) -> dict[str, int]:
    loaded = datasets.load_dataset(str(folder), name)
    return {split: loaded[split].num_rows for split in loaded}


@pytest.fixture
def existing(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A good two-config folder and its bytes."""
    folder = _write(tmp_path / "hub", [_config("A", 3), _config("B", 4)])
    return folder, _snapshot(folder)


def test_a_row_failing_the_features_in_the_second_config_leaves_the_old_folder(existing):
    folder, before = existing
    bad = _config("B", 5)
    bad.splits["train"][2]["label"] = "not a number"
    with pytest.raises(ValueError, match="config 'B', split 'train': rows do not match the features"):
        _write(folder, [_config("A", 6), bad])
    assert _snapshot(folder) == before
    assert [path.name for path in folder.parent.iterdir()] == ["hub"]


def test_a_truncated_parquet_file_is_caught_by_loading_before_the_swap(existing, monkeypatch):
    """As after a full disk: the file is written but cut short."""
    folder, before = existing
    to_parquet = datasets.Dataset.to_parquet

    def truncating_to_parquet(self, path, **kwargs):
        written = to_parquet(self, path, **kwargs)
        if Path(path).parent.name == "B":
            Path(path).write_bytes(Path(path).read_bytes()[:40])
        return written

    monkeypatch.setattr(datasets.Dataset, "to_parquet", truncating_to_parquet)
    with pytest.raises(ValueError, match="config 'B' does not load from the written folder"):
        _write(folder, [_config("A", 6), _config("B", 7)])
    assert _snapshot(folder) == before
    assert [path.name for path in folder.parent.iterdir()] == ["hub"]


def test_a_failed_move_into_place_puts_the_old_folder_back(existing, monkeypatch):
    folder, before = existing
    rename = Path.rename

    def failing_rename(self, target):
        if ".tmp-" in self.name:
            raise OSError("simulated failure moving the new folder in")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="simulated failure"):
        _write(folder, [_config("A", 6), _config("B", 7)])
    assert _snapshot(folder) == before
    assert [path.name for path in folder.parent.iterdir()] == ["hub"]


def test_rebuilding_one_config_keeps_the_others(existing, tmp_path):
    folder, before = existing
    (folder / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    _write(folder, [_config("B", 9)])
    assert _sizes(folder, "A") == {"train": 3, "test": 1} and _sizes(folder, "B") == {"train": 9, "test": 1}
    kept = {name: data for name, data in _snapshot(folder).items() if name.startswith("A/")}
    assert kept == {name: data for name, data in before.items() if name.startswith("A/")}
    assert (folder / ".gitattributes").exists()
    # The merged card is the card a fresh build of both configs writes: YAML entries, table row and section of A kept.
    fresh = _write(tmp_path / "fresh", [_config("A", 3), _config("B", 9)])
    assert (folder / "README.md").read_text() == (fresh / "README.md").read_text()


def test_a_rebuild_with_the_same_row_counts_is_not_served_from_the_cache(tmp_path):
    """datasets caches a local folder by its card; the card must change when the rows do."""
    folder, cache = tmp_path / "hub", tmp_path / "cache"
    config = _config("A", 3)
    _write(folder, [config])
    assert datasets.load_dataset(str(folder), "A", cache_dir=str(cache))["train"]["label"] == [0.0, 0.5, 1.0]
    for row in config.splits["train"]:
        row["label"] += 10
    _write(folder, [config])
    assert datasets.load_dataset(str(folder), "A", cache_dir=str(cache))["train"]["label"] == [10.0, 10.5, 11.0]


def test_a_folder_that_is_not_a_dataset_is_not_replaced(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me\n")
    with pytest.raises(ValueError, match="notes exists and is not a Hub dataset folder"):
        _write(tmp_path / "notes", [_config("A", 3)])
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me\n"


def test_build_beacon_real_subset_rebuild_keeps_the_other_configs(tmp_path):
    folder = tmp_path / "beacon_real"
    assert build_beacon_real.build(folder, configs=("CRI-On", "MRL")) == ["CRI-On", "MRL"]
    cri_on, mrl = _snapshot(folder / "CRI-On"), datasets.load_dataset(str(folder), "MRL")["test"]["id"]
    build_beacon_real.main(["--output_dir", str(folder), "--configs", "MRL", "--seed", "1"])
    assert _snapshot(folder / "CRI-On") == cri_on
    assert _sizes(folder, "CRI-On") == {"train": 5208, "validation": 745, "test": 1489}
    assert datasets.load_dataset(str(folder), "MRL")["test"]["id"] != mrl
    assert "### `CRI-On`" in (folder / "README.md").read_text()


def _copy_data(tmp_path: Path, data_dir: Path, *relative: str) -> Path:
    for name in relative:
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / name, tmp_path / "data" / name)
    return tmp_path / "data"


def _edit_csv(path: Path, line: int, column: str, value: str) -> None:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[line - 2][column] = value
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


MRL_CSV = "utr_expression_utrlm/ExperimentData_Optimus_MRL.csv"
CRI_ON_CSV = "crispr_ontarget_rs3/Behan2019_activity.csv"


def test_build_beacon_real_names_missing_folders_and_files(tmp_path, data_dir):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=f"data_dir {re.escape(str(tmp_path / 'nowhere'))} is not a folder"):
        build_beacon_real.build(out, data_dir=tmp_path / "nowhere", configs=("MRL",))
    data = _copy_data(tmp_path, data_dir, MRL_CSV)
    with pytest.raises(ValueError, match=re.escape(f"{data / CRI_ON_CSV} is missing; --data_dir must be")):
        build_beacon_real.main(["--output_dir", str(out), "--data_dir", str(data), "--configs", "MRL", "CRI-On"])
    with pytest.raises(ValueError, match=re.escape(f"{data}/bprna_rgb/train.json is missing")):
        build_beacon_real.build(out, data_dir=data, configs=("SSP",))
    assert not out.exists()


def test_build_beacon_real_names_missing_columns(tmp_path, data_dir):
    data = _copy_data(tmp_path, data_dir, MRL_CSV, "bprna_rgb/train.json")
    path = data / MRL_CSV
    path.write_text(path.read_text().replace(",label", ",readout", 1))
    with pytest.raises(ValueError, match=re.escape(f"{path}: no column 'label'; this table is read for")):
        build_beacon_real.build(tmp_path / "out", data_dir=data, configs=("MRL",))
    bprna = data / "bprna_rgb" / "train.json"
    lines = bprna.read_text().splitlines()
    record = json.loads(lines[2])
    lines[2] = json.dumps({"sequence": record["seq"], "label": record["label"]})
    bprna.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{bprna}:3: record has no 'seq'")):
        build_beacon_real.build(tmp_path / "out", data_dir=data, configs=("SSP",))


@pytest.mark.parametrize(
    "relative, config, column, value",
    [
        (MRL_CSV, "MRL", "label", "nan"),
        (MRL_CSV, "MRL", "label", "-inf"),
        (CRI_ON_CSV, "CRI-On", "avg_mean_centered_neg_lfc", "NaN"),
        (CRI_ON_CSV, "CRI-On", "avg_mean_centered_neg_lfc", "1e39"),
    ],
)
def test_build_beacon_real_rejects_non_finite_labels(tmp_path, data_dir, relative, config, column, value):
    data = _copy_data(tmp_path, data_dir, relative)
    _edit_csv(data / relative, 5, column, value)
    with pytest.raises(ValueError, match=re.escape(f"{data / relative}:5: label {value!r} is not a finite number")):
        build_beacon_real.build(tmp_path / "out", data_dir=data, configs=(config,))
    assert not (tmp_path / "out").exists()
