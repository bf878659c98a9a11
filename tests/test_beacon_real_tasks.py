"""build_beacon_real.py's VDP (labelled OpenVaccine), CRI-Off (SITE-seq) and RNAType (Rfam) configs on the real data:
split rules checked against the raw files, the schema loaded back, and one short run_beacon.py training per task."""

import csv
import gzip
import json
import math

import datasets
import numpy as np
import pytest

from hf_genomics.data.beacon import RFAM_TYPE_LABELS, get_task
from hf_genomics.data.hub_dataset import beacon_features
from scripts.example_scripts import load_script

build_beacon_real = load_script("dataset_scripts/build_beacon_real.py")
build_rfam_corpus = load_script("dataset_scripts/build_rfam_corpus.py")
run_beacon = load_script("examples/run_beacon.py")

NEW_CONFIGS = ("VDP", "CRI-Off", "RNAType")
ROW_CAP = 96


@pytest.fixture(scope="module")
def capped_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beacon_real") / "hub"
    assert build_beacon_real.build(folder, configs=NEW_CONFIGS, max_rows_per_split=ROW_CAP) == list(NEW_CONFIGS)
    return folder


def test_vdp_test_is_the_public_test_and_labels_are_the_measured_targets(data_dir):
    config = build_beacon_real.build_vdp(data_dir, seed=42)
    splits = config.splits
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 2704, "validation": 301, "test": 629}
    shapes = {split: {(len(row["sequence"]), row["seq_scored"], len(row["label"])) for row in rows}
              for split, rows in splits.items()}
    assert shapes == {"train": {(130, 91, 91)}, "validation": {(130, 91, 91)}, "test": {(107, 68, 68)}}
    ids = [{row["id"] for row in rows} for rows in splits.values()]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 3634
    assert all(row["signal_to_noise"] is None for rows in splits.values() for row in rows)
    with gzip.open(data_dir / "openvaccine_labeled/openvaccine_test_labeled.jsonl.gz", "rt") as handle:
        raw = {record["id"]: record for record in map(json.loads, handle)}
    for row in (splits["test"][0], splits["train"][-1]):
        record = raw[row["id"]]
        expected = np.stack([record[t][: record["seq_scored"]] for t in ("reactivity", "deg_Mg_pH10", "deg_Mg_50C")])
        np.testing.assert_allclose(np.array(row["label"]), expected.T)
        assert row["sequence"] == record["sequence"] and row["structure"] == record["structure"]


def test_cri_off_splits_by_guide_and_labels_are_log1p_reads(data_dir):
    splits = build_beacon_real.build_crispr_off(data_dir, seed=42).splits
    guides = {split: {row["sgrna"] for row in rows} for split, rows in splits.items()}
    assert [len(guides[split]) for split in ("train", "validation", "test")] == [6, 1, 2]
    assert not (guides["train"] & guides["validation"] or guides["train"] & guides["test"]
                or guides["validation"] & guides["test"])
    rows = [row for part in splits.values() for row in part]
    assert len(rows) == len({row["id"] for row in rows}) == 217_733
    assert sum(row["label"] > 0 for row in rows) == 3_767
    with gzip.open(data_dir / "crispr_offtarget_site/SITE.csv.gz", "rt", newline="") as handle:
        raw = {f"SITE:{row['']}": row for row in csv.DictReader(handle)}
    for row in splits["test"][:200]:
        source = raw[row["id"]]
        assert (row["sgrna"], row["target"]) == (source["on_seq"], source["off_seq"])
        assert row["label"] == pytest.approx(math.log(1 + float(source["reads"])))


def test_vdp_and_cri_off_reject_missing_or_non_finite_labels(tmp_path, data_dir):
    with gzip.open(data_dir / "openvaccine_labeled/openvaccine_test_labeled.jsonl.gz", "rt") as handle:
        record = json.loads(handle.readline())
    record["deg_Mg_50C"][5] = None
    (tmp_path / "openvaccine_labeled").mkdir()
    (tmp_path / "openvaccine_labeled/openvaccine_test_labeled.jsonl.gz").write_bytes(
        gzip.compress(json.dumps(record).encode()))
    with pytest.raises(ValueError, match=r":1: deg_Mg_50C\[5\] is missing or not a finite number"):
        build_beacon_real.build_vdp(tmp_path, seed=0)
    (tmp_path / "crispr_offtarget_site").mkdir()
    (tmp_path / "crispr_offtarget_site/SITE.csv.gz").write_bytes(gzip.compress(
        b",direction,location,off_seq,on_seq,reads\n0,+,chr1:1,GGAGGCTCTAGGGAAAGGAAAAG,GGGGCCACTAGGGACAGGATNGG,nan\n"))
    with pytest.raises(ValueError, match=r"SITE.csv.gz:2: label 'nan' is not a finite number"):
        build_beacon_real.build_crispr_off(tmp_path, seed=0)


@pytest.mark.parametrize("field,label", [("Gene; snRNA; snoRNA; CD-box;", "snRNA"), ("Cis-reg;", "cis-reg"),
                                         ("Gene;", "gene"), ("Cis-reg; riboswitch;", "riboswitch")])
def test_rfam_type_keeps_the_first_two_levels(field, label):
    assert build_beacon_real.rfam_type(field) == label


def test_rna_type_splits_by_family_and_tests_on_the_pretraining_corpus_heldout_families(data_dir):
    splits = build_beacon_real.build_rna_type(data_dir, seed=42).splits
    families = {split: {row["id"].split("|")[0] for row in rows} for split, rows in splits.items()}
    sequences = {split: [row["sequence"] for row in rows] for split, rows in splits.items()}
    everything = [s for part in sequences.values() for s in part]
    assert len(everything) == len(set(everything))  # deduplicated, so no sequence is in two splits
    assert not (families["train"] & families["validation"] or families["train"] & families["test"]
                or families["validation"] & families["test"])
    # The corpus pretrained/beacon-b-small was trained on (build_rfam_corpus.py's defaults; dropping evaluation
    # sequences only shrinks it): its test families hold every RNAType test family and none of its training sequences.
    records = build_rfam_corpus.read_rfam_seed(data_dir / "rfam_seed_14_2/rfam14.2_seed.fa.gz")
    corpus, report = build_rfam_corpus.build_corpus(records, {}, heldout_family_fraction=0.05,
                                                    validation_fraction=0.02, seed=0)
    assert report["heldout_families"] == 151
    assert families["test"] <= {row["family"] for row in corpus["test"]}
    seen = {row["sequence"] for split in ("train", "validation") for row in corpus[split]}
    assert not seen & set(sequences["test"])
    with open(data_dir / "rfam_seed_14_2/rfam14.2_families.tsv", newline="") as handle:
        types = {row["family"]: row["type"] for row in csv.DictReader(handle, delimiter="\t")}
    for row in splits["test"][:50] + splits["train"][:50]:
        levels = types[row["id"].split("|")[0]].rstrip(";").split("; ")
        assert RFAM_TYPE_LABELS[row["label"]] == (levels[1] if len(levels) > 1 else levels[0].lower())
    counts = {split: np.bincount([row["label"] for row in rows], minlength=14) for split, rows in splits.items()}
    assert counts["train"].min() > 0 and counts["validation"].min() > 0
    assert [RFAM_TYPE_LABELS[k] for k in np.flatnonzero(counts["test"] == 0)] == ["CRISPR"]


def test_rna_type_is_not_built_by_default():
    # A default folder goes to build_rfam_corpus.py --exclude_dataset_dir, which would drop Rfam's own sequences.
    assert "RNAType" not in build_beacon_real.DEFAULT_CONFIGS
    assert set(build_beacon_real.DEFAULT_CONFIGS) >= {"VDP", "CRI-Off"}


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_capped_config_loads_with_its_schema(capped_folder, name):
    loaded = datasets.load_dataset(str(capped_folder), name)
    assert {split: loaded[split].num_rows for split in loaded} == dict.fromkeys(("train", "validation", "test"),
                                                                                ROW_CAP)
    assert loaded["test"].features == beacon_features(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_run_beacon_trains_and_scores_each_task(capped_folder, tmp_path, name):
    task = get_task(name)
    if name == "CRI-Off":  # Spearman needs active and inactive sites among the scored rows
        labels = datasets.load_dataset(str(capped_folder), name, split="test")["label"]
        assert 0 < sum(label > 0 for label in labels) < len(labels)
    results = run_beacon.main([
        "--task", name, "--dataset_dir", str(capped_folder), "--output_dir", str(tmp_path / "run"),
        "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "32",
        "--max_length", "132", "--max_steps", "3", "--eval_strategy", "no", "--save_strategy", "no",
        "--load_best_model_at_end", "false", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32",
        "--use_cpu", "--disable_tqdm", "true", "--report_to", "none",
    ])  # fmt: skip
    assert math.isfinite(results["test"][task.metric_key])
