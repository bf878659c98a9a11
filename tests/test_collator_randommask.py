"""DataCollatorForRandomMask: span arithmetic, DNABERT reproduction, schedule, specials, workers."""

import gzip
import sys
from copy import deepcopy
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from hf_genomics import DataCollatorForRandomMask, KmerTokenizer, NucleotideTokenizer, RandomMaskSchedule

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from dnabert_reference import dnabert_mask_tokens  # noqa: E402

# DNABERT's run_pretrain.py: offsets added around every centre, per k.
def hidden_nucleotides_reference(tokens, masked_row, k, stride):
    """Nucleotides covered by a masked token and by no visible one, from the token strings of one framed row."""
    real = [index for index, token in enumerate(tokens) if len(token) in (1, k) and set(token) <= set("ACGT")]
    windows = [index for index in real if len(tokens[index]) == k]
    coverage = {}
    for n, index in enumerate(windows):
        for nucleotide in range(n * stride, n * stride + k):
            coverage.setdefault(nucleotide, []).append(bool(masked_row[index]))
    after_windows = (len(windows) - 1) * stride + k if windows else 0
    for j, index in enumerate(index for index in real if index not in windows):
        coverage.setdefault(after_windows + j, []).append(bool(masked_row[index]))
    return sum(any(flags) and all(flags) for flags in coverage.values())


@pytest.fixture(scope="module")
def lambda_sequences(data_dir):
    with gzip.open(data_dir / "lambda_phage" / "lambda_virus.fa.gz", "rt") as handle:
        genome = "".join(line.strip() for line in handle if not line.startswith(">")).upper()
    lengths = [200, 143, 187, 60, 200, 91, 176, 120]
    starts = [1000 + 997 * index for index in range(len(lengths))]
    return [genome[start : start + length] for start, length in zip(starts, lengths)]


@pytest.fixture(scope="module")
def kmer6():
    return KmerTokenizer(k=6, stride=1)


def test_span_is_dnabert_interval_and_clipped():
    centres = torch.zeros(1, 20)
    centres[0, [1, 10, 19]] = 1
    masked = DataCollatorForRandomMask._dilate(centres, 6)
    # [i-2, i+3] around 1, 10 and 19, clipped to [0, 19].
    expected = set(range(0, 5)) | set(range(8, 14)) | {17, 18, 19}
    assert set(torch.nonzero(masked[0]).flatten().tolist()) == expected
    odd = DataCollatorForRandomMask._dilate(centres, torch.full((1, 20), 5))
    assert set(torch.nonzero(odd[0]).flatten().tolist()) == set(range(0, 4)) | set(range(8, 13)) | {17, 18, 19}


@pytest.mark.parametrize("m", [6, 8, 10, 12, 14])
def test_isolated_span_hides_m_minus_k_plus_1_nucleotides(kmer6, lambda_sequences, m):
    collator = DataCollatorForRandomMask(kmer6)
    input_ids = torch.tensor([kmer6(lambda_sequences[0])["input_ids"]])
    maskable = torch.ones_like(input_ids, dtype=torch.bool)
    maskable[0, [0, -1]] = False
    masked = torch.zeros_like(maskable)
    masked[0, 50 : 50 + m] = True
    assert collator.hidden_nucleotides(input_ids, masked, maskable).tolist() == [m - 6 + 1]


@pytest.mark.parametrize(("k", "stride"), [(6, 1), (6, 6), (1, 1), (4, 2)])
def test_hidden_nucleotides_match_per_nucleotide_reference(lambda_sequences, k, stride):
    tokenizer = NucleotideTokenizer() if k == 1 else KmerTokenizer(k=k, stride=stride)
    collator = DataCollatorForRandomMask(tokenizer, mlm_probability=0.08, seed=3)
    collator.set_progress(4, 5)
    encodings = [tokenizer(sequence) for sequence in lambda_sequences]
    batch = collator(deepcopy(encodings))
    masked = batch["labels"] != -100
    original = tokenizer.pad(encodings, return_tensors="pt")["input_ids"]
    maskable = ~torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    hidden = collator.hidden_nucleotides(original, masked, maskable)
    expected = [
        hidden_nucleotides_reference(tokenizer.convert_ids_to_tokens(row.tolist()), flags.tolist(), k, stride)
        for row, flags in zip(original, masked)
    ]
    assert hidden.tolist() == expected
    assert sum(expected) > 0
    assert collator.statistics()["hidden_nucleotides"] == sum(expected)


def test_fixed_schedule_reproduces_dnabert_masking(kmer6, lambda_sequences):
    encodings = [kmer6(sequence) for sequence in lambda_sequences]
    collator = DataCollatorForRandomMask(kmer6, schedule="fixed", seed=42)
    batch = collator(deepcopy(encodings))

    padded = kmer6.pad(deepcopy(encodings), return_tensors="pt")["input_ids"]
    generator = collator.batch_generator(padded)  # the batch's own stream (see test_masks_are_a_function_...)
    _, reference_labels, _, _ = dnabert_mask_tokens(padded.clone(), kmer6, 0.025, generator)
    # Same masked positions and labels. The 80/10/10 corruption takes one uniform draw instead of DNABERT's two
    # Bernoulli draws (same distribution, not the same random stream; see test_masked_fraction_and_statistics).
    assert torch.equal(batch["labels"], reference_labels)
    assert (reference_labels != -100).sum() > 30
    unmasked = reference_labels == -100
    assert torch.equal(batch["input_ids"][unmasked], padded[unmasked])


def test_expanding_schedule_phases_and_variants():
    schedule = RandomMaskSchedule.expanding(6)
    assert schedule.boundaries == (6, 8, 10, 12, 14)
    assert [schedule.phase_at(step, 100) for step in (0, 19, 20, 39, 40, 60, 79, 80, 99, 100)] == [
        0, 0, 1, 1, 2, 3, 3, 4, 4, 4,
    ]  # fmt: skip
    uneven = RandomMaskSchedule((6, 10), phase_lengths=(3, 1))
    assert [uneven.boundary_at(step, 8) for step in range(9)] == [6] * 6 + [10] * 3
    assert schedule.phase_at(50, 0) == 0
    for bad in [dict(boundaries=()), dict(boundaries=(6, 0)), dict(boundaries=(6, 8), phase_lengths=(1,))]:
        with pytest.raises(ValueError):
            RandomMaskSchedule(**bad)


def test_default_span_width_per_tokenizer_mode():
    assert DataCollatorForRandomMask(KmerTokenizer(k=6, stride=1)).schedule.boundaries == (6, 8, 10, 12, 14)
    # Non-overlapping k-mers and single nucleotides share no nucleotides between tokens: width starts at 1.
    assert DataCollatorForRandomMask(KmerTokenizer(k=6, stride=6)).schedule.boundaries == (1, 3, 5, 7, 9)
    assert DataCollatorForRandomMask(NucleotideTokenizer()).schedule.boundaries == (1, 3, 5, 7, 9)
    assert DataCollatorForRandomMask(KmerTokenizer(k=6, stride=3), schedule="fixed").schedule.boundaries == (2,)


@pytest.mark.parametrize(
    "tokenizer", [KmerTokenizer(k=6, stride=1), KmerTokenizer(k=6, stride=6), NucleotideTokenizer()]
)
def test_specials_and_padding_never_masked_and_random_tokens_are_kmers(tokenizer, lambda_sequences):
    collator = DataCollatorForRandomMask(
        tokenizer, mlm_probability=0.3, mask_replace_prob=0.0, random_replace_prob=1.0, seed=0
    )
    collator.set_progress(9, 10)
    ids = [tokenizer(sequence)["input_ids"] for sequence in lambda_sequences]  # lists of different lengths
    original = torch.full((len(ids), max(map(len, ids))), tokenizer.pad_token_id)
    for row, sequence_ids in enumerate(ids):
        original[row, : len(sequence_ids)] = torch.tensor(sequence_ids)
    batch = collator(ids)
    protected = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    assert protected.any() and (original == tokenizer.pad_token_id).any()
    assert (batch["labels"][protected] == -100).all()
    assert torch.equal(batch["input_ids"][protected], original[protected])
    masked = batch["labels"] != -100
    assert torch.equal(batch["labels"][masked], original[masked])
    assert masked.sum() > 0.3 * (~protected).sum()
    random_tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][masked].tolist())
    assert all(len(token) == tokenizer.k and set(token) <= set("ACGT") for token in random_tokens)


def test_masked_fraction_and_statistics(kmer6, lambda_sequences):
    collator = DataCollatorForRandomMask(kmer6, schedule=RandomMaskSchedule.fixed(10), seed=1)
    encodings = [kmer6(sequence) for sequence in lambda_sequences] * 40
    batch = collator(encodings)
    masked = batch["labels"] != -100
    maskable = batch["attention_mask"].sum() - 2 * len(encodings)
    # Interior tokens are masked unless none of the 10 centre positions around them fired.
    assert abs(masked.sum().item() / maskable.item() - (1 - (1 - 0.025) ** 10)) < 0.03
    stats = collator.statistics()
    assert stats["batches"] == 1 and stats["sequences"] == len(encodings)
    assert stats["maskable_tokens"] == maskable.item()
    assert stats["masked_tokens"] == masked.sum().item()
    assert stats["batches_per_phase"] == [1]
    # 80/10/10: [MASK], a random real 6-mer (which may equal the original), unchanged.
    corrupted = batch["input_ids"][masked]
    original = batch["labels"][masked]
    share_mask = (corrupted == kmer6.mask_token_id).float().mean().item()
    share_changed = ((corrupted != kmer6.mask_token_id) & (corrupted != original)).float().mean().item()
    n = masked.sum().item()
    assert n > 3000 and abs(share_mask - 0.8) < 4 * (0.8 * 0.2 / n) ** 0.5
    assert abs(share_changed - 0.1 * 4095 / 4096) < 4 * (0.1 * 0.9 / n) ** 0.5


def masked_run_lengths(labels, attention_mask):
    """Lengths of the runs of masked tokens that touch neither end of their sequence ([CLS] ... [SEP])."""
    lengths = []
    for row, length in zip(labels.tolist(), attention_mask.sum(1).tolist()):
        flags = "".join("1" if label != -100 else "0" for label in row[1 : length - 1])
        lengths += [len(run) for run in flags.strip("1").split("0") if run]
    return lengths


@pytest.mark.parametrize(("sample_boundary", "expected_short_runs"), [(False, {10}), (True, {6, 7, 8, 9, 10})])
def test_sampled_boundary_draws_every_width_of_the_phase(kmer6, lambda_sequences, sample_boundary, expected_short_runs):
    schedule = RandomMaskSchedule.expanding(6, sample_boundary=sample_boundary)
    collator = DataCollatorForRandomMask(kmer6, schedule=schedule, mlm_probability=0.01, seed=0)
    collator.set_progress(2, 5)  # phase 2: m = 10, or m drawn from [6, 10]
    batch = collator([kmer6(sequence) for sequence in lambda_sequences] * 30)
    runs = masked_run_lengths(batch["labels"], batch["attention_mask"])
    # Runs up to 10 tokens are single spans (two overlapping spans of width >= 6 are longer).
    assert {length for length in runs if length <= 10} == expected_short_runs


def test_masks_are_a_function_of_seed_epoch_and_batch(kmer6, lambda_sequences):
    """What makes resumed runs exact: a batch's masks do not depend on what the collator did before it."""
    batches = [[kmer6(sequence) for sequence in lambda_sequences[i : i + 2]] for i in (0, 2)]
    collator = DataCollatorForRandomMask(kmer6, mlm_probability=0.05, seed=3)
    first_then_second = [collator(deepcopy(batch))["labels"] for batch in batches]
    second_alone = DataCollatorForRandomMask(kmer6, mlm_probability=0.05, seed=3)(deepcopy(batches[1]))["labels"]
    assert torch.equal(second_alone, first_then_second[1])
    # A DataLoader worker masks it as the main process does.
    loader = DataLoader([deepcopy(batches[1])], batch_size=None, collate_fn=collator, num_workers=1)
    assert torch.equal(next(iter(loader))["labels"], second_alone)
    # Another epoch or another seed: other masks.
    collator.set_epoch(1)
    assert not torch.equal(collator(deepcopy(batches[1]))["labels"], second_alone)
    other_seed = DataCollatorForRandomMask(kmer6, mlm_probability=0.05, seed=4)(deepcopy(batches[1]))["labels"]
    assert not torch.equal(other_seed, second_alone)


def test_seeded_collators_agree_and_bad_arguments_raise(kmer6, lambda_sequences):
    encodings = [kmer6(sequence) for sequence in lambda_sequences]
    first = DataCollatorForRandomMask(kmer6, seed=7)(deepcopy(encodings))
    second = DataCollatorForRandomMask(kmer6, seed=7)(deepcopy(encodings))
    assert torch.equal(first["input_ids"], second["input_ids"]) and torch.equal(first["labels"], second["labels"])
    with pytest.raises(ValueError, match="return_tensors"):
        DataCollatorForRandomMask(kmer6, return_tensors="np")
    with pytest.raises(ValueError, match="schedule"):
        DataCollatorForRandomMask(kmer6, schedule="contracting")
    with pytest.raises(ValueError, match="mlm=True"):
        DataCollatorForRandomMask(kmer6, mlm=False)


@pytest.mark.parametrize("bad_id", [-1, 4105, 10**6])
def test_ids_outside_the_vocabulary_name_the_example(kmer6, lambda_sequences, bad_id):
    examples = [kmer6(sequence) for sequence in lambda_sequences[:3]]
    examples[2]["input_ids"][7] = bad_id
    assert len(kmer6) == 4105
    with pytest.raises(ValueError, match=rf"example 2 of the batch has input id {bad_id}; accepted: ids 0\.\.4104 "):
        DataCollatorForRandomMask(kmer6)(examples)


def test_dataloader_workers_follow_progress_through_shared_memory(kmer6, lambda_sequences):
    collator = DataCollatorForRandomMask(kmer6, mlm_probability=0.01, seed=5)
    dataset = [kmer6(sequence) for sequence in lambda_sequences] * 8
    loader = DataLoader(dataset, batch_size=2, collate_fn=collator, num_workers=2, prefetch_factor=1)
    iterator = iter(loader)
    first = next(iterator)
    collator.set_progress(9, 10)  # workers were forked at phase 0
    late = [next(iterator) for _ in range(12)][-6:]
    stats = collator.statistics()
    # Workers wrote their counters into the shared buffers; batches prefetched before the update stay in phase 0.
    assert stats["batches"] == sum(stats["batches_per_phase"]) >= 13
    assert stats["batches_per_phase"][4] >= 6 and stats["batches_per_phase"][0] <= 4
    assert collator._statistics[0].sum() == 0  # nothing was collated in the main process
    runs = [length for batch in late[-2:] for length in masked_run_lengths(batch["labels"], batch["attention_mask"])]
    assert min(runs) >= 14  # m = 14
    assert not torch.equal(first["labels"], late[0]["labels"])


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_padding_matches_tokenizer_pad(lambda_sequences, padding_side):
    tokenizer = KmerTokenizer(k=6, stride=1)
    tokenizer.padding_side = padding_side
    encodings = [tokenizer(sequence, return_special_tokens_mask=True) for sequence in lambda_sequences]
    reference = tokenizer.pad(deepcopy(encodings), pad_to_multiple_of=8, return_tensors="pt")
    collator = DataCollatorForRandomMask(
        tokenizer, pad_to_multiple_of=8, mask_replace_prob=1.0, random_replace_prob=0.0, seed=0
    )
    for examples in (deepcopy(encodings), [{"input_ids": torch.tensor(e["input_ids"])} for e in encodings]):
        batch = collator(examples)
        assert batch["input_ids"].shape == reference["input_ids"].shape and batch["input_ids"].shape[1] % 8 == 0
        assert torch.equal(batch["attention_mask"], reference["attention_mask"])
        masked = batch["labels"] != -100
        assert torch.equal(torch.where(masked, batch["labels"], batch["input_ids"]), reference["input_ids"])
        assert (batch["input_ids"][masked] == tokenizer.mask_token_id).all()
    # Fields the collator does not know go through tokenizer.pad.
    with_extra = [{**encoding, "token_type_ids": [0] * len(encoding["input_ids"])} for encoding in encodings]
    assert collator(with_extra)["token_type_ids"].shape == reference["input_ids"].shape
