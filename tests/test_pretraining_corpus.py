"""Pretraining corpus: DNABERT-style chunks of real FASTA, file formats, Hub folder, streaming example run."""

import gzip
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from hf_genomics import read_fasta, split_on_n_runs
from hf_genomics.data.pretraining_corpus import (
    build_pretraining_dataset,
    iterable_pretraining_dataset,
    pretraining_chunks,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "dataset_scripts"))
sys.path.insert(0, str(REPO / "examples"))
import build_pretraining_corpus  # noqa: E402
import run_randommask  # noqa: E402


@pytest.fixture(scope="module")
def chr1_fasta(tmp_path_factory, data_dir):
    """80 kb of the real chr1 fragment: soft-masked repeats and, inside, a 50 kb run of N (177,417-227,417)."""
    header, sequence = next(read_fasta(data_dir / "human_chr1_3mb" / "chr1.fa.gz", uppercase=False))
    fragment = sequence[160_000:240_000]
    assert "N" * 1000 in fragment and any(base.islower() for base in fragment)
    path = tmp_path_factory.mktemp("corpus") / "chr1_fragment.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(f">{header}\n" + "\n".join(fragment[i : i + 60] for i in range(0, len(fragment), 60)) + "\n")
    return path, fragment


def test_chunks_tile_the_n_free_pieces_dnabert_style(chr1_fasta):
    path, fragment = chr1_fasta
    settings = dict(max_length=200, min_length=10, validation_fraction=0.0, seed=3)
    chunks = [row["sequence"] for row in pretraining_chunks([path], **settings)]
    pieces = split_on_n_runs(fragment.upper())
    # Consecutive chunks re-assemble each upper-cased, N-free piece, up to a tail shorter than min_length.
    index = 0
    for piece in pieces:
        position = 0
        while index < len(chunks) and piece.startswith(chunks[index], position):
            position, index = position + len(chunks[index]), index + 1
        assert len(piece) - position < 10
    assert index == len(chunks) and len(pieces) >= 2
    assert set("".join(chunks)) <= set("ACGT")
    lengths = [len(chunk) for chunk in chunks]
    assert min(lengths) >= 10 and max(lengths) == 200
    full = sum(length == 200 for length in lengths) / len(lengths)
    assert 0.4 < full < 0.65  # half full-length windows (plus random draws of exactly 200)
    assert chunks == [row["sequence"] for row in pretraining_chunks([path], **settings)]


def test_split_is_seeded_disjoint_and_identical_when_streamed(chr1_fasta, data_dir):
    paths = [chr1_fasta[0], data_dir / "lambda_phage" / "lambda_virus.fa.gz"]
    settings = dict(max_length=128, min_length=16, validation_fraction=0.1, seed=0)
    everything = [
        row["sequence"] for row in pretraining_chunks(paths, validation_fraction=0.0, max_length=128, min_length=16)
    ]
    train = build_pretraining_dataset(paths, split="train", **settings)
    validation = build_pretraining_dataset(paths, split="validation", **settings)
    assert len(train) + len(validation) == len(everything)
    assert 0.05 < len(validation) / len(everything) < 0.15
    assert sorted(list(train["sequence"]) + list(validation["sequence"])) == sorted(everything)
    streamed = iterable_pretraining_dataset(paths, split="validation", **settings)
    assert streamed.n_shards == 2
    assert [row["sequence"] for row in streamed] == list(validation["sequence"])
    assert {source.split(":")[0] for source in train["source"]} == {"chr1_fragment.fa.gz", "lambda_virus.fa.gz"}


def test_text_and_parquet_inputs_give_the_fasta_chunks(tmp_path, chr1_fasta):
    path, fragment = chr1_fasta
    text = tmp_path / "chr1.txt"
    text.write_text(fragment + "\n")
    parquet = tmp_path / "chr1.parquet"
    pq.write_table(pa.table({"sequence": [fragment]}), parquet)
    settings = dict(max_length=100, min_length=10, validation_fraction=0.0)
    reference = [row["sequence"] for row in pretraining_chunks([path], **settings)]
    for other in (text, parquet):
        assert [row["sequence"] for row in pretraining_chunks([other], **settings)] == reference
    (tmp_path / "chr1.bam").touch()
    with pytest.raises(ValueError, match="format"):
        list(pretraining_chunks([tmp_path / "chr1.bam"], **settings))
    pq.write_table(pa.table({"seq": [fragment]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="'sequence' column"):
        list(pretraining_chunks([tmp_path / "bad.parquet"], **settings))
    with pytest.raises(ValueError, match="min_length"):
        list(pretraining_chunks([path], max_length=5, min_length=10))


def test_hub_folder_loads_offline_and_feeds_the_streaming_example(tmp_path, data_dir):
    folder = tmp_path / "lambda_corpus"
    build_pretraining_corpus.main([
        "--input", str(data_dir / "lambda_phage" / "lambda_virus.fa.gz"), "--output_dir", str(folder),
        "--max_length", "64", "--min_length", "32", "--validation_fraction", "0.05",
    ])  # fmt: skip
    assert not list(folder.rglob("*.py"))
    assert "configs:" in (folder / "README.md").read_text()
    corpus = load_dataset(str(folder))
    expected = build_pretraining_dataset(
        [data_dir / "lambda_phage" / "lambda_virus.fa.gz"], max_length=64, min_length=32, validation_fraction=0.05
    )
    assert list(corpus["train"]["sequence"]) == list(expected["sequence"])
    assert len(corpus["validation"]) > 0
    assert load_dataset(str(folder), streaming=True)["train"].n_shards == 2

    output = tmp_path / "model"
    results = run_randommask.main([
        "--dataset_dir", str(folder), "--streaming", "--k", "3", "--hidden_size", "32", "--num_attention_heads", "2",
        "--intermediate_size", "64", "--max_steps", "4", "--logging_steps", "2", "--per_device_train_batch_size", "4",
        "--max_eval_samples", "16", "--output_dir", str(output), "--disable_tqdm", "true", "--use_cpu",
    ])  # fmt: skip
    # --max_steps drives the schedule of the (length-less) stream: steps 2 and 4 of 4 (progress 1/4 and 3/4 before
    # them) train in phases 1 and 3 of 5.
    assert [(entry["step"], entry["randommask_phase"]) for entry in results["masking_log"]] == [(2, 1), (4, 3)]
    assert results["masking_log"][-1]["randommask_boundary"] == 9
    assert json.loads((output / "randommask_results.json").read_text())["schedule"]["boundaries"] == [3, 5, 7, 9, 11]
    assert (output / "model.safetensors").is_file() and "randommask" in (output / "README.md").read_text()


def test_packed_pretraining_masks_and_learns_like_the_padded_run(tmp_path, data_dir):
    """--pack_sequences: the same RandomMask batches in packed rows (the collator's phases and statistics are those of
    the padded run) and nearly the same loss; only dropout draws differ."""
    common = [
        "--train_file", str(data_dir / "lambda_phage" / "lambda_virus.fa.gz"), "--k", "3", "--hidden_size", "32",
        "--num_attention_heads", "2", "--intermediate_size", "64", "--max_steps", "4", "--logging_steps", "2",
        "--per_device_train_batch_size", "8", "--max_length", "64", "--max_eval_samples", "16", "--disable_tqdm",
        "true", "--use_cpu",
    ]  # fmt: skip
    padded = run_randommask.main([*common, "--output_dir", str(tmp_path / "padded")])
    packed = run_randommask.main([*common, "--output_dir", str(tmp_path / "packed"), "--pack_sequences"])
    assert packed["masking_log"] == padded["masking_log"] and len(packed["masking_log"]) == 2
    assert packed["heldout_loss_before"] == pytest.approx(padded["heldout_loss_before"], rel=1e-6)
    assert packed["train_loss"] == pytest.approx(padded["train_loss"], rel=0.03)
    with pytest.raises(ValueError, match="--pack_sequences needs --position_embedding_type alibi"):
        run_randommask.main([*common, "--output_dir", str(tmp_path / "abs"), "--pack_sequences",
                             "--position_embedding_type", "absolute"])
