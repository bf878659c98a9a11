"""KmerTokenizer: vocabulary layout, DNABERT equivalence, non-overlapping remainder, N handling, decode, validation.

The transformers integration (padding, truncation, tensors, collator, AutoTokenizer, remote code, batch path) is
tested for both tokenizers in test_tokenization_nucleotide.py.
"""

import itertools
import json

import pytest
from transformers import BertTokenizerFast

from hf_genomics import KmerTokenizer, read_fasta

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def dnabert_examples(data_dir):
    """DNABERT's own promoter examples: space-joined overlapping 6-mers of 101 bp sequences."""
    lines = (data_dir / "dnabert_prom_sample" / "dev.tsv").read_text().splitlines()[1:]
    kmer_texts = [line.split("\t")[0] for line in lines]
    sequences = [text.split()[0] + "".join(kmer[-1] for kmer in text.split()[1:]) for text in kmer_texts]
    return kmer_texts, sequences


@pytest.fixture(scope="module")
def lambda_genome(data_dir):
    return next(read_fasta(data_dir / "lambda_phage" / "lambda_virus.fa.gz"))[1]


def test_default_vocabulary_layout():
    vocab = KmerTokenizer(k=3).get_vocab()
    expected = SPECIALS + ["".join(p) for p in itertools.product("ACGT", repeat=3)] + ["A", "C", "G", "T"]
    assert vocab == {token: index for index, token in enumerate(expected)}
    six = KmerTokenizer(k=6)
    assert len(six) == 5 + 4**6 + 4
    assert six.convert_tokens_to_ids(["AAAAAA", "AAAAAC", "TTTTTT", "A", "T"]) == [5, 6, 4100, 4101, 4104]
    assert KmerTokenizer(k=1, stride=1).get_vocab() == {t: i for i, t in enumerate(SPECIALS + list("ACGT"))}


def test_dnabert_vocab_file_gives_dnabert_ids(tmp_path, dnabert_examples):
    """DNABERT's tokenizer is BERT's WordPiece on space-joined 6-mers; its vocab.txt lists the k-mers in ATCG order."""
    kmer_texts, sequences = dnabert_examples
    vocab = SPECIALS + ["".join(p) for p in itertools.product("ATCG", repeat=6)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    dnabert = BertTokenizerFast.from_pretrained(tmp_path, do_lower_case=False)
    tokenizer = KmerTokenizer(vocab_file=str(tmp_path / "vocab.txt"), k=6, stride=1)
    expected = dnabert(kmer_texts)["input_ids"]
    assert tokenizer(sequences)["input_ids"] == expected
    assert [tokenizer(s)["input_ids"] for s in sequences[:50]] == expected[:50]
    assert tokenizer.tokenize(sequences[0]) == kmer_texts[0].split()
    assert tokenizer.decode(expected[:5], skip_special_tokens=True) == sequences[:5]


def test_overlapping_kmers_count_and_order():
    tokenizer = KmerTokenizer(k=3, stride=1)
    assert tokenizer.tokenize("ACGTAC") == ["ACG", "CGT", "GTA", "TAC"]  # L - k + 1
    vocab = tokenizer.get_vocab()
    assert tokenizer("acgtac")["input_ids"] == [2] + [vocab[t] for t in ["ACG", "CGT", "GTA", "TAC"]] + [3]
    # Shorter than k: the nucleotides become single-nucleotide tokens rather than vanish.
    assert tokenizer.tokenize("AC") == ["A", "C"]


def test_non_overlapping_remainder_becomes_single_nucleotides():
    tokenizer = KmerTokenizer(k=6, stride=6)
    assert tokenizer.tokenize("ACGTACGTTTGCAT") == ["ACGTAC", "GTTTGC", "A", "T"]
    vocab = tokenizer.get_vocab()
    expected = [2, vocab["ACGTAC"], vocab["GTTTGC"], 4101, 4104, 3]
    assert tokenizer("ACGTACGTTTGCAT")["input_ids"] == expected
    assert tokenizer(["ACGTACGTTTGCAT", "ACG"], padding=True)["input_ids"] == [expected, [2, 4101, 4102, 4103, 3, 0]]


def test_kmers_with_n_or_ambiguity_codes_are_unknown():
    tokenizer = KmerTokenizer(k=3, stride=1)
    vocab = tokenizer.get_vocab()
    assert tokenizer.tokenize("ACGNAC") == ["ACG", "[UNK]", "[UNK]", "[UNK]"]
    assert tokenizer("ACGRAC")["input_ids"] == [2, vocab["ACG"], 1, 1, 1, 3]
    assert tokenizer(["ACGNAC", "ACGRAC"])["input_ids"] == [[2, vocab["ACG"], 1, 1, 1, 3]] * 2
    non_overlapping = KmerTokenizer(k=3, stride=3)
    assert non_overlapping(["ACGTAN", "ACGN"])["input_ids"] == [[2, vocab["ACG"], 1, 3], [2, vocab["ACG"], 1, 3]]


def test_invalid_characters_raise_unless_unk():
    message = r"^sequence 1 of the batch: Invalid character '-' at position 3 .* Accepted: A, C, G, T, N"
    with pytest.raises(ValueError, match=message):
        KmerTokenizer(k=3)(["ACGTACGT", "ACG-TT"])
    tokenizer = KmerTokenizer(k=3, invalid_to_unk=True)
    assert tokenizer.tokenize("ACG-TT") == ["ACG", "[UNK]", "[UNK]", "[UNK]"]


def test_decode_merges_overlapping_kmers(lambda_genome):
    windows = [lambda_genome[start : start + length] for start, length in zip(range(0, 40_000, 997), range(1, 400, 9))]
    for k, stride in [(6, 1), (6, 6), (4, 3), (1, 1), (8, 1)]:
        tokenizer = KmerTokenizer(k=k, stride=stride)
        ids = tokenizer(windows, padding=True)["input_ids"]
        assert tokenizer.decode(ids, skip_special_tokens=True) == windows, (k, stride)
    tokenizer = KmerTokenizer(k=3, stride=1)
    # Only N-containing (unknown) k-mers cover the N, so it comes back as N; its neighbours are recovered.
    assert tokenizer.decode(tokenizer("ACGNTTGCA")["input_ids"], skip_special_tokens=True) == "ACGNTTGCA"
    assert tokenizer.decode(tokenizer("ACGT")["input_ids"]) == "[CLS]ACGT[SEP]"
    # A masked k-mer's nucleotides are known from its neighbours, except the ones only it covers.
    ids = tokenizer("ACGTTG")["input_ids"]
    ids[2] = tokenizer.mask_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "ACGTTG"
    ids[1:3] = [tokenizer.mask_token_id] * 2  # ACG and CGT: A and C are lost, G is known from GTT
    assert tokenizer.decode(ids, skip_special_tokens=True) == "NNGTTG"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(k=0), "k must be an integer from 1 to 8, got 0"),
        (dict(k=9), "k must be an integer from 1 to 8, got 9"),
        (dict(k=2.5), "k must be an integer"),
        (dict(k="6"), "k must be an integer"),
        (dict(k=True), "k must be an integer"),
        (dict(k=6, stride=0), r"stride must be an integer from 1 \(overlapping k-mers\) to k=6"),
        (dict(k=6, stride=7), "stride must be an integer from 1"),
        (dict(k=3, stride=1.0), "stride must be an integer"),
    ],
)
def test_k_and_stride_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KmerTokenizer(**kwargs)


def test_vocabulary_must_hold_every_kmer(tmp_path):
    KmerTokenizer(k=3).save_vocabulary(str(tmp_path))
    with pytest.raises(ValueError, match="lacks 4096 of the 4096 6-mers .* check that k=6 matches"):
        KmerTokenizer(vocab_file=str(tmp_path / "vocab.txt"), k=6)


def test_k_and_stride_saved_in_tokenizer_config(tmp_path):
    KmerTokenizer(k=4, stride=4).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert (config["k"], config["stride"], config["tokenizer_class"]) == (4, 4, "KmerTokenizer")
    loaded = KmerTokenizer.from_pretrained(tmp_path)
    assert (loaded.k, loaded.stride, len(loaded)) == (4, 4, 5 + 256 + 4)
