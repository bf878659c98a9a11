"""Token-id augmentations on real sequences, for the nucleotide tokenizer and both k-mer layouts."""

import csv
import gzip

import pytest
import torch

from hf_genomics import Compose, PointMutation, RandomMasking, RandomShift, ReverseComplement
from hf_genomics.tokenization_kmer import KmerTokenizer
from hf_genomics.tokenization_nucleotide import NucleotideTokenizer

TOKENIZERS = {
    "nucleotide": lambda: NucleotideTokenizer(),
    "kmer3_overlapping": lambda: KmerTokenizer(k=3, stride=1),
    "kmer6_overlapping": lambda: KmerTokenizer(k=6, stride=1),
    "kmer3_nonoverlapping": lambda: KmerTokenizer(k=3, stride=3),
}


def plain_reverse_complement(sequence: str) -> str:
    return "".join({"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}[base] for base in reversed(sequence))


@pytest.fixture(scope="module")
def sequences(data_dir):
    """Real promoters (GUE prom_core_tata, 70 bp) of varied lengths plus human chr1 pieces around an N run."""
    with open(data_dir / "gue/prom/prom_core_tata/test.csv") as handle:
        promoters = [row["sequence"] for row in csv.DictReader(handle)][:24]
    promoters = [seq[: 40 + (7 * i) % 31] for i, seq in enumerate(promoters)]  # lengths 40..70, every residue mod k
    with gzip.open(data_dir / "human_chr1_3mb/chr1.fa.gz", "rt") as handle:
        handle.readline()
        chr1 = "".join(handle.readline().strip() for _ in range(220)).upper()  # first ~13 kb; 10 kb of N first
    # Pieces straddling the N -> ACGT boundary at 10,000, and one with an isolated N in the middle.
    with_n = [chr1[9_980:10_040], chr1[9_995:10_051], chr1[10_000:10_030] + "N" + chr1[10_030:10_061]]
    return promoters + with_n


def batch_of(tokenizer, sequences):
    return tokenizer(sequences, padding=True, return_tensors="pt")


def nucleotides_of(tokenizer, ids) -> str:
    """The bases spelled by a row of token ids (specials and padding dropped), by plain string handling."""
    tokens = [t for t in tokenizer.convert_ids_to_tokens(ids) if t not in ("<cls>", "<eos>", "<pad>", "[CLS]", "[SEP]", "[PAD]")]
    if tokenizer.k > 1 and tokenizer.stride == 1:
        return "".join(token[0] for token in tokens) + tokens[-1][1:]
    return "".join(tokens)


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_reverse_complement_matches_string_implementation(name, sequences):
    tokenizer = TOKENIZERS[name]()
    batch = batch_of(tokenizer, sequences)
    flipped = ReverseComplement(tokenizer, p=1.0, seed=0)(batch)
    expected = batch_of(tokenizer, [plain_reverse_complement(s) for s in sequences])
    assert torch.equal(flipped["attention_mask"], batch["attention_mask"])
    if tokenizer.stride == 1:  # k=1 and overlapping k-mers: exactly the tokenization of the RC string
        assert torch.equal(flipped["input_ids"], expected["input_ids"])
    else:
        for i, seq in enumerate(sequences):
            row = flipped["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
            if "N" not in seq:
                assert nucleotides_of(tokenizer, row) == plain_reverse_complement(seq)
            if len(seq) % tokenizer.k == 0:  # same chunk grid: identical to re-tokenizing
                assert row == expected["input_ids"][i][expected["attention_mask"][i].bool()].tolist()
    unknown_ids = torch.tensor([tokenizer.unk_token_id, tokenizer.get_vocab().get("N", tokenizer.unk_token_id)])
    unk = torch.isin(batch["input_ids"], unknown_ids).sum(1)
    assert torch.equal(unk, torch.isin(flipped["input_ids"], unknown_ids).sum(1))
    assert unk[-3:].gt(0).all()  # the rows with N really exercise the unknown path
    # An involution: applying it twice gives back the batch.
    assert torch.equal(ReverseComplement(tokenizer, p=1.0)(flipped)["input_ids"], batch["input_ids"])


def test_reverse_complement_moves_labels_and_picks_rows_with_p(sequences):
    tokenizer = NucleotideTokenizer()
    batch = batch_of(tokenizer, sequences)
    positions = torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"])
    batch["labels"] = torch.where(batch["attention_mask"].bool(), positions, -100)
    out = ReverseComplement(tokenizer, p=0.5, seed=3)(batch)
    flipped_rows = (out["input_ids"] != batch["input_ids"]).any(1)
    assert 0 < flipped_rows.sum() < len(sequences)
    for i in range(len(sequences)):
        n = int(batch["attention_mask"][i].sum()) - 2
        labels = out["labels"][i, 1 : n + 1].tolist()
        assert labels == (list(range(n, 0, -1)) if flipped_rows[i] else list(range(1, n + 1)))
        assert out["labels"][i, 0] == 0 and out["labels"][i, n + 1] == n + 1  # <cls>/<eos> keep their labels
    # MLM targets are token ids: with complement_labels they are complemented as well as reversed.
    mlm = {**batch, "labels": batch["input_ids"].masked_fill(~batch["attention_mask"].bool(), -100)}
    rc = ReverseComplement(tokenizer, p=1.0, complement_labels=True)(mlm)
    assert torch.equal(rc["labels"], rc["input_ids"].masked_fill(~batch["attention_mask"].bool(), -100))


def test_reverse_complement_rna_alphabet():
    tokenizer = KmerTokenizer(k=2, stride=1, alphabet="rna")
    batch = batch_of(tokenizer, ["ACGUUGCA", "AAGU"])
    out = ReverseComplement(tokenizer, p=1.0)(batch)
    assert torch.equal(out["input_ids"], batch_of(tokenizer, ["UGCAACGU", "ACUU"])["input_ids"])


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_point_mutation_rate_and_consistency(name, sequences):
    tokenizer = TOKENIZERS[name]()
    clean = [s for s in sequences if "N" not in s] * 8
    batch = batch_of(tokenizer, clean)
    rate = 0.05
    out = PointMutation(tokenizer, rate=rate, seed=0)(batch)
    changed = total = 0
    for i, seq in enumerate(clean):
        row = out["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
        mutated = nucleotides_of(tokenizer, row)
        assert len(mutated) == len(seq)
        changed += sum(a != b for a, b in zip(seq, mutated))
        total += len(seq)
        if tokenizer.stride == 1:
            # Every k-mer containing a changed base changed with it: the row is the tokenization of the new string.
            assert row == tokenizer(mutated)["input_ids"]
    sigma = (rate * (1 - rate) / total) ** 0.5
    assert abs(changed / total - rate) < 5 * sigma
    special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))
    assert torch.equal(out["input_ids"][special], batch["input_ids"][special])


def test_point_mutation_leaves_n_and_unknown_alone(sequences):
    for name in TOKENIZERS:
        tokenizer = TOKENIZERS[name]()
        batch = batch_of(tokenizer, sequences[-3:])
        out = PointMutation(tokenizer, rate=1.0, seed=0)(batch)
        unknown = torch.isin(batch["input_ids"], torch.tensor([tokenizer.unk_token_id, tokenizer.convert_tokens_to_ids("N")]))
        assert torch.equal(out["input_ids"][unknown], batch["input_ids"][unknown])
        known = batch["attention_mask"].bool() & ~unknown & ~torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))
        assert (out["input_ids"][known] != batch["input_ids"][known]).all()  # rate 1: every known token changes


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_random_shift_is_a_rotation(name, sequences):
    tokenizer = TOKENIZERS[name]()
    clean = [s for s in sequences if "N" not in s]
    batch = batch_of(tokenizer, clean)
    out = RandomShift(tokenizer, max_shift=5, seed=1)(batch)
    assert torch.equal(out["attention_mask"], batch["attention_mask"])
    moved = 0
    for i, seq in enumerate(clean):
        row = out["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
        assert row[0] == batch["input_ids"][i, 0] and row[-1] == batch["input_ids"][i, len(row) - 1]
        shifted = nucleotides_of(tokenizer, row)
        # A rotation by at most 5 tokens (5 bases, or 5 chunks of <= k bases for non-overlapping k-mers).
        offsets = [j for j in range(len(seq)) if seq[j:] + seq[:j] == shifted]
        assert offsets and min(min(j, len(seq) - j) for j in offsets) <= 5 * (tokenizer.k if tokenizer.stride > 1 else 1)
        if tokenizer.stride == 1:
            assert row == tokenizer(shifted)["input_ids"]
        moved += shifted != seq
    assert moved > len(clean) // 2


@pytest.mark.parametrize("name", ["nucleotide", "kmer6_overlapping"])
def test_random_masking_rate_labels_and_spans(name, sequences):
    tokenizer = TOKENIZERS[name]()
    batch = batch_of(tokenizer, sequences * 4)
    out = RandomMasking(tokenizer, rate=0.15, seed=0, labels_key="labels")(batch)
    framing = torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id])
    content = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], framing)
    masked = out["labels"] != -100
    assert not (masked & ~content).any()  # specials and padding are never masked
    assert torch.equal(out["labels"][masked], batch["input_ids"][masked])
    fraction = masked.sum() / content.sum()
    assert 0.10 < fraction < 0.20
    became_mask = (out["input_ids"] == tokenizer.mask_token_id) & masked
    assert 0.7 < became_mask.sum() / masked.sum() < 0.9  # 80 % [MASK], 10 % random, 10 % unchanged
    assert torch.equal(out["input_ids"][~masked], batch["input_ids"][~masked])
    if tokenizer.k > 1:  # overlapping k-mers are masked in runs of >= k tokens (clipped at the ends), hiding a base each
        for row, row_content in zip(masked.tolist(), content.tolist()):
            runs = "".join("1" if m else "0" for m, c in zip(row, row_content) if c).split("0")
            inner = [run for run in runs[1:-1] if run]
            assert all(len(run) >= tokenizer.k for run in inner)


def test_seeds_compose_and_errors(sequences):
    tokenizer = KmerTokenizer(k=3, stride=1)
    batch = batch_of(tokenizer, sequences)
    pipeline = lambda: Compose(  # noqa: E731
        [PointMutation(tokenizer, rate=0.1), RandomShift(tokenizer, max_shift=4), ReverseComplement(tokenizer, p=0.5)]
    )
    first, second = pipeline(), pipeline()
    first.manual_seed(7)
    second.manual_seed(7)
    assert torch.equal(first(batch)["input_ids"], second(batch)["input_ids"])
    second.manual_seed(8)
    assert not torch.equal(first(batch)["input_ids"], second(batch)["input_ids"])
    assert torch.equal(PointMutation(tokenizer, rate=0.1, seed=5)(batch)["input_ids"], PointMutation(tokenizer, rate=0.1, seed=5)(batch)["input_ids"])

    with pytest.raises(ValueError, match="rate"):
        PointMutation(tokenizer, rate=1.5)
    with pytest.raises(ValueError, match=r"\(batch, length\)"):
        ReverseComplement(tokenizer)({"input_ids": batch["input_ids"][0]})
    holey = {k: v.clone() for k, v in batch.items()}
    holey["input_ids"][0, 5] = tokenizer.cls_token_id
    with pytest.raises(ValueError, match="contiguous"):
        ReverseComplement(tokenizer)(holey)
    masked = RandomMasking(tokenizer, rate=0.5, seed=0)(batch)
    with pytest.raises(ValueError, match="before masking"):
        RandomShift(tokenizer, max_shift=3)(masked)
    with pytest.raises(ValueError, match="overwrite"):
        RandomMasking(tokenizer, labels_key="labels")({**batch, "labels": batch["input_ids"]})
