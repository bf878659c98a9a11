"""build_rfam_corpus.py: the shipped Rfam seed file, deduplication against evaluation data, family hold-out."""

import gzip
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scripts.example_scripts import load_script

build_rfam_corpus = load_script("dataset_scripts/build_rfam_corpus.py")

RECORDS = [
    ("RF00001", "a/1-8", "ACGUACGU"),
    ("RF00001", "b/1-8", "acgtacgt"),  # the same sequence as a/1-8 once normalized: a repeat
    ("RF00001", "c/1-8", "GGGGCCCC"),  # also in the evaluation data below
    ("RF00002", "d/1-6", "AAAUUU"),
    ("RF00003", "e/1-6", "CCCAAA"),
    ("RF00004", "f/1-6", "UUUGGG"),
]


def test_shipped_seed_file_has_every_family():
    records = build_rfam_corpus.read_rfam_seed(build_rfam_corpus.RFAM_SEED)
    assert len(records) == 72_262
    assert len({family for family, _, _ in records}) == 3_026
    assert sum(len(sequence) for _, _, sequence in records) == 9_847_370


def test_build_drops_evaluation_sequences_and_repeats_and_holds_out_whole_families():
    excluded = {"beacon/ncRNA/test": {"GGGGCCCC"}, "beacon/SSP/train": {"GGGGCCCC", "UUUUUUUU"}}
    splits, report = build_rfam_corpus.build_corpus(RECORDS, excluded, heldout_family_fraction=0.5,
                                                    validation_fraction=0.5, seed=0)
    assert report["dropped_in_evaluation_data"] == 1
    assert report["evaluation_overlap"] == {"beacon/SSP/train": 1, "beacon/ncRNA/test": 1}
    assert report["dropped_repeats"] == 1
    assert report["heldout_families"] == 2
    kept = splits["train"] + splits["validation"] + splits["test"]
    assert sorted(row["sequence"] for row in kept) == ["AAAUUU", "ACGUACGU", "CCCAAA", "UUUGGG"]
    seen_families = {row["family"] for row in splits["train"] + splits["validation"]}
    assert seen_families.isdisjoint(row["family"] for row in splits["test"])
    assert splits["test"] and splits["train"] + splits["validation"]
    assert report["rows"] == {split: len(rows) for split, rows in splits.items()}
    with pytest.raises(ValueError, match="heldout_family_fraction"):
        build_rfam_corpus.build_corpus(RECORDS, {}, heldout_family_fraction=1.0, validation_fraction=0.1, seed=0)


def test_main_writes_a_hub_folder_that_loads_offline(tmp_path):
    fasta = tmp_path / "seed.fa.gz"
    with gzip.open(fasta, "wt") as handle:
        for family, name, sequence in RECORDS:
            handle.write(f">{family}|{name}\n{sequence}\n")
    evaluation = tmp_path / "beacon" / "ncRNA"
    evaluation.mkdir(parents=True)
    pq.write_table(pa.table({"sequence": ["ggggcccc"]}), evaluation / "test-0000.parquet")
    out = tmp_path / "rfam"
    report = build_rfam_corpus.main(["--output_dir", str(out), "--rfam_fasta", str(fasta), "--exclude_dataset_dir",
                                     str(tmp_path / "beacon"), "--heldout_family_fraction", "0.25"])
    corpus = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {split: corpus[split].num_rows for split in corpus} == report["rows"]
    assert report["evaluation_overlap"] == {"beacon/ncRNA/test": 1}
    assert json.loads((out / "build_report.json").read_text()) == report
    assert "verbatim in evaluation data" in (out / "README.md").read_text()


def test_bad_header_is_named(tmp_path):
    fasta = tmp_path / "bad.fa.gz"
    with gzip.open(fasta, "wt") as handle:
        handle.write(">X01556.1/3-118\nACGU\n")
    with pytest.raises(ValueError, match="is not '>RFxxxxx"):
        build_rfam_corpus.read_rfam_seed(fasta)
