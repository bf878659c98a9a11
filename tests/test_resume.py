"""Every training example resumes: a run killed right after its first checkpoint and resumed with
`--resume_from_checkpoint True` ends with the weights and per-step losses of an uninterrupted run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from hf_genomics.training.checkpoints import checkpoints_in
from scripts.assertions import assert_resumed_run_close
from scripts.kill_after_first_checkpoint import KILLED_EXIT_CODE

REPO = Path(__file__).resolve().parents[1]
KILLER = REPO / "tests" / "scripts" / "kill_after_first_checkpoint.py"
TINY_BEACON = ["--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32"]
QUIET = ["--disable_tqdm", "true", "--report_to", "none", "--logging_steps", "1"]

# example -> (arguments, folder of the final weights relative to --output_dir). Each run saves a checkpoint
# half-way, so the killed run has work left to resume.
EXAMPLES = {
    "run_beacon": ([
        "--task", "ncRNA", "--dataset_dir", "{ncrna}", "--max_train_samples", "48", "--max_eval_samples", "16",
        "--max_test_samples", "16", "--num_train_epochs", "2", "--per_device_train_batch_size", "16",
        "--max_length", "66", "--warmup_steps", "0", *TINY_BEACON, *QUIET,
    ], "."),
    "run_gue": ([
        "--task_dir", str(REPO / "data/gue/prom/prom_core_tata"), "--max_train_samples", "48",
        "--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "256",
        "--max_length", "34", "--warmup_steps", "0", *TINY_BEACON, *QUIET,
    ], "."),
    "run_layermatch": ([
        "--num_labeled", "8", "--max_unlabeled", "64", "--max_test_samples", "16", "--mu", "2", "--max_length", "34",
        "--hidden_size", "8", "--max_steps", "6", "--warmup_steps", "0", "--threshold", "0.5",
        "--save_strategy", "steps", "--save_steps", "3", *QUIET,
    ], "."),
    "run_randommask": ([
        "--train_file", str(REPO / "data/lambda_phage/lambda_virus.fa.gz"), "--max_length", "64", "--min_length", "32",
        "--max_eval_samples", "16", "--k", "3", "--max_steps", "6", "--per_device_train_batch_size", "8",
        "--save_strategy", "steps", "--save_steps", "3", *TINY_BEACON, *QUIET,
    ], "."),
    "run_self_distillation": ([
        "--train_files", str(REPO / "data/lambda_phage/lambda_virus.fa.gz"), "--window_length", "64",
        "--max_train_samples", "96", "--max_steps", "6", "--per_device_train_batch_size", "16",
        "--eval_strategy", "no", "--projection_dim", "16", "--save_strategy", "steps", "--save_steps", "3",
        *TINY_BEACON, *QUIET,
    ], "student"),
    "run_imwa": ([
        "--head_class_size", "16", "--imbalance_ratios", "8", "--num_train_epochs", "1", "--max_length", "32",
        "--hidden_size", "8", "--embedding_dim", "8", "--num_models", "2", "--num_episodes", "2",
        "--batch_size", "16", "--save_steps", "3",
    ], "ratio8_seed0_plain/model"),
}  # fmt: skip


@pytest.fixture(scope="module")
def ncrna(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beacon") / "hub"
    command = [sys.executable, str(REPO / "dataset_scripts" / "build_beacon_real.py"), "--output_dir", str(folder),
               "--configs", "ncRNA"]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=300)
    return folder


def launch(arguments: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *arguments], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, expected_code: int = 0) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == expected_code, output[-4000:]
    return output


def step_losses(folder: Path) -> list[float]:
    state = json.loads((folder / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, ncrna, example):
    arguments, weights_folder = EXAMPLES[example]
    script = str(REPO / "examples" / f"{example}.py")
    arguments = [argument.replace("{ncrna}", str(ncrna)) for argument in arguments]
    full, killed = tmp_path / "full", tmp_path / "killed"
    # The uninterrupted run and the run that dies after its first checkpoint run side by side (2 cores).
    uninterrupted = launch([script, *arguments, "--output_dir", str(full)])
    dying = launch([str(KILLER), script, *arguments, "--output_dir", str(killed)])
    full_output = finish(uninterrupted)
    finish(dying, expected_code=KILLED_EXIT_CODE)
    assert not (killed / weights_folder / "model.safetensors").exists()  # it really died before the end

    resumed = finish(launch([script, *arguments, "--output_dir", str(killed), "--resume_from_checkpoint", "True"]))
    weights = [load_file(run / weights_folder / "model.safetensors") for run in (killed, full)]
    assert_resumed_run_close(*weights)
    # Training is seeded, so a restart would give the same weights too: the resumed run must have trained only
    # the steps after the checkpoint (step 3 in every example), and logged only those.
    assert full_output.count("{'loss': ") - resumed.count("{'loss': ") == 3, resumed[-2000:]
    if example != "run_imwa":  # run_imwa keeps one folder per run: its losses are compared through the weights
        # Trainer's state of the resumed run holds the first run's log up to the checkpoint, then its own.
        assert step_losses(killed) == pytest.approx(step_losses(full), rel=1e-5)
        assert json.loads((killed / "run_info.json").read_text())["resumed_from"].endswith("checkpoint-3")
    assert json.loads((killed / "run_info.json").read_text())["status"] == "finished"


def test_resume_requires_a_real_checkpoint(tmp_path):
    # A checkpoint path that does not exist, and "True" with no checkpoint, are errors naming the folder.
    script = str(REPO / "examples" / "run_gue.py")
    for value, message in ((str(tmp_path / "nope"), "does not exist"), ("True", "no checkpoint-<step> folder")):
        output = finish(launch([script, "--output_dir", str(tmp_path / "out"), "--resume_from_checkpoint", value]),
                        expected_code=1)
        assert message in output and str(tmp_path) in output
    assert not checkpoints_in(tmp_path / "out")
