"""`BeaconTask` is the one owner of a task's behaviour: a task defined here, in the test, runs through the
collator, a head and `compute_metrics` without any change to the package; no module branches on task names."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from hf_genomics import BeaconConfig, BeaconForTokenClassification, DataCollatorForBeacon, NucleotideTokenizer
from hf_genomics.data.beacon import ALL_TASKS, IGNORE_INDEX, TOKEN_HEAD, BeaconTask
from hf_genomics.metrics import make_compute_metrics

REPO = Path(__file__).resolve().parents[1]
# A task name compared with a string: `task.name == "SSP"`, `name in ("CMP", "DMP")`, `task_name == "Modif"`.
NAME_BRANCH = re.compile(r"""\b(?:task\.name|task_name)\s*(?:==|!=|in\s*\()\s*["'(]""")


def test_no_module_branches_on_task_names():
    sources = [path for folder in ("hf_genomics", "examples", "dataset_scripts", "benchmarks")
               for path in (REPO / folder).rglob("*.py")]
    assert len(sources) > 40
    offending = [f"{path.relative_to(REPO)}:{line}" for path in sources
                 for line, text in enumerate(path.read_text().splitlines(), start=1) if NAME_BRANCH.search(text)]
    assert offending == []


def test_every_task_describes_its_columns_and_labels():
    for task in ALL_TASKS.values():
        features = task.features()
        assert list(features)[: 1 + len(task.inputs)] == ["id", *task.inputs]
        assert task.label_column in features
        assert task.label_shape.count("tokens") == {"sequence": 0, "nucleotide": 1, "pairwise": 2}[task.level]


def test_a_new_task_is_one_object():
    """A per-nucleotide, two-target regression scored on a prefix (like VDP, with another metric), defined here."""
    task = BeaconTask(
        name="Toy", beacon_dir="", category="structure", input_kind="single", level="nucleotide",
        problem_type="regression", num_labels=2, metric="mcrmse", metric_key="mcrmse", head=TOKEN_HEAD, source="test",
        split_sizes=(0, 0, 0), strand_specific=True, strand_reason="test", columns={"label": "float_rows"},
        labels_cover_prefix=True, greater_is_better=False,
    )
    tokenizer = NucleotideTokenizer()
    rows = {"id": ["a", "b"], "sequence": ["ACGUACGU", "GGCC"], "label": [[[0.5, 1.0]] * 3, [[2.0, -1.0]] * 4]}
    encoded = task.encode(rows, tokenizer, max_length=8)  # truncates the first row to 6 nucleotides
    assert [len(ids) for ids in encoded["input_ids"]] == [8, 6]
    batch = DataCollatorForBeacon(tokenizer, task)([dict(zip(encoded, values)) for values in zip(*encoded.values())])
    labels = batch["labels"]
    assert labels.shape == (2, 8, 2)
    assert (labels[:, 0] == IGNORE_INDEX).all() and (labels[0, 4:] == IGNORE_INDEX).all()
    assert labels[0, 1:4].tolist() == [[0.5, 1.0]] * 3 and labels[1, 1:5].tolist() == [[2.0, -1.0]] * 4
    assert (labels[1, 5:] == IGNORE_INDEX).all()

    config = BeaconConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, hidden_size=16,
                          num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2,
                          problem_type="regression")
    torch.manual_seed(0)
    out = BeaconForTokenClassification(config)(**batch)
    keep = labels != IGNORE_INDEX
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits[keep], labels[keep]))

    value = make_compute_metrics(task)(EvalPrediction(out.logits.detach(), labels))["mcrmse"]
    logits = out.logits.detach().numpy()
    scored = labels.numpy() != IGNORE_INDEX
    expected = np.mean([np.sqrt(np.mean((logits[..., t][scored[..., t]] - labels.numpy()[..., t][scored[..., t]]) ** 2))
                        for t in range(2)])
    assert value == pytest.approx(expected, rel=1e-5)
