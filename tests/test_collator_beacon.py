"""DataCollatorForBeacon on real rows encoded by `encode_beacon_batch`: the tensors it builds (ignore values kept),
and the errors that name the feature of the batch whose ids or labels the head cannot use."""

import json

import numpy as np
import pytest
import torch

from hf_genomics import NucleotideTokenizer
from hf_genomics.data.collator_beacon import DataCollatorForBeacon, encode_beacon_batch
from hf_genomics.data.padding import pad_rows
from hf_genomics.data.structure import dot_bracket_to_pairs

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def tokenizer():
    return NucleotideTokenizer()


@pytest.fixture(scope="module")
def bprna(data_dir):
    """Three real bpRNA structures as (sequence, pairs): the first two of 15-40 nt, and between them the first
    9 nt of the first record, which pair with nothing."""
    records = [json.loads(line) for line in (data_dir / "bprna_rgb" / "test.json").read_text().splitlines()]
    short = [record for record in records if 15 <= len(record["seq"]) <= 40][:2]
    rows = [(record["seq"], dot_bracket_to_pairs(record["label"]).tolist()) for record in short]
    assert records[0]["label"][:9] == "." * 9 and all(pairs for _, pairs in rows)
    return [rows[0], (records[0]["seq"][:9], []), rows[1]]


def columns(task: str, bprna) -> dict[str, list]:
    """One valid batch of raw Hub columns for `task` on the three sequences (labels made up to fit them)."""
    sequences = [sequence for sequence, _ in bprna]
    lengths = [len(sequence) for sequence in sequences]
    rng = np.random.default_rng(0)
    per_nucleotide = [rng.random(n).round(3).tolist() for n in lengths]
    labels = {
        "ncRNA": [3, 0, 12],
        "Modif": [[0, 1] * 6, [1] * 12, [0] * 12],
        "MRL": [0.5, -1.25, 3.0],
        "PRS": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]],
        "SPL": [[k % 3 for k in range(n)] for n in lengths],
        "VDP": [[[0.1, 0.2, 0.3]] * 5, [], [[0.4, -100.0, 0.6]] * 7],
    }
    if task == "SSP":
        return {"sequence": sequences, "pairs": [pairs for _, pairs in bprna]}
    if task == "DMP":
        distances = [np.abs(np.subtract.outer(range(n), range(n))).tolist() for n in lengths]
        return {"sequence": sequences, "distance_map": distances}
    if task == "SSI":
        struct = [[-1.0 if k % 3 else 0.5 for k in range(n)] for n in lengths]
        return {"sequence": sequences, "struct": struct, "label": per_nucleotide}
    return {"sequence": sequences, "label": labels[task]}


def features(task: str, bprna, tokenizer) -> list[dict]:
    encoded = encode_beacon_batch(columns(task, bprna), task, tokenizer)
    return [dict(zip(encoded, values)) for values in zip(*encoded.values())]


def test_valid_rows_keep_their_ignore_values(bprna, tokenizer):
    """-100 in per-nucleotide regression rows (SSI's unscored positions, a VDP target) and VDP's scored prefix (or no
    label at all) are legitimate; they come out as the heads expect them, aligned with input_ids: nucleotide k at
    token k + 1, -100 at <cls>, <eos> and padding."""
    lengths = [len(sequence) for sequence, _ in bprna]
    width = max(lengths) + 2
    ssi = DataCollatorForBeacon(tokenizer, "SSI")(features("SSI", bprna, tokenizer))["labels"]
    raw = columns("SSI", bprna)
    for row, n in enumerate(lengths):
        expected = [-100.0] + [raw["label"][row][k] if k % 3 else -100.0 for k in range(n)] + [-100.0] * (width - n - 1)
        assert ssi[row].tolist() == pytest.approx(expected)

    vdp = DataCollatorForBeacon(tokenizer, "VDP")(features("VDP", bprna, tokenizer))["labels"]
    assert vdp.shape == (3, width, 3)
    torch.testing.assert_close(vdp[0, 1:6], torch.tensor([[0.1, 0.2, 0.3]] * 5))
    torch.testing.assert_close(vdp[2, 1:8], torch.tensor([[0.4, -100.0, 0.6]] * 7))
    assert (vdp[:, 0] == -100).all() and (vdp[0, 6:] == -100).all() and (vdp[1] == -100).all()
    assert (vdp[2, 8:] == -100).all()

    ssp = DataCollatorForBeacon(tokenizer, "SSP")(features("SSP", bprna, tokenizer))["labels"]
    for row, ((_, pairs), n) in enumerate(zip(bprna, lengths)):
        expected = np.full((width, width), -100.0)
        expected[1 : n + 1, 1 : n + 1] = 0
        for i, j in pairs:
            expected[i + 1, j + 1] = expected[j + 1, i + 1] = 1
        np.testing.assert_array_equal(ssp[row].numpy(), expected)

    spl = DataCollatorForBeacon(tokenizer, "SPL")(features("SPL", bprna, tokenizer))
    assert spl["labels"].dtype == torch.long and spl["labels"][1, :11].tolist() == [-100] + [0, 1, 2] * 3 + [-100]
    ncrna = DataCollatorForBeacon(tokenizer, "ncRNA")(features("ncRNA", bprna, tokenizer))
    assert ncrna["labels"].tolist() == [3, 0, 12] and ncrna["labels"].dtype == torch.long


# (task, feature 1's new labels as a function of its nucleotide count, expected message after "feature 1 ...")
BAD_LABELS = [
    ("MRL", lambda n: NAN, "has the label value nan; accepted: finite numbers"),
    ("MRL", lambda n: INF, "has the label value inf; accepted: finite numbers"),
    ("PRS", lambda n: [0.5], r"has labels of shape \(1,\) where \(3,\) is expected; accepted: a list of 3 numbers"),
    ("PRS", lambda n: [0.5, NAN, 0.1], "has the label value nan"),
    ("ncRNA", lambda n: 13, r"has the label value 13; accepted: integer class ids 0\.\.12"),
    ("ncRNA", lambda n: 2.5, "has the label value 2.5; accepted: integer class ids"),
    ("ncRNA", lambda n: "tRNA", "has labels that are not numbers"),
    ("Modif", lambda n: [2] + [0] * 11, r"has the label value 2; accepted: multi-hot targets in \[0, 1\]"),
    ("SPL", lambda n: [0] * (n + 1), "has 10 labels for 9 nucleotides; accepted: one label per nucleotide"),
    ("SPL", lambda n: [0] * (n - 1) + [3], r"has the label value 3; accepted: integer class ids 0\.\.2"),
    ("SPL", lambda n: 1, r"has labels of shape \(\) where \(n,\) is expected"),
    ("SSI", lambda n: [0.5] * (n - 1) + [NAN], "has the label value nan; accepted: finite numbers, -100 where"),
    ("SSI", lambda n: [0.5] * (n - 2), "has 7 labels for 9 nucleotides"),
    ("VDP", lambda n: [[0.1, 0.2, 0.3]] * (n + 1), "has 10 labels for 9 nucleotides; accepted: at most one label row"),
    ("VDP", lambda n: [[0.1, 0.2]] * 4, r"has labels of shape \(4, 2\) where \(n, 3\) is expected"),
    ("VDP", lambda n: [[0.1, 0.2, 0.3], [0.1, 0.2]], "has labels that are not an array of numbers"),
    ("VDP", lambda n: [[0.1, INF, 0.3]], "has the label value inf"),
    ("SSP", lambda n: [[0, n]], "has the label value 9; accepted: a list of \\[i, j\\] pairs of integer positions"),
    ("SSP", lambda n: [[-1, 3]], "has the label value -1"),
    ("SSP", lambda n: [[0, 3, 5]], r"has labels of shape \(1, 3\) where \(n, 2\) is expected"),
    ("DMP", lambda n: np.zeros((n - 1, n - 1)).tolist(), r"has labels of shape \(8, 8\) where \(9, 9\) is expected"),
    ("DMP", lambda n: np.full((n, n), NAN).tolist(), "has the label value nan; accepted: finite numbers"),
]


@pytest.mark.parametrize("task, bad, message", BAD_LABELS, ids=[f"{t}-{k}" for k, (t, _, _) in enumerate(BAD_LABELS)])
def test_unusable_labels_name_the_feature(bprna, tokenizer, task, bad, message):
    batch = features(task, bprna, tokenizer)
    n = len(batch[1]["input_ids"]) - 2
    batch[1]["labels"] = bad(n)
    with pytest.raises(ValueError, match=rf"^DataCollatorForBeacon \({task}\): feature 1 of the batch {message}"):
        DataCollatorForBeacon(tokenizer, task)(batch)


@pytest.mark.parametrize("bad_id", [10, 1_000, -1])
def test_ids_outside_the_vocabulary_name_the_feature(bprna, tokenizer, bad_id):
    batch = features("ncRNA", bprna, tokenizer)
    batch[2]["input_ids"][3] = bad_id
    message = rf"feature 2 of the batch has input_ids containing {bad_id}; accepted: ids 0\.\.9 "
    with pytest.raises(ValueError, match=message):
        DataCollatorForBeacon(tokenizer, "ncRNA")(batch)


@pytest.mark.parametrize("multiple", [None, 8])
def test_batch_is_padded_to_its_longest_row_not_max_length(bprna, tokenizer, multiple):
    """Encoded with max_length 1026, the three rows (<= 42 tokens) are padded to the longest of them (rounded up to
    `pad_to_multiple_of`); per-nucleotide and pair labels follow the padded width."""
    lengths = [len(sequence) + 2 for sequence, _ in bprna]
    width = max(lengths) if multiple is None else -(-max(lengths) // multiple) * multiple
    assert width < 1026 and (multiple is None or width > max(lengths))
    for task in ("ncRNA", "SPL", "SSP"):
        batch = DataCollatorForBeacon(tokenizer, task, pad_to_multiple_of=multiple)(features(task, bprna, tokenizer))
        assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, width)
        assert batch["attention_mask"].sum(1).tolist() == lengths
        for row, n in enumerate(lengths):
            assert batch["input_ids"][row, :n].tolist() == tokenizer(bprna[row][0])["input_ids"]
            assert (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all()
        if task != "ncRNA":
            assert batch["labels"].shape[1] == width


@pytest.mark.parametrize("bad", [0, -8, 2.5, "8"])
def test_pad_to_multiple_of_must_be_a_positive_integer(tokenizer, bad):
    with pytest.raises(ValueError, match="pad_to_multiple_of must be a positive integer or None"):
        DataCollatorForBeacon(tokenizer, "ncRNA", pad_to_multiple_of=bad)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("multiple", [None, 8])
def test_pad_rows_matches_the_tokenizers_padding(bprna, tokenizer, side, multiple):
    """The collators' one padding routine against transformers' `tokenizer.pad` (the reference), lists and tensors."""
    rows = [tokenizer(sequence)["input_ids"] for sequence, _ in bprna]
    tokenizer.padding_side = side
    try:
        expected = tokenizer.pad({"input_ids": rows}, pad_to_multiple_of=multiple, return_tensors="np")
    finally:
        tokenizer.padding_side = "right"
    for given in (rows, [torch.tensor(row) for row in rows]):
        padded, filled = pad_rows(given, tokenizer.pad_token_id, multiple, side)
        np.testing.assert_array_equal(padded, expected["input_ids"])
        np.testing.assert_array_equal(filled, expected["attention_mask"].astype(bool))
