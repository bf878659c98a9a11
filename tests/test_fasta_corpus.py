"""read_fasta, split_on_n_runs and default_corpus_files on the shipped real data; unreadable files named."""

import gzip
import re
import shutil

import pytest

from hf_genomics import default_corpus_files, read_fasta, read_nrc, split_on_n_runs


def test_lambda_phage_gzip(data_dir):
    records = list(read_fasta(data_dir / "lambda_phage" / "lambda_virus.fa.gz"))
    assert len(records) == 1
    header, sequence = records[0]
    assert header.startswith("gi|9626243|ref|NC_001416.1|")
    assert len(sequence) == 48_502 and set(sequence) == set("ACGT")


def test_human_chr1_soft_masking_and_n_runs(data_dir):
    path = data_dir / "human_chr1_3mb" / "chr1.fa.gz"
    (header, raw), = read_fasta(path, uppercase=False)
    (_, upper), = read_fasta(path)
    assert header == "chr1" and len(raw) == len(upper) == 3_004_950  # PROVENANCE.md
    assert any(c.islower() for c in raw[:200_000]) and upper == raw.upper()
    pieces = split_on_n_runs(upper)
    assert sum(map(len, pieces)) == 2_794_950 and all("N" not in piece for piece in pieces)
    assert "".join(pieces) == upper.replace("N", "")


def test_crlf_file_and_many_records(data_dir):
    path = data_dir / "nrc_ncrna" / "dataset_Rfam_6320_13classes.fasta"
    assert b"\r\n" in path.read_bytes()[:200]
    records = list(read_fasta(path))
    assert len(records) == 6_320
    assert not any("\r" in header or "\r" in sequence for header, sequence in records)
    assert not any(" " in sequence or not sequence for _, sequence in records)


def test_gzip_is_detected_by_content_not_extension(tmp_path, data_dir):
    source = data_dir / "lambda_phage" / "lambda_virus.fa.gz"
    shutil.copy(source, tmp_path / "lambda.fa")
    (tmp_path / "plain.fa.gz").write_bytes(gzip.decompress(source.read_bytes()))
    expected = list(read_fasta(source))
    assert list(read_fasta(tmp_path / "lambda.fa")) == expected == list(read_fasta(tmp_path / "plain.fa.gz"))


def test_malformed_fasta_raises(tmp_path):
    (tmp_path / "headless.fa").write_text("ACGT\n>x\nAC\n")
    with pytest.raises(ValueError, match="line 1 holds sequence before any '>' header"):
        list(read_fasta(tmp_path / "headless.fa"))
    (tmp_path / "empty.fa").write_text("\n")
    with pytest.raises(ValueError, match="no FASTA record"):
        list(read_fasta(tmp_path / "empty.fa"))
    (tmp_path / "two.fa").write_text(">a desc\nac\ngt\n\n>b\n>c\nNN\n")
    assert list(read_fasta(tmp_path / "two.fa")) == [("a desc", "ACGT"), ("b", ""), ("c", "NN")]


def test_split_on_n_runs():
    assert split_on_n_runs("NNACGTNACnnnnGTN") == ["ACGT", "AC", "GT"]
    assert split_on_n_runs("NNACGTNACnnnnGTN", min_run=2) == ["ACGTNAC", "GTN"]
    assert split_on_n_runs("NNNN") == []
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="min_run must be a positive integer"):
            split_on_n_runs("ACGT", min_run=bad)


def test_default_corpus_files(data_dir, tmp_path):
    assert default_corpus_files() == [
        data_dir / "human_chr1_3mb" / "chr1.fa.gz",
        data_dir / "lambda_phage" / "lambda_virus.fa.gz",
    ]
    (rna,) = default_corpus_files("rna")
    records = list(read_fasta(rna))
    assert len(records) == 1_400 and "U" in records[0][1]
    with pytest.raises(ValueError, match="kind must be one of"):
        default_corpus_files("protein")
    with pytest.raises(FileNotFoundError, match="data/ folder of the hf_genomics repository"):
        default_corpus_files("dna", data_dir=tmp_path)


def test_unreadable_files_raise_naming_the_file_and_line(tmp_path, data_dir):
    compressed = (data_dir / "lambda_phage" / "lambda_virus.fa.gz").read_bytes()
    truncated = tmp_path / "truncated.fa.gz"
    truncated.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{truncated}: gzip data is truncated or corrupt")):
        list(read_fasta(truncated))
    text = ">a\nACGT\n>b caf\xe9\nAC\n".encode("latin-1")
    (tmp_path / "latin1.fa").write_bytes(text)
    (tmp_path / "latin1.fa.gz").write_bytes(gzip.compress(text))
    for path in (tmp_path / "latin1.fa", tmp_path / "latin1.fa.gz"):
        expected = re.escape(f"{path}: line 3 holds the non-ASCII byte 0xe9; expected an ASCII FASTA file")
        with pytest.raises(ValueError, match=expected):
            list(read_fasta(path))
        with pytest.raises(ValueError, match=expected):
            read_nrc(path)


def test_read_nrc_names_a_record_with_an_empty_header(tmp_path):
    (tmp_path / "nrc.fa").write_text(">r1 desc 5S_rRNA\nACGU\n>\nAC\n")
    with pytest.raises(ValueError, match="nrc.fa: record 2 has an empty header"):
        read_nrc(tmp_path / "nrc.fa")
