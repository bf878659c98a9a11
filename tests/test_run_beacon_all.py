"""examples/run_beacon.py --task all runs every task config of a dataset folder, each in its own folder, and writes a
BEACON Table 3-style table; every run saves its test predictions, which give back its test metric."""

import json

import datasets
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from scripts.example_scripts import load_script

build_beacon_real = load_script("dataset_scripts/build_beacon_real.py")
run_beacon = load_script("examples/run_beacon.py")

TINY = ["--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "32",
        "--pairwise_channels", "4", "--pairwise_num_blocks", "1", "--per_device_train_batch_size", "8",
        "--max_train_samples", "16", "--max_eval_samples", "8", "--max_test_samples", "12", "--max_length", "66",
        "--max_steps", "2", "--use_cpu", "--disable_tqdm", "true", "--report_to", "none"]  # fmt: skip


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    """A folder with three BEACON tasks and one task beyond BEACON, and a `--task all` run of a tiny model on it."""
    folder = tmp_path_factory.mktemp("beacon") / "hub"
    build_beacon_real.build(folder, max_ssp_length=80, configs=("ncRNA", "SSP", "MRL", "RNAType"))
    out = tmp_path_factory.mktemp("runs") / "all"
    table = run_beacon.main(["--task", "all", "--dataset_dir", str(folder), "--output_dir", str(out), *TINY])
    return folder, out, table


def test_task_all_runs_every_task_of_the_folder_and_writes_a_beacon_table(benchmark):
    _, out, table = benchmark
    assert [row["task"] for row in table["rows"]] == ["SSP", "ncRNA", "MRL", "RNAType"]  # Table 3's order, then ours
    assert json.loads((out / "beacon_table.json").read_text()) == table
    value = {row["task"]: row["this_model"] for row in table["rows"]}
    for task, key in (("SSP", "f1"), ("ncRNA", "accuracy"), ("MRL", "r2"), ("RNAType", "accuracy")):
        assert value[task] == json.loads((out / task / "beacon_results.json").read_text())["test"][key]
    markdown = (out / "beacon_table.md").read_text()
    # BEACON Table 3's CNN and BEACON-B numbers; a task BEACON does not have has none.
    assert f"| SSP | secondary_structure_f1 (%) | {value['SSP']:.2f} | 49.95 | 64.18 |" in markdown
    assert f"| ncRNA | accuracy (%) | {value['ncRNA']:.2f} | 88.62 | 94.63 |" in markdown
    assert f"| MRL | pearson_r2 (%) | {value['MRL']:.2f} | 74.13 | 72.29 |" in markdown
    assert f"| RNAType | accuracy (%) | {value['RNAType']:.2f} | n/a | n/a |" in markdown


def test_saved_test_predictions_give_back_the_test_metrics(benchmark):
    folder, out, _ = benchmark
    ncrna = run_beacon.read_test_predictions(out / "ncRNA")
    test = datasets.load_dataset(str(folder), "ncRNA", split="test").select(ncrna["row"])
    assert list(ncrna["id"]) == test["id"] and [int(label) for label in ncrna["labels"]] == test["label"]
    assert list(ncrna["label_names"]) == test.features["label"].names
    predicted = [int(logits.argmax()) for logits in ncrna["predictions"]]
    accuracy = json.loads((out / "ncRNA" / "beacon_results.json").read_text())["test"]["accuracy"]
    assert 100 * accuracy_score(test["label"], predicted) == pytest.approx(accuracy)

    ssp = run_beacon.read_test_predictions(out / "SSP")
    test = datasets.load_dataset(str(folder), "SSP", split="test").select(ssp["row"])
    for logits, labels, row in zip(ssp["predictions"], ssp["labels"], test):
        length = min(len(row["sequence"]), 64)  # --max_length 66 keeps 64 nucleotides
        assert logits.shape == labels.shape == (length, length)
        truth = np.zeros((length, length), dtype=int)
        for i, j in row["pairs"]:
            if i < length and j < length:
                truth[i, j] = truth[j, i] = 1
        assert (labels == truth).all()
    f1 = f1_score(np.concatenate([labels.ravel() for labels in ssp["labels"]]),
                  np.concatenate([logits.ravel() > 0 for logits in ssp["predictions"]]))
    assert 100 * f1 == pytest.approx(json.loads((out / "SSP" / "beacon_results.json").read_text())["test"]["f1"])

    mrl = run_beacon.read_test_predictions(out / "MRL")
    r2 = stats.pearsonr(np.concatenate(mrl["predictions"]), np.array(mrl["labels"]))[0] ** 2
    assert 100 * r2 == pytest.approx(json.loads((out / "MRL" / "beacon_results.json").read_text())["test"]["r2"],
                                     rel=1e-5)
