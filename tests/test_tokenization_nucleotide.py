"""NucleotideTokenizer, plus the transformers integration shared by both tokenizers (run for each of them)."""

import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, DataCollatorForLanguageModeling, EsmTokenizer
from transformers.utils import logging as hf_logging

from hf_genomics import KmerTokenizer, NucleotideTokenizer, read_fasta, split_on_n_runs

BEACON_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "A", "T", "C", "G", "N", "<mask>"]
TOKENIZERS = {
    "nucleotide": NucleotideTokenizer,
    "kmer6_overlapping": lambda: KmerTokenizer(k=6, stride=1),
    "kmer6_non_overlapping": lambda: KmerTokenizer(k=6, stride=6),
    "kmer3_stride2": lambda: KmerTokenizer(k=3, stride=2),
}


@pytest.fixture(scope="module")
def human_windows(data_dir):
    """Windows of random length (1-400 bp, soft-masked case kept) cut from human chr1; some cross its N runs."""
    _, chromosome = next(read_fasta(data_dir / "human_chr1_3mb" / "chr1.fa.gz", uppercase=False))
    rng = np.random.default_rng(0)
    starts = rng.integers(10_000, len(chromosome) - 400, size=400)
    windows = [chromosome[start : start + length] for start, length in zip(starts, rng.integers(1, 400, size=400))]
    assert any("N" in window for window in windows) and any(c.islower() for c in "".join(windows))
    return windows


@pytest.fixture(scope="module")
def rna_sequences(data_dir):
    path = data_dir / "rnacentral_sample" / "format_rnacentral_active.100.sample-Max50.fasta"
    return [sequence for _, sequence in read_fasta(path)]


# --- NucleotideTokenizer ------------------------------------------------------------------------------------------


def test_default_vocabulary_is_beacon_b_in_file_order(tmp_path):
    tokenizer = NucleotideTokenizer()
    assert tokenizer.get_vocab() == {token: index for index, token in enumerate(BEACON_VOCAB)}
    assert (tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert (tokenizer.unk_token_id, tokenizer.mask_token_id, len(tokenizer)) == (3, 9, 10)
    assert (tokenizer.k, tokenizer.stride) == (1, 1)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.txt").read_text().split("\n")[:-1] == BEACON_VOCAB


def test_case_rna_and_ambiguity_codes_are_folded():
    tokenizer = NucleotideTokenizer()
    assert tokenizer("acgtU")["input_ids"] == [0, 4, 6, 7, 5, 5, 2]
    ambiguity = "RYKMSWBDHVrykmswbdhvNn"
    assert tokenizer(ambiguity)["input_ids"] == [0] + [8] * len(ambiguity) + [2]
    assert tokenizer.tokenize("aCgU") == ["A", "C", "G", "T"]


@pytest.mark.parametrize(
    "sequence, character, position",
    [
        ("AC1GT", "1", 2),
        ("ACGT-", "-", 4),
        (".ACGT", ".", 0),
        ("AC GT", " ", 2),
        ("ACG\nT", "\n", 3),
        ("ACGé", "é", 3),
    ],
)
def test_invalid_characters_raise_with_character_position_and_alphabet(sequence, character, position):
    tokenizer = NucleotideTokenizer()
    for call in (lambda: tokenizer(sequence), lambda: tokenizer(["ACGT", sequence], padding=True)):
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert f"Invalid character {character!r} at position {position}" in message
        assert "A, C, G, T, N" in message and "IUPAC" in message and "invalid_to_unk=True" in message


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("bad, message", [("AC-GT", "Invalid character '-' at position 2"), ("", "Empty sequence")])
def test_batch_errors_name_the_sequence(name, bad, message):
    """A bad batch falls back to the per-sequence path, whose error then names the sequence: here the third, after
    one holding a mask token (which the cheap alphabet screen flags but the per-sequence path accepts)."""
    tokenizer = TOKENIZERS[name]()
    batch = ["ACGTACGT", f"ACG{tokenizer.mask_token}TAC", bad, "ACG-"]
    with pytest.raises(ValueError) as error:
        tokenizer(batch, padding=True)
    assert str(error.value).startswith(f"sequence 2 of the batch: {message}")
    with pytest.raises(ValueError) as error:
        tokenizer(["ACGTACGT", "ACGTAC"], ["ACGT", "A-C"])
    assert str(error.value).startswith("sequence 1 of the batch: Invalid character '-' at position 1")


def test_empty_sequence_raises():
    tokenizer = NucleotideTokenizer(invalid_to_unk=True)
    for call in (lambda: tokenizer(""), lambda: tokenizer(["ACGT", ""])):
        with pytest.raises(ValueError, match="Empty sequence"):
            call()


def test_invalid_to_unk_maps_only_bad_characters_to_unk():
    tokenizer = NucleotideTokenizer(invalid_to_unk=True)
    expected = [0, 4, 6, 3, 7, 3, 5, 8, 2]
    assert tokenizer("AC-G.TR")["input_ids"] == expected
    assert tokenizer(["AC-G.TR", "A"], padding=True)["input_ids"] == [expected, [0, 4, 2] + [1] * 6]


def test_special_tokens_in_text_pairs_and_decode():
    tokenizer = NucleotideTokenizer()
    assert tokenizer("AC<mask>G")["input_ids"] == [0, 4, 6, 9, 7, 2]
    assert tokenizer("AC", "GT")["input_ids"] == [0, 4, 6, 2, 7, 5, 2]
    ids = tokenizer(["acgun", "GG"], padding=True)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == ["ACGTN", "GG"]
    assert tokenizer.decode(ids[1]) == "<cls>GG<eos><pad><pad><pad>"
    # Masked positions keep their place when the framing is skipped.
    assert tokenizer.decode([0, 4, 9, 6, 2], skip_special_tokens=True) == "A<mask>C"


def test_custom_vocabulary_file_in_another_order(tmp_path):
    vocab = ["<pad>", "<unk>", "<cls>", "<eos>", "<mask>", "G", "C", "T", "A"]  # no N: N becomes <unk>
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = NucleotideTokenizer(vocab_file=str(tmp_path / "vocab.txt"))
    assert tokenizer("ACGTN")["input_ids"] == [2, 8, 6, 5, 7, 1, 3]
    assert tokenizer(["ACGTN", "G"], padding=True)["input_ids"] == [[2, 8, 6, 5, 7, 1, 3], [2, 5, 3, 0, 0, 0, 0]]
    (tmp_path / "bad.txt").write_text("\n".join(["<pad>", "A", "C", "G"]) + "\n")
    with pytest.raises(ValueError, match=r"lacks the nucleotide token\(s\) \['T'\]"):
        NucleotideTokenizer(vocab_file=str(tmp_path / "bad.txt"))


def test_rna_alphabet_keeps_u_and_reads_t_as_u(tmp_path):
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", "A", "U", "C", "G", "N", "<mask>"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = NucleotideTokenizer(vocab_file=str(tmp_path / "vocab.txt"), alphabet="rna")
    assert tokenizer.tokenize("ACGTu") == ["A", "C", "G", "U", "U"]
    assert tokenizer(["ACGTu"])["input_ids"] == [[0, 4, 6, 7, 5, 5, 2]]
    with pytest.raises(ValueError, match="lacks the nucleotide token"):
        NucleotideTokenizer(alphabet="rna")  # BEACON's vocabulary has T, not U
    with pytest.raises(ValueError, match="alphabet must be one of"):
        NucleotideTokenizer(alphabet="protein")


def test_same_ids_as_esm_tokenizer_with_beacon_vocab(tmp_path, rna_sequences):
    """BEACON's own fine-tuning scripts: `EsmTokenizer` on the U->T, upper-cased sequence."""
    tokenizer = NucleotideTokenizer()
    esm = EsmTokenizer(vocab_file=tokenizer.save_vocabulary(str(tmp_path))[0])
    sequences = rna_sequences[::5]
    expected = esm([s.upper().replace("U", "T") for s in sequences], padding=True, return_tensors="pt")
    got = tokenizer(sequences, padding=True, return_tensors="pt")
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["attention_mask"], expected["attention_mask"])


# --- transformers integration, for both tokenizers ---------------------------------------------------------------


@pytest.mark.parametrize("name", TOKENIZERS)
def test_batch_path_matches_per_sequence_path_on_real_data(name, human_windows, rna_sequences):
    tokenizer = TOKENIZERS[name]()
    for sequences in (human_windows, rna_sequences[::4]):
        assert tokenizer(sequences)["input_ids"] == [tokenizer(s)["input_ids"] for s in sequences]


CALL_OPTIONS = [
    dict(padding=True),
    dict(padding=True, return_tensors="pt", return_special_tokens_mask=True),
    dict(padding="max_length", truncation=True, max_length=64, return_tensors="np", return_length=True),
    dict(padding=True, truncation=True, max_length=40, pad_to_multiple_of=8, padding_side="left"),
    dict(padding="longest", pad_to_multiple_of=16, return_token_type_ids=True, return_attention_mask=False),
    dict(truncation=True, max_length=30, return_special_tokens_mask=True),
    dict(truncation="only_first", max_length=25, padding=True, return_tensors="pt", add_special_tokens=False),
    dict(padding="max_length", max_length=30),  # longer rows stay unpadded, as in transformers
    dict(truncation=True, padding=True, return_tensors="pt"),  # model_max_length
    dict(truncation="only_second", max_length=20, padding=True),  # no second sequence: nothing to cut
]


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("options", CALL_OPTIONS, ids=lambda options: ",".join(f"{k}={v}" for k, v in options.items()))
@pytest.mark.parametrize("truncation_side", ["right", "left"])
def test_batch_path_keeps_transformers_padding_and_truncation(
    name, options, truncation_side, human_windows, monkeypatch
):
    tokenizer = TOKENIZERS[name]()
    tokenizer.truncation_side = truncation_side
    sequences = human_windows[:24]
    fast = tokenizer(sequences, **options)
    # Reference: the same call through transformers' own per-sequence loop and `pad`.
    monkeypatch.setattr(tokenizer.nucleotide_alphabet, "encode", lambda texts: None)
    reference = tokenizer(sequences, **options)
    assert list(fast.keys()) == list(reference.keys())
    for key in reference:
        expected, got = reference[key], fast[key]
        if isinstance(expected, torch.Tensor | np.ndarray):
            assert type(got) is type(expected) and got.dtype == expected.dtype, key
            expected, got = expected.tolist(), got.tolist()
        assert got == expected, key


@pytest.mark.parametrize("name", TOKENIZERS)
def test_truncation_keeps_framing_and_rejects_max_length_without_room(name, human_windows):
    tokenizer = TOKENIZERS[name]()
    long = "".join(human_windows[:20])
    encoded = tokenizer([long, long[:50]], truncation=True, max_length=12, padding=True, return_tensors="pt")
    assert encoded["input_ids"].shape == (2, 12)
    assert encoded["input_ids"][0, 0] == tokenizer.cls_token_id
    assert encoded["input_ids"][0, -1] == tokenizer.sep_token_id
    assert encoded["input_ids"][0, 1:-1].tolist() == tokenizer(long)["input_ids"][1:11]
    assert len(tokenizer(long, truncation=True)["input_ids"]) == tokenizer.model_max_length
    for max_length in (1, 2):
        with pytest.raises(ValueError, match="leaves no room for the sequence"):
            tokenizer([long], truncation=True, max_length=max_length)


def test_too_long_without_truncation_warns_and_keeps_every_token(human_windows):
    tokenizer = NucleotideTokenizer(model_max_length=100)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = hf_logging.get_logger("transformers.tokenization_utils_base")
    logger.addHandler(handler)
    # Other tests (Trainer runs) may have lowered transformers' verbosity; this one needs warnings through.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        encoded = tokenizer(["A" * 150, "ACGT"], padding=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        logger.removeHandler(handler)
    assert any("longer than the specified maximum" in record.getMessage() for record in records)
    assert len(encoded["input_ids"][0]) == 152


@pytest.mark.parametrize("name", TOKENIZERS)
def test_data_collator_for_language_modeling_never_masks_special_or_padding(name, human_windows):
    tokenizer = TOKENIZERS[name]()
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.5, seed=0)
    for with_mask in (True, False):
        features = tokenizer(human_windows[:16], return_special_tokens_mask=with_mask)
        batch = collator([{key: value[i] for key, value in features.items()} for i in range(16)])
        reference = tokenizer(human_windows[:16], padding=True, return_special_tokens_mask=True, return_tensors="pt")
        special = reference["special_tokens_mask"].bool()
        assert torch.equal(batch["attention_mask"], reference["attention_mask"])
        masked = batch["labels"] != -100
        assert masked.any() and not (masked & special).any()
        assert torch.equal(batch["labels"][masked], reference["input_ids"][masked])
        assert torch.equal(batch["input_ids"][special], reference["input_ids"][special])
        assert (batch["input_ids"][masked] == tokenizer.mask_token_id).float().mean() > 0.6


@pytest.mark.parametrize("name", TOKENIZERS)
def test_auto_tokenizer_loads_saved_folder(name, tmp_path, human_windows):
    tokenizer = TOKENIZERS[name]()
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == type(tokenizer).__name__
    module = type(tokenizer).__module__.split(".")[-1]
    assert config["auto_map"]["AutoTokenizer"] == [f"{module}.{type(tokenizer).__name__}", None]
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is type(tokenizer) and (loaded.k, loaded.stride) == (tokenizer.k, tokenizer.stride)
    assert loaded(human_windows)["input_ids"] == tokenizer(human_windows)["input_ids"]


@pytest.mark.slow
def test_saved_folders_load_as_remote_code_without_hf_genomics(tmp_path, human_windows):
    sequences = human_windows[:20]
    expected = {}
    for name in ("nucleotide", "kmer6_overlapping"):
        tokenizer = TOKENIZERS[name]()
        tokenizer.save_pretrained(tmp_path / name)
        expected[name] = tokenizer(sequences, padding=True)["input_ids"]
    (tmp_path / "inputs.json").write_text(json.dumps({"sequences": sequences, "expected": expected}))
    script = textwrap.dedent(
        """
        import json, sys

        class BlockHfGenomics:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "hf_genomics":
                    raise ImportError("hf_genomics is blocked in this test")

        sys.meta_path.insert(0, BlockHfGenomics())
        from transformers import AutoTokenizer

        folder = sys.argv[1]
        inputs = json.load(open(f"{folder}/inputs.json"))
        for name, expected in inputs["expected"].items():
            tokenizer = AutoTokenizer.from_pretrained(f"{folder}/{name}", trust_remote_code=True)
            assert type(tokenizer).__module__.startswith("transformers_modules."), type(tokenizer).__module__
            assert tokenizer(inputs["sequences"], padding=True)["input_ids"] == expected, name
        assert not [m for m in sys.modules if m.split(".")[0] == "hf_genomics"]
        print("remote ok")
        """
    )
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote ok" in result.stdout


def test_human_pieces_round_trip_through_decode(human_windows):
    tokenizer = NucleotideTokenizer()
    pieces = [piece.upper() for window in human_windows[:50] for piece in split_on_n_runs(window)]
    ids = tokenizer(pieces, padding=True)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == pieces
    assert list(itertools.chain.from_iterable(tokenizer.tokenize(p) for p in pieces)) == list("".join(pieces))
