"""BEACON registry, official-layout converter (tiny fixtures written in the release layout from real rows of
data/), plain `load_dataset` on the result, bad-row errors, and every task type training end-to-end."""

import csv
import json
import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from hf_genomics.data.beacon import BEACON_TASKS, get_task
from hf_genomics.data.structure import dot_bracket_to_pairs, pairs_to_matrix
from scripts.example_scripts import load_script

REPO = Path(__file__).resolve().parents[1]


build_beacon = load_script("dataset_scripts/build_beacon.py")
run_beacon = load_script("examples/run_beacon.py")
SPLITS = {"train": 8, "val": 4, "test": 4}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _real_rows(data_dir: Path):
    """Short real sequences: bpRNA structures, ArchiveII structures, nRC ncRNAs, rs3 sgRNAs, Kleinstiver pairs."""
    bprna = [json.loads(line) for line in (data_dir / "bprna_rgb" / "test.json").read_text().splitlines()]
    bprna = [r for r in bprna if 30 <= len(r["seq"]) <= 70 and set(r["seq"]) <= set("ACGU")][:16]
    with open(data_dir / "archiveii" / "ArchiveII.csv", newline="") as handle:
        archive = [r for r in csv.DictReader(handle) if 60 <= int(r["len"]) <= 90][:16]
    ncrna = []
    for line in (data_dir / "nrc_ncrna" / "dataset_Rfam_validated_2600_13classes.fasta").read_text().splitlines():
        if not line.startswith(">") and set(line.strip()) <= set("ACGT") and len(line.strip()) >= 50:
            ncrna.append(line.strip()[:50])
    with open(data_dir / "crispr_ontarget_rs3" / "Behan2019_activity.csv", newline="") as handle:
        sgrnas = [(r["sgRNA Context Sequence"][4:27], r["avg_mean_centered_neg_lfc"]) for r in csv.DictReader(handle)]
    with open(data_dir / "crispr_offtarget_kleinstiver" / "Kleinstiver_5gRNA_active_offTargets.tsv") as handle:
        offtarget = [(r["Target Sequence"].replace("N", "G"), r["Off-Target Sequence"], r["GUIDE-seq Reads"])
                     for r in csv.DictReader(handle, delimiter="\t")]
    return bprna, archive, ncrna[:16], sgrnas[:16], offtarget[:16]


def write_official_layout(raw: Path, data_dir: Path) -> None:
    """All 13 tasks in the BEACON release layout; labels are real where data/ has them, else seeded synthetic."""
    rng = np.random.default_rng(0)
    bprna, archive, ncrna, sgrnas, offtarget = _real_rows(data_dir)
    starts = {"train": 0, "val": 8, "test": 12}

    ssp = raw / "Secondary_structure_prediction" / "bpRNA"
    rows = []
    for split, data_name in (("train", "TR0"), ("val", "VL0"), ("test", "TS0")):
        for k, record in enumerate(bprna[starts[split] : starts[split] + SPLITS[split]]):
            name = f"bpRNA_{data_name}_{k}"
            matrix = pairs_to_matrix(dot_bracket_to_pairs(record["label"]), len(record["seq"]))
            (ssp / data_name).mkdir(parents=True, exist_ok=True)
            np.save(ssp / data_name / f"{name}.npy", matrix)
            rows.append([data_name, name, record["seq"]])
    _write_csv(ssp / "bpRNA.csv", ["data_name", "file_name", "seq"], rows)

    for task_dir, kind in (("ContactMap", "contact_map"), ("DistanceMap", "distance_map")):
        for split in SPLITS:
            rows = []
            for k, record in enumerate(archive[starts[split] : starts[split] + SPLITS[split]]):
                n = len(record["sequence"])
                pairing = pairs_to_matrix(dot_bracket_to_pairs(record["structure"]), n).astype(bool)
                offsets = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
                matrix = pairing | (offsets <= 2) if kind == "contact_map" else np.minimum(offsets / 30.0, 1.0)
                (raw / task_dir / kind).mkdir(parents=True, exist_ok=True)
                np.save(raw / task_dir / kind / f"{split}{k}.npy", matrix)
                rows.append([f"{split}{k}", record["sequence"]])
            _write_csv(raw / task_dir / f"{split}.csv", ["id", "seq"], rows)

    def sequences(split):
        return ncrna[starts[split] : starts[split] + SPLITS[split]]

    for split in SPLITS:
        seqs = sequences(split)
        n = len(seqs[0])
        _write_csv(raw / "StructuralScoreImputation" / f"{split}.csv", ["seq", "struct", "label"], [
            [s, " ".join("-1" if rng.random() < 0.3 else f"{rng.random():.3f}" for _ in s),
             " ".join(f"{rng.random():.3f}" for _ in s)] for s in seqs])
        _write_csv(raw / "SpliceAI" / f"{split}.csv", ["seq", "label"], [
            [s, "".join("2" if s[i:i + 2] == "GT" else "1" if s[i - 1:i + 1] == "AG" else "0" for i in range(n))]
            for s in seqs])
        _write_csv(raw / "Isoform" / f"{split}.csv", ["idx", "seq", "label", "unused"],
                   [[k, s, f"{rng.random():.4f}", 0] for k, s in enumerate(seqs)])
        _write_csv(raw / "NoncodingRNAFamily" / f"{split}.csv", ["seq", "label"],
                   [[s, k % 13] for k, s in enumerate(seqs)])
        _write_csv(raw / "Modification" / f"{split}.csv", ["sequence", "label"],
                   [[s, " ".join(str(int(rng.random() < 0.5)) for _ in range(12))] for s in seqs])
        _write_csv(raw / "MeanRibosomeLoading" / f"{split}.csv", ["seq", "label"],
                   [[s, f"{rng.normal():.4f}"] for s in seqs])
        _write_csv(raw / "ProgrammableRNASwitches" / f"{split}.csv", ["seq", "ON", "OFF", "ON_OFF"],
                   [[s, *(f"{v:.4f}" for v in rng.random(3))] for s in seqs])
        chosen = slice(starts[split], starts[split] + SPLITS[split])
        _write_csv(raw / "CRISPROnTarget" / f"{split}.csv", ["seq", "label"], [list(r) for r in sgrnas[chosen]])
        _write_csv(raw / "CRISPROffTarget" / f"{split}.csv", ["sgrna", "target", "label"],
                   [list(r) for r in offtarget[chosen]])
        records = [
            {"id": f"id_{split}{k}", "sequence": s.replace("T", "U"), "structure": "." * n,
             "predicted_loop_type": "E" * n, "signal_to_noise": 2.0, "SN_filter": 1, "seq_length": n,
             "seq_scored": 30, **{t: rng.random(30).round(3).tolist() for t in build_beacon.VDP_TARGETS}}
            for k, s in enumerate(seqs)
        ]
        if split == "test":  # BEACON's test JSON has no targets (Kaggle-scored); keep some so training can score
            records[0] = {k: v for k, v in records[0].items() if k not in build_beacon.VDP_TARGETS}
        (raw / "Degradation" / "train-val-test").mkdir(parents=True, exist_ok=True)
        (raw / "Degradation" / "train-val-test" / f"{split}_1.json").write_text(json.dumps(records))


@pytest.fixture(scope="module")
def beacon_folder(tmp_path_factory, data_dir):
    raw = tmp_path_factory.mktemp("beacon_raw")
    write_official_layout(raw, data_dir)
    out = tmp_path_factory.mktemp("beacon_hub") / "beacon"
    assert build_beacon.build(raw, out) == list(BEACON_TASKS)
    return raw, out


def test_get_task_and_registry():
    assert get_task("cri-off").head == "BeaconForSequencePairClassification"
    assert get_task("SSP").published["BEACON-B"] == 64.18 and get_task("ncRNA").published["CNN"] == 88.62
    assert {task.level for task in BEACON_TASKS.values()} == {"sequence", "nucleotide", "pairwise"}
    with pytest.raises(ValueError, match="valid names are: SSP, CMP, DMP"):
        get_task("SSX")


def test_built_folder_loads_with_plain_load_dataset(beacon_folder, data_dir):
    raw, out = beacon_folder
    assert not (out / f"{out.name}.py").exists()
    card = (out / "README.md").read_text()
    assert "configs:" in card and "license: other" in card and "ren2024beacon" in card
    ssp = datasets.load_dataset(str(out), "SSP")
    assert {split: len(ssp[split]) for split in ssp} == {"train": 8, "validation": 4, "test": 4}
    row = ssp["test"][0]
    matrix = np.load(raw / "Secondary_structure_prediction" / "bpRNA" / "TS0" / f"{row['id']}.npy")
    np.testing.assert_array_equal(pairs_to_matrix(row["pairs"], len(row["sequence"])), matrix)
    ncrna = datasets.load_dataset(str(out), "ncRNA")
    assert ncrna["train"].features["label"].num_classes == 13
    assert ncrna["train"]["label"][:3] == [0, 1, 2]
    spl = datasets.load_dataset(str(out), "SPL")["train"]
    assert spl.features["label"].feature.names == ["none", "acceptor", "donor"]
    vdp = datasets.load_dataset(str(out), "VDP")
    assert np.asarray(vdp["train"][0]["label"]).shape == (30, 3) and vdp["test"][0]["label"] is None
    modif = datasets.load_dataset(str(out), "Modif")["validation"][0]["label"]
    assert len(modif) == 12 and set(modif) <= {0, 1}
    dmp = datasets.load_dataset(str(out), "DMP")["test"][0]
    assert np.asarray(dmp["distance_map"]).shape == (len(dmp["sequence"]),) * 2


def test_bad_rows_give_clear_errors(tmp_path, data_dir):
    raw = tmp_path / "raw"
    write_official_layout(raw, data_dir)
    nc = raw / "NoncodingRNAFamily" / "val.csv"
    nc.write_text(nc.read_text().replace(",1\n", ",13\n", 1))
    with pytest.raises(ValueError, match=r"val.csv:3: unknown ncRNA label '13'"):
        build_beacon.build(raw, tmp_path / "out", ["ncRNA"])
    spl = raw / "SpliceAI" / "test.csv"
    spl.write_text(spl.read_text().replace("\n", "0\n", 2).replace("seq,label0", "seq,label"))
    with pytest.raises(ValueError, match="one digit 0..2 per nucleotide"):
        build_beacon.build(raw, tmp_path / "out", ["SPL"])
    ssp = raw / "Secondary_structure_prediction" / "bpRNA" / "bpRNA.csv"
    lines = ssp.read_text().splitlines()
    lines[1] = lines[1] + "A"
    ssp.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bpRNA_TR0_0\): matrix bpRNA_TR0_0.npy has shape"):
        build_beacon.build(raw, tmp_path / "out", ["SSP"])


def _raw_copy(beacon_folder, tmp_path: Path, *task_dirs: str) -> Path:
    """A private copy of some task folders of the shared raw layout, for a test to damage."""
    raw, _ = beacon_folder
    for name in task_dirs:
        shutil.copytree(raw / name, tmp_path / "raw" / name)
    return tmp_path / "raw"


def _replace_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_missing_inputs_are_errors_naming_them(beacon_folder, tmp_path):
    raw = _raw_copy(beacon_folder, tmp_path, "NoncodingRNAFamily", "ContactMap", "Secondary_structure_prediction",
                    "Degradation")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=re.escape(f"raw_dir {tmp_path / 'nowhere'} is not a folder")):
        build_beacon.main(["--raw_dir", str(tmp_path / "nowhere"), "--output_dir", str(out), "--tasks", "ncRNA"])
    with pytest.raises(ValueError, match=re.escape(f"task folder(s) {raw / 'MeanRibosomeLoading'} not found")):
        build_beacon.build(raw, out, ["ncRNA", "MRL"])
    (raw / "NoncodingRNAFamily" / "val.csv").unlink()
    with pytest.raises(ValueError, match=re.escape(f"{raw / 'NoncodingRNAFamily' / 'val.csv'} is missing")):
        build_beacon.build(raw, out)
    (raw / "ContactMap" / "test.csv").unlink()
    with pytest.raises(ValueError, match=re.escape(f"{raw / 'ContactMap' / 'test.csv'} is missing")):
        build_beacon.build(raw, out, ["CMP"])
    (raw / "Degradation" / "train-val-test" / "val_1.json").unlink()
    with pytest.raises(ValueError, match=re.escape(f"{raw / 'Degradation' / 'train-val-test' / 'val_1.json'} is miss")):
        build_beacon.build(raw, out, ["VDP"])
    bprna = raw / "Secondary_structure_prediction" / "bpRNA" / "bpRNA.csv"
    bprna.write_text(bprna.read_text().replace(",seq\n", ",sequence\n", 1))
    with pytest.raises(ValueError, match=re.escape(f"{bprna}: no column 'seq'; this table is read for 'data_name', 'file_name', 'seq'")):
        build_beacon.build(raw, out, ["SSP"])
    bprna.unlink()
    with pytest.raises(ValueError, match=re.escape(f"{bprna} is missing; expected the SSP index")):
        build_beacon.build(raw, out, ["SSP"])
    assert not out.exists()


@pytest.mark.parametrize(
    "task, relative, line, text, message",
    [
        ("MRL", "MeanRibosomeLoading/train.csv", 3, "ACGUACGU,nan", "nan in 'nan' is not a finite float32"),
        ("CRI-On", "CRISPROnTarget/val.csv", 2, "ACGTACGTACGTACGTACGTAGG,inf", "inf in 'inf' is not a finite"),
        ("CRI-Off", "CRISPROffTarget/test.csv", 4, "ACGT,ACGA,-Infinity", "-inf in '-Infinity' is not a finite"),
        ("APA", "Isoform/train.csv", 5, "0,ACGUAC,NaN,0", "nan in 'NaN' is not a finite"),
        ("PRS", "ProgrammableRNASwitches/train.csv", 2, "ACGUAC,0.5,nan,0.1", "nan in '0.5 nan 0.1' is not a finite"),
        ("PRS", "ProgrammableRNASwitches/val.csv", 3, "ACGUAC,0.5", "2 column(s); expected 4 (seq, ON, OFF, ON_OFF"),
        ("PRS", "ProgrammableRNASwitches/test.csv", 2, "ACGUAC,0.5,,", "expected 3 numbers, got 1 in '0.5  '"),
        ("SSI", "StructuralScoreImputation/train.csv", 2, "ACGU,0.1 0.2 0.3 0.4,0 nan 1 1", "nan in '0 nan 1 1'"),
    ],
)
def test_non_finite_or_short_labels_name_file_and_line(beacon_folder, tmp_path, task, relative, line, text, message):
    raw = _raw_copy(beacon_folder, tmp_path, relative.split("/")[0])
    _replace_line(raw / relative, line, text)
    with pytest.raises(ValueError, match=re.escape(f"{raw / relative}:{line}: ") + ".*" + re.escape(message)):
        build_beacon.build(raw, tmp_path / "out", [task])


def test_non_finite_vdp_targets_and_distance_maps_are_rejected(beacon_folder, tmp_path):
    raw = _raw_copy(beacon_folder, tmp_path, "Degradation", "DistanceMap")
    path = raw / "Degradation" / "train-val-test" / "train_1.json"
    records = json.loads(path.read_text())
    records[1]["deg_Mg_50C"][7] = float("nan")
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError, match=re.escape(f"{path} (record 1, id 'id_train1'): deg_Mg_50C[7] is nan")):
        build_beacon.build(raw, tmp_path / "out", ["VDP"])
    del records[1]["signal_to_noise"]
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError, match=re.escape("(record 1, id 'id_train1'): no signal_to_noise; train records")):
        build_beacon.build(raw, tmp_path / "out", ["VDP"])
    matrix_path = raw / "DistanceMap" / "distance_map" / "val1.npy"
    matrix = np.load(matrix_path)
    matrix[2, 5] = np.inf
    np.save(matrix_path, matrix)
    with pytest.raises(ValueError, match=re.escape("matrix val1.npy holds inf at [2, 5]; only finite values")):
        build_beacon.build(raw, tmp_path / "out", ["DMP"])


def test_rebuilding_some_tasks_keeps_the_other_configs(beacon_folder, tmp_path):
    _, out = beacon_folder
    folder = tmp_path / "beacon"
    shutil.copytree(out, folder)
    raw = _raw_copy(beacon_folder, tmp_path, "MeanRibosomeLoading")
    train = raw / "MeanRibosomeLoading" / "train.csv"
    _replace_line(train, 2, train.read_text().splitlines()[1].split(",")[0] + ",42.5")
    assert build_beacon.build(raw, folder, ["MRL"]) == ["MRL"]
    for name in BEACON_TASKS:
        assert len(datasets.load_dataset(str(folder), name)["train"]) == 8
    assert datasets.load_dataset(str(folder), "MRL")["train"]["label"][0] == 42.5
    # The merged card is the full build's card but for the new file name (content hash) of MRL's train split.
    old, new = (out / "README.md").read_text().splitlines(), (folder / "README.md").read_text().splitlines()
    changed = [(before, after) for before, after in zip(old, new) if before != after]
    assert len(old) == len(new) and len(changed) == 1 and "path: MRL/train-" in changed[0][1]


@pytest.mark.parametrize("task", list(BEACON_TASKS))
def test_every_task_trains_end_to_end(beacon_folder, tmp_path, task):
    """Tiny model, two steps, then test metrics in BEACON units (loss finite, metric computed)."""
    _, out = beacon_folder
    results = run_beacon.main([
        "--task", task, "--dataset_dir", str(out), "--output_dir", str(tmp_path / "run"),
        "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "32",
        "--pairwise_channels", "4", "--pairwise_num_blocks", "1", "--max_steps", "2", "--max_length", "34",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--eval_strategy", "no",
        "--save_strategy", "no", "--load_best_model_at_end", "false", "--disable_tqdm", "true",
        *(["--lora"] if task == "ncRNA" else []),
    ])
    task = get_task(task)
    raw_metrics = results["test_raw"]
    assert np.isfinite(raw_metrics["test_loss"])
    value = results["test"][task.metric_key]
    assert np.isfinite(value) and value == pytest.approx(raw_metrics[f"test_{task.metric_key}"] * (100 if task.percent else 1))
    assert json.loads((tmp_path / "run" / "beacon_results.json").read_text())["task"] == task.name
