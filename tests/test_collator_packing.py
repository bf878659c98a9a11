"""DataCollatorForPacking: packed rows against a plain Python packing, labels packed or reordered, RandomMask's masks
kept, clear errors, and BEACON-B heads giving on a packed batch what they give on the padded one."""

import gzip

import pytest
import torch
from transformers import DataCollatorForLanguageModeling

from hf_genomics import (
    BeaconConfig,
    BeaconForMaskedLM,
    BeaconForSequenceClassification,
    BeaconForTokenClassification,
    DataCollatorForBeacon,
    DataCollatorForPacking,
    DataCollatorForRandomMask,
    KmerTokenizer,
    NucleotideTokenizer,
)
from hf_genomics.data.collator_beacon import encode_beacon_batch
from hf_genomics.io.fasta import read_fasta

TINY = dict(
    num_hidden_layers=2,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
# Lengths (nt) the nRC sequences are cut to: uneven, so that rows fill unevenly and sequences get reordered.
NCRNA_LENGTHS = [57, 23, 90, 41, 12, 76, 33, 64]


# ---------------------------------------------------------------- references


def reference_rows(lengths: list[int], max_length: int | None) -> list[list[int]]:
    """First-fit decreasing, written out: the longest sequence first (ties in batch order), each into the first row
    whose tokens plus its own fit in max_length; then batch order within rows, rows by their first sequence."""
    if max_length is None:
        return [list(range(len(lengths)))]
    rows = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for row in rows:
            if sum(lengths[j] for j in row) + lengths[index] <= max_length:
                row.append(index)
                break
        else:
            rows.append([index])
    return sorted(sorted(row) for row in rows)


def reference_pack(sequences: list[list[int]], rows: list[list[int]], pad: int, multiple: int | None = None) -> dict:
    """Rows of concatenated sequences as lists; a row's padded tail continues its last sequence's positions."""
    width = max(sum(len(sequences[i]) for i in row) for row in rows)
    if multiple:
        width = -(-width // multiple) * multiple
    packed = {"input_ids": [], "attention_mask": [], "position_ids": []}
    for row in rows:
        tokens = [token for i in row for token in sequences[i]]
        tail = width - len(tokens)
        last = len(sequences[row[-1]])
        packed["input_ids"].append(tokens + [pad] * tail)
        packed["attention_mask"].append([1] * len(tokens) + [0] * tail)
        positions = [p for i in row[:-1] for p in range(len(sequences[i]))] + list(range(last + tail))
        packed["position_ids"].append(positions)
    return {key: torch.tensor(value) for key, value in packed.items()}


def placements(lengths: list[int], rows: list[list[int]]) -> dict[int, tuple[int, int]]:
    """(row, first column) of every sequence (by batch index) in the packed rows."""
    where = {}
    for r, row in enumerate(rows):
        column = 0
        for index in row:
            where[index] = (r, column)
            column += lengths[index]
    return where


def real_tokens(batch: dict, key: str) -> list[torch.Tensor]:
    """Per sequence of a padded batch, `batch[key]` at its real tokens."""
    return [values[mask.bool()] for values, mask in zip(batch[key], batch["attention_mask"])]


def packed_segments(packed: dict, key: str, lengths: list[int], rows: list[list[int]]) -> list[torch.Tensor]:
    """Per sequence (batch order), `packed[key]` over its columns in the packed rows."""
    where = placements(lengths, rows)
    return [packed[key][where[i][0], where[i][1] : where[i][1] + lengths[i]] for i in range(len(lengths))]


def pad_ids(features: list[dict]) -> dict[str, torch.Tensor]:
    """A plain right-padding inner collator (pad id 0) passing every other key through as a tensor."""
    ids = [feature["input_ids"] for feature in features]
    width = max(map(len, ids))
    batch = {
        "input_ids": torch.tensor([row + [0] * (width - len(row)) for row in ids]),
        "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids]),
    }
    for key in features[0].keys() - {"input_ids"}:
        batch[key] = torch.tensor([feature[key] for feature in features])
    return batch


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny float64 matrices: extra threads only contend (a forward took 20x longer on two busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return NucleotideTokenizer()


@pytest.fixture(scope="module")
def ncrna(data_dir):
    """Eight nRC ncRNA test sequences cut to NCRNA_LENGTHS, with their family ids."""
    path = data_dir / "nrc_ncrna" / "dataset_Rfam_validated_2600_13classes.fasta"
    records = [(header.split()[-1], sequence) for header, sequence in read_fasta(path)]
    families = sorted({family for family, _ in records})
    chosen = records[:: len(records) // len(NCRNA_LENGTHS)][: len(NCRNA_LENGTHS)]
    assert all(len(sequence) >= n for (_, sequence), n in zip(chosen, NCRNA_LENGTHS))
    return [(families.index(family), sequence[:n]) for (family, sequence), n in zip(chosen, NCRNA_LENGTHS)]


@pytest.fixture(scope="module")
def lambda_sequences(data_dir):
    with gzip.open(data_dir / "lambda_phage" / "lambda_virus.fa.gz", "rt") as handle:
        genome = "".join(line.strip() for line in handle if not line.startswith(">")).upper()
    lengths = [200, 143, 187, 60, 200, 91, 176, 120]
    return [genome[1000 + 997 * index : 1000 + 997 * index + n] for index, n in enumerate(lengths)]


def ncrna_features(ncrna, tokenizer) -> list[dict]:
    return [{"input_ids": tokenizer(sequence)["input_ids"]} for _, sequence in ncrna]


def beacon_features(task: str, ncrna, tokenizer) -> list[dict]:
    sequences = [sequence for _, sequence in ncrna]
    labels = [family for family, _ in ncrna] if task == "ncRNA" else [[k % 3 for k in range(len(s))] for s in sequences]
    encoded = encode_beacon_batch({"sequence": sequences, "label": labels}, task, tokenizer)
    return [dict(zip(encoded, values)) for values in zip(*encoded.values())]


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize("max_length", [None, 92, 150, 400])
@pytest.mark.parametrize("multiple", [None, 8])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_matches_reference_packing(ncrna, max_length, multiple, padding_side):
    tokenizer = NucleotideTokenizer(padding_side=padding_side)
    inner = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    features = ncrna_features(ncrna, tokenizer)
    sequences = [feature["input_ids"] for feature in features]
    lengths = [len(sequence) for sequence in sequences]
    rows = reference_rows(lengths, max_length)
    packed = DataCollatorForPacking(inner, max_length=max_length, pack_labels=False, pad_to_multiple_of=multiple)(
        features
    )
    expected = reference_pack(sequences, rows, tokenizer.pad_token_id, multiple)
    assert set(packed) == {"input_ids", "attention_mask", "position_ids", "labels"}
    for key in expected:
        assert packed[key].dtype == torch.int64
        assert torch.equal(packed[key], expected[key]), key
    # A causal-LM collator's labels are the padded ids with -100 on padding: per sequence, reordered, left-aligned
    # and as wide as the longest sequence (the width of the token heads' per-sequence outputs).
    order = [index for row in rows for index in row]
    expected_labels = torch.full((len(order), max(lengths)), -100)
    for slot, index in enumerate(order):
        expected_labels[slot, : lengths[index]] = torch.tensor(sequences[index])
    assert torch.equal(packed["labels"], expected_labels)
    if max_length is not None:
        assert packed["attention_mask"].sum(dim=1).max() <= max_length
        assert len(rows) > 1


def test_random_batches_keep_every_token_once():
    """Random lengths and capacities: each sequence appears exactly once, whole, starting at position 0."""
    generator = torch.Generator().manual_seed(0)
    for trial in range(50):
        batch_size = int(torch.randint(1, 20, (1,), generator=generator))
        lengths = torch.randint(1, 40, (batch_size,), generator=generator).tolist()
        # Unique token values: sequence index * 100 + position.
        features = [{"input_ids": [100 * i + p + 1 for p in range(n)]} for i, n in enumerate(lengths)]
        max_length = None if trial % 5 == 0 else max(lengths) + int(torch.randint(0, 60, (1,), generator=generator))
        packed = DataCollatorForPacking(pad_ids, max_length=max_length, pad_token_id=0)(features)
        rows = reference_rows(lengths, max_length)
        expected = reference_pack([feature["input_ids"] for feature in features], rows, 0)
        assert torch.equal(packed["input_ids"], expected["input_ids"])
        assert len(packed["input_ids"]) == len(rows)
        if max_length is not None:
            assert int(packed["attention_mask"].sum(dim=1).max()) <= max_length
        found = []
        for ids, mask, positions in zip(packed["input_ids"], packed["attention_mask"], packed["position_ids"]):
            real = mask.bool()
            starts = torch.nonzero(positions[real] == 0).flatten().tolist() + [int(real.sum())]
            found += [tuple(ids[real][a:b].tolist()) for a, b in zip(starts, starts[1:])]
            assert torch.equal(positions[real], torch.cat([torch.arange(b - a) for a, b in zip(starts, starts[1:])]))
        assert sorted(found) == sorted(tuple(f["input_ids"]) for f in features)


def test_other_keys_packed_or_reordered():
    features = [{"input_ids": [1] + [i + 5] * n + [2], "score": float(i)} for i, n in enumerate([3, 6, 1, 4])]
    lengths = [5, 8, 3, 6]

    def inner(features):
        batch = pad_ids(features)
        batch["token_type_ids"] = torch.where(batch["attention_mask"].bool(), batch["input_ids"] % 2, 0)
        batch["special_tokens_mask"] = (batch["input_ids"] <= 2).long()
        batch["per_token_vectors"] = batch["input_ids"][..., None].expand(-1, -1, 3).double()
        batch["labels"] = torch.tensor([[i, -i] for i in range(len(features))])
        return batch

    unpacked = inner(features)
    packed = DataCollatorForPacking(inner, max_length=11, pack_labels=False, pad_token_id=0)(features)
    # First-fit decreasing puts 8 and 3 tokens in one row, 6 and 5 in the other: sequences 0, 3 | 1, 2.
    rows = reference_rows(lengths, 11)
    assert rows == [[0, 3], [1, 2]]
    assert torch.equal(packed["score"], unpacked["score"][[0, 3, 1, 2]])
    assert torch.equal(packed["labels"], unpacked["labels"][[0, 3, 1, 2]])
    for key in ("input_ids", "token_type_ids", "special_tokens_mask", "per_token_vectors"):
        for mine, theirs in zip(packed_segments(packed, key, lengths, rows), real_tokens(unpacked, key)):
            assert torch.equal(mine, theirs), key
    tails = packed["attention_mask"] == 0
    assert not tails.any()  # both rows are full
    assert packed["per_token_vectors"].shape == (2, 11, 3) and packed["per_token_vectors"].dtype == torch.float64

    padded = DataCollatorForPacking(inner, 11, pack_labels=False, pad_token_id=0, pad_to_multiple_of=4)(features)
    tails = padded["attention_mask"] == 0
    assert tails.sum() == 2 * 12 - sum(lengths)
    assert (padded["special_tokens_mask"][tails] == 1).all() and (padded["token_type_ids"][tails] == 0).all()
    assert (padded["input_ids"][tails] == 0).all()


# ---------------------------------------------------------------- masked LM


def test_randommask_masks_are_those_of_the_unpacked_batch(lambda_sequences):
    tokenizer = KmerTokenizer(k=6, stride=1)
    features = [{"input_ids": tokenizer(sequence)["input_ids"]} for sequence in lambda_sequences]
    lengths = [len(feature["input_ids"]) for feature in features]
    plain = DataCollatorForRandomMask(tokenizer, seed=3, mlm_probability=0.05)
    inner = DataCollatorForRandomMask(tokenizer, seed=3, mlm_probability=0.05)
    unpacked = plain(features)
    packed = DataCollatorForPacking(inner, max_length=400)(features)
    rows = reference_rows(lengths, 400)
    assert len(rows) == 4 and packed["input_ids"].shape == (4, max(sum(lengths[i] for i in row) for row in rows))
    assert int((packed["labels"] != -100).sum()) == int((unpacked["labels"] != -100).sum()) > 100
    for key in ("input_ids", "labels"):
        for mine, theirs in zip(packed_segments(packed, key, lengths, rows), real_tokens(unpacked, key)):
            assert torch.equal(mine, theirs), key
    assert (packed["labels"][packed["attention_mask"] == 0] == -100).all()
    assert (packed["input_ids"][packed["attention_mask"] == 0] == tokenizer.pad_token_id).all()
    assert inner.statistics() == plain.statistics()


def test_transformers_mlm_collator_left_padding(ncrna):
    tokenizer = NucleotideTokenizer(padding_side="left")
    features = ncrna_features(ncrna, tokenizer)
    lengths = [len(feature["input_ids"]) for feature in features]
    unpacked = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=5)(features)
    inner = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=5)
    packed = DataCollatorForPacking(inner, max_length=128, label_pad_token_id=-7)(features)
    rows = reference_rows(lengths, 128)
    for key in ("input_ids", "labels"):
        for mine, theirs in zip(packed_segments(packed, key, lengths, rows), real_tokens(unpacked, key)):
            assert torch.equal(mine, theirs), key
    assert (packed["labels"][packed["attention_mask"] == 0] == -7).all()


# ---------------------------------------------------------------- fine-tuning labels


@pytest.mark.parametrize("task", ["ncRNA", "SPL"])
def test_beacon_labels_reordered_per_sequence(ncrna, tokenizer, task):
    features = beacon_features(task, ncrna, tokenizer)
    lengths = [len(feature["input_ids"]) for feature in features]
    unpacked = DataCollatorForBeacon(tokenizer, task)(features)
    packed = DataCollatorForPacking(DataCollatorForBeacon(tokenizer, task), max_length=100, pack_labels=False)(
        features
    )
    rows = reference_rows(lengths, 100)
    order = [index for row in rows for index in row]
    assert order != sorted(order)
    assert torch.equal(packed["labels"], unpacked["labels"][order])
    for mine, theirs in zip(packed_segments(packed, "input_ids", lengths, rows), real_tokens(unpacked, "input_ids")):
        assert torch.equal(mine, theirs)


# ---------------------------------------------------------------- errors


def test_clear_errors(ncrna, tokenizer, lambda_sequences):
    features = ncrna_features(ncrna, tokenizer)
    inner = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    with pytest.raises(ValueError, match=r"sequence 2 of the batch has 92 tokens, more than max_length=91"):
        DataCollatorForPacking(inner, max_length=91)(features)
    kmer = KmerTokenizer(k=6, stride=1)
    ids_only = [kmer(sequence)["input_ids"] for sequence in lambda_sequences[:2]]
    with pytest.raises(ValueError, match="no attention_mask"):
        DataCollatorForPacking(DataCollatorForRandomMask(kmer, seed=0))(ids_only)
    with pytest.raises(ValueError, match="pack_labels=False for sequence- and token-level labels"):
        DataCollatorForPacking(DataCollatorForBeacon(tokenizer, "ncRNA"))(beacon_features("ncRNA", ncrna, tokenizer))
    with pytest.raises(ValueError, match="needs pad_token_id"):
        DataCollatorForPacking(pad_ids)
    for value in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_length must be None or a positive int"):
            DataCollatorForPacking(inner, max_length=value)

    def returning(**extra):
        return lambda features: {**pad_ids(features), **extra}

    small = [{"input_ids": [1, 4, 2]}, {"input_ids": [1, 2]}]
    for extra, message in [
        ({"position_ids": torch.zeros(2, 3)}, "makes position_ids itself"),
        ({"names": ["a", "b"]}, "'names' is a list"),
        ({"scalar": torch.tensor(1.0)}, r"'scalar' has shape \(\), neither per token \(2, 3, ...\)"),
        ({"other": torch.zeros(3, 3)}, r"'other' has shape \(3, 3\)"),
        ({"attention_mask": torch.tensor([[1, 1, 1], [0, 0, 0]])}, "sequence 1 of the batch has no real token"),
        ({"attention_mask": torch.tensor([[1, 0, 1], [1, 1, 0]])}, "sequence 0 of the batch has padding between"),
    ]:
        with pytest.raises(ValueError, match=message):
            DataCollatorForPacking(returning(**extra), pad_token_id=0)(small)


# ---------------------------------------------------------------- the model on packed batches

IMPLEMENTATIONS = ["sdpa", "eager", "alibi_blocked"]


def double_model(model_class, implementation: str, **overrides):
    torch.manual_seed(0)
    return model_class(BeaconConfig(**TINY, attn_implementation=implementation, **overrides)).double().eval()


def packed_and_unpacked(collator: DataCollatorForPacking, features: list[dict]) -> tuple[dict, dict, list, list]:
    unpacked = collator.collator(features)
    lengths = unpacked["attention_mask"].sum(dim=1).tolist()
    return collator.pack(unpacked), unpacked, lengths, reference_rows(lengths, collator.max_length)


@pytest.mark.parametrize("max_length", [None, 100])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_masked_lm_logits_and_loss_match_unpacked(ncrna, tokenizer, implementation, max_length):
    model = double_model(BeaconForMaskedLM, implementation)
    inner = DataCollatorForRandomMask(tokenizer, seed=1, mlm_probability=0.1)
    packed, unpacked, lengths, rows = packed_and_unpacked(
        DataCollatorForPacking(inner, max_length=max_length), ncrna_features(ncrna, tokenizer)
    )
    with torch.no_grad():
        expected = model(**unpacked)
        got = model(**packed)
    assert got.logits.shape == (*packed["input_ids"].shape, model.config.vocab_size)
    for mine, theirs in zip(packed_segments({"logits": got.logits}, "logits", lengths, rows),
                            real_tokens({**unpacked, "logits": expected.logits}, "logits")):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-9, atol=1e-12)
    # Without position_ids the rows are single sequences: the comparison above would see the difference.
    with torch.no_grad():
        unmarked = model(**{key: value for key, value in packed.items() if key != "position_ids"})
    assert not torch.allclose(unmarked.logits, got.logits, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("max_length", [None, 100])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_sequence_classification_matches_unpacked(ncrna, tokenizer, implementation, max_length):
    model = double_model(BeaconForSequenceClassification, implementation, num_labels=13)
    collator = DataCollatorForPacking(DataCollatorForBeacon(tokenizer, "ncRNA"), max_length, pack_labels=False)
    packed, unpacked, lengths, rows = packed_and_unpacked(collator, beacon_features("ncRNA", ncrna, tokenizer))
    order = [index for row in rows for index in row]
    with torch.no_grad():
        expected = model(**unpacked)
        got = model(**packed)
    torch.testing.assert_close(got.logits, expected.logits[order], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("max_length", [None, 100])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_token_classification_matches_unpacked(ncrna, tokenizer, implementation, max_length):
    model = double_model(BeaconForTokenClassification, implementation, num_labels=3)
    collator = DataCollatorForPacking(DataCollatorForBeacon(tokenizer, "SPL"), max_length, pack_labels=False)
    packed, unpacked, lengths, rows = packed_and_unpacked(collator, beacon_features("SPL", ncrna, tokenizer))
    order = [index for row in rows for index in row]
    with torch.no_grad():
        expected = model(**unpacked)
        got = model(**packed)
    assert got.logits.shape == expected.logits.shape == (len(lengths), max(lengths), 3)
    valid = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[order][:, None]
    torch.testing.assert_close(got.logits[valid], expected.logits[order][valid], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-9, atol=1e-12)
    assert (order != sorted(order)) == (max_length is not None)


def test_token_labels_are_cut_to_the_longest_sequence_and_left_aligned():
    """An inner batch wider than its longest sequence (pad_to_multiple_of, left padding): token-level labels and pair
    maps come out as wide as the heads' per-sequence outputs, each sequence's labels from column 0."""
    lengths, width = [5, 3], 8
    input_ids = torch.zeros(2, width, dtype=torch.long)
    attention_mask = torch.zeros(2, width, dtype=torch.long)
    attention_mask[0, 3:], attention_mask[1, 5:] = 1, 1  # left padding
    labels = torch.full((2, width), -100)
    labels[0, 3:], labels[1, 5:] = torch.tensor([10, 11, 12, 13, 14]), torch.tensor([20, 21, 22])
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    packed = DataCollatorForPacking(lambda features: batch, pack_labels=False, pad_token_id=0)(None)
    assert packed["labels"].tolist() == [[10, 11, 12, 13, 14], [20, 21, 22, -100, -100]]
    pairs = labels[:, :, None] * 100 + labels[:, None, :]
    pairs[labels == -100] = -100
    pairs.transpose(1, 2)[labels == -100] = -100
    packed_pairs = DataCollatorForPacking(lambda features: {**batch, "labels": pairs}, pack_labels=False,
                                          pad_token_id=0)(None)["labels"]
    assert packed_pairs.shape == (2, 5, 5)
    assert packed_pairs[0].tolist() == [[100 * a + b for b in range(10, 15)] for a in range(10, 15)]
    assert packed_pairs[1, :3, :3].tolist() == [[100 * a + b for b in range(20, 23)] for a in range(20, 23)]
    assert (packed_pairs[1, 3:] == -100).all() and (packed_pairs[1, :, 3:] == -100).all()
    assert max(lengths) == packed["position_ids"].max() + 1
