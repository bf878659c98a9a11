"""examples/run_beacon.py refuses what would lose work or give meaningless numbers: a missing or damaged
checkpoint, another run's folder, a tokenizer that does not fit the model, a config of another task, a head
of another size; and it says when --max_length cuts the test set."""

import json
import logging
import shutil

import pytest

from hf_genomics import (
    CheckpointError,
    KmerTokenizer,
    OutputDirInUseError,
    TokenizerMismatchError,
)
from scripts.example_scripts import load_script

build_beacon_real = load_script("dataset_scripts/build_beacon_real.py")
run_beacon = load_script("examples/run_beacon.py")

TINY = ["--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "32",
        "--pairwise_channels", "4", "--pairwise_num_blocks", "1", "--per_device_train_batch_size", "8",
        "--max_train_samples", "16", "--max_eval_samples", "8", "--max_test_samples", "8", "--max_length", "66",
        "--disable_tqdm", "true", "--report_to", "none"]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beacon") / "hub"
    build_beacon_real.build(folder, max_ssp_length=80, configs=("ncRNA", "SSP", "MRL"))
    return folder


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """A finished 2-epoch ncRNA run with a checkpoint per epoch (kept, so resume tests can damage copies)."""
    out = tmp_path_factory.mktemp("runs") / "ncrna"
    run_beacon.main(["--task", "ncRNA", "--dataset_dir", str(dataset), "--output_dir", str(out), "--num_train_epochs",
                     "2", "--save_total_limit", "2", "--load_best_model_at_end", "false", *TINY])
    return out


def ncrna(dataset, out, *extra):
    return run_beacon.main(["--task", "ncRNA", "--dataset_dir", str(dataset), "--output_dir", str(out),
                            "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
                            "--load_best_model_at_end", "false", *TINY, *extra])


def test_second_run_into_a_used_folder_is_refused(dataset, trained, tmp_path):
    before = (trained / "model.safetensors").read_bytes()
    with pytest.raises(OutputDirInUseError, match="already holds another run's files"):
        ncrna(dataset, trained)
    assert (trained / "model.safetensors").read_bytes() == before  # the first run's model is untouched
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model.safetensors").write_bytes(before)
    ncrna(dataset, copy, "--overwrite_output_dir")
    assert (copy / "model.safetensors").read_bytes() != before


def test_missing_or_damaged_checkpoint_is_an_error_naming_the_file(dataset, trained, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ncrna(dataset, tmp_path / "a", "--resume_from_checkpoint", str(tmp_path / "nowhere"))
    damaged = tmp_path / "b" / "checkpoint-2"
    shutil.copytree(trained / "checkpoint-2", damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    with pytest.raises(CheckpointError, match=f"{weights} is truncated"):
        ncrna(dataset, tmp_path / "b", "--resume_from_checkpoint", str(damaged))


def test_resume_continues_from_the_checkpoint_step(dataset, trained, tmp_path):
    # The killed-run comparison with an uninterrupted run is in test_resume.py; here: it starts at step 2, not 1.
    shutil.copytree(trained / "checkpoint-2", tmp_path / "run" / "checkpoint-2")
    results = run_beacon.main(["--task", "ncRNA", "--dataset_dir", str(dataset), "--output_dir", str(tmp_path / "run"),
                               "--num_train_epochs", "2", "--load_best_model_at_end", "false",
                               "--resume_from_checkpoint", "True", *TINY])
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and results["test"]["accuracy"] >= 0
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["resumed_from"].endswith("checkpoint-2")


def test_resume_with_other_settings_than_the_checkpoint_is_refused(dataset, trained, tmp_path):
    shutil.copytree(trained / "checkpoint-2", tmp_path / "run" / "checkpoint-2")
    resume = ["--task", "ncRNA", "--dataset_dir", str(dataset), "--output_dir", str(tmp_path / "run"),
              "--num_train_epochs", "2", "--resume_from_checkpoint", "True", *TINY]
    # The checkpoint's run had no early stopping (transformers would fail with a KeyError at the first save).
    with pytest.raises(CheckpointError, match="adds EarlyStoppingCallback, which the checkpoint's run did not use"):
        run_beacon.main(resume)
    with pytest.raises(CheckpointError, match="batch size per device was 8, this run's is 4"):
        run_beacon.main([*resume, "--load_best_model_at_end", "false", "--per_device_train_batch_size", "4"])


def test_tokenizer_saved_next_to_a_model_must_fit_it(dataset, trained, tmp_path):
    model = tmp_path / "model"
    copy_model(trained, model)
    KmerTokenizer(k=1).save_pretrained(model)  # the probe: ids of another vocabulary
    with pytest.raises(TokenizerMismatchError, match="pad_token_id is 0 in the tokenizer but 1"):
        ncrna(dataset, tmp_path / "out", "--model_name_or_path", str(model))
    ncrna(dataset, tmp_path / "out2", "--model_name_or_path", str(model), "--allow_tokenizer_mismatch")


def copy_model(source, destination):
    """Config and weights only (no tokenizer)."""
    destination.mkdir()
    for name in ("config.json", "model.safetensors"):
        (destination / name).write_bytes((source / name).read_bytes())


def test_config_of_another_task_and_head_of_another_size_are_explained(dataset, trained, tmp_path):
    with pytest.raises(ValueError, match=r"config 'SSP' .* task ncRNA needs .*missing: \['label'\]"):
        ncrna(dataset, tmp_path / "a", "--dataset_config", "SSP")
    with pytest.raises(ValueError, match=r"config 'ncRNA' .* task MRL needs .*of another type: \['label'\]"):
        run_beacon.main(["--task", "MRL", "--dataset_dir", str(dataset), "--dataset_config", "ncRNA",
                         "--output_dir", str(tmp_path / "b"), *TINY])
    # The 13-class ncRNA model fine-tuned on a task with one regression output.
    mrl = ["--task", "MRL", "--dataset_dir", str(dataset), "--model_name_or_path", str(trained), "--max_steps", "1",
           "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false", *TINY]
    with pytest.raises(ValueError, match="head for 13 labels but task MRL needs 1.*--ignore_mismatched_sizes"):
        run_beacon.main([*mrl, "--output_dir", str(tmp_path / "c")])
    results = run_beacon.main([*mrl, "--output_dir", str(tmp_path / "d"), "--ignore_mismatched_sizes"])
    assert results["task"] == "MRL"


def test_max_length_that_cuts_the_test_set_is_reported(dataset, tmp_path, caplog, capsys):
    with caplog.at_level(logging.WARNING):
        results = run_beacon.main(["--task", "SSP", "--dataset_dir", str(dataset), "--output_dir", str(tmp_path / "a"),
                                   "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
                                   "--load_best_model_at_end", "false", *TINY, "--max_length", "3"])
    assert results["truncated_test_fraction"] == 1.0
    assert "--max_length 3 cuts 100.0% of the SSP test sequences" in caplog.text
    assert "--max_length 3 cut 100.0% of the test sequences" in capsys.readouterr().out
