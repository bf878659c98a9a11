"""The README's main job, end to end at --quick size: every stage runs and leaves its artefacts, fine-tuning the
shipped checkpoint (default) or a model the demo pretrains itself (--pretrain)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_demo_writes_report_and_publishes_an_offline_loadable_model(tmp_path):
    home = tmp_path / "hf_home"
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    out = tmp_path / "demo"
    command = [sys.executable, "examples/run_demo.py", "--quick", "--output_dir", str(out)]
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    report = (out / "report.md").read_text()
    assert "| held-out Rfam families |" in report and "| ncRNA | from scratch, same budget |" in report
    for figure in ("loss_curves", "randommask_schedule", "ncrna_confusion", "ssp_pair_map"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 1000
        assert f"figures/{figure}.png" in report
    assert "| ncRNA | pretrained | accuracy |" in report and "| SSP |" in report
    for folder in ("ncRNA", "ncRNA_scratch", "SSP"):
        results = json.loads((out / folder / "beacon_results.json").read_text())
        assert results["task"] == folder.split("_")[0] and results["test"]
    # The control has the shipped checkpoint's architecture, trained from scratch.
    shipped = json.loads((REPO_ROOT / "pretrained" / "beacon-b-small" / "config.json").read_text())
    scratch = json.loads((out / "ncRNA_scratch" / "config.json").read_text())
    assert {key: scratch[key] for key in ("hidden_size", "num_hidden_layers", "intermediate_size")} == {
        key: shipped[key] for key in ("hidden_size", "num_hidden_layers", "intermediate_size")}
    hub_folder = out / "hub" / "beacon-b-small"
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "README.md"} <= {
        p.name for p in hub_folder.iterdir()}
    assert (out / "datasets" / "beacon" / "README.md").read_text().startswith("---")

    # Re-running skips every finished stage (resume) and still prints the table.
    again = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0
    assert again.stdout.count("already done") == 5  # datasets, ncRNA, ncRNA_scratch, SSP, publish
    assert "| ncRNA | pretrained | accuracy |" in again.stdout

    # Interrupted stages: SSP stopped after its checkpoint continues from it; ncRNA stopped before any checkpoint
    # starts over in its own folder (not refused as another run's).
    for stage in ("ncRNA", "SSP"):
        (out / f".done-{stage}").unlink()
    for checkpoint in (out / "ncRNA").glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    (out / "SSP" / "beacon_results.json").unlink()
    interrupted = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert interrupted.returncode == 0, interrupted.stdout[-3000:] + interrupted.stderr[-3000:]
    assert f"continuing from {out / 'SSP' / 'checkpoint-'}" in interrupted.stdout
    assert (out / "SSP" / "beacon_results.json").is_file()
    assert json.loads((out / "ncRNA" / "run_info.json").read_text())["status"] == "finished"

    # `from_pretrained("hf-genomics/beacon-b-small")` works in a fresh process, offline, as after a download.
    code = textwrap.dedent("""
        import hf_genomics
        from transformers import AutoModelForMaskedLM, AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained("hf-genomics/beacon-b-small")
        model = AutoModelForMaskedLM.from_pretrained("hf-genomics/beacon-b-small")
        logits = model(**tokenizer(["ACGUACGU"], return_tensors="pt")).logits
        print(type(tokenizer).__name__, type(model).__name__, tuple(logits.shape))
    """)
    loaded = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["NucleotideTokenizer", "BeaconForMaskedLM", "(1,", "10,", "10)"]


@pytest.mark.slow
def test_quick_demo_can_pretrain_its_own_model_on_deduplicated_rfam(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    out = tmp_path / "demo"
    command = [sys.executable, "examples/run_demo.py", "--quick", "--pretrain", "--output_dir", str(out)]
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "masked-LM loss after pretraining, next to its no-context floor" in run.stdout
    corpus = json.loads((out / "datasets" / "rfam" / "build_report.json").read_text())
    assert corpus["dropped_in_evaluation_data"] > 0 and corpus["evaluation_overlap"]
    pretraining = json.loads((out / "pretrain" / "randommask_results.json").read_text())
    for split in ("heldout", "test"):
        assert 1.2 < pretraining[f"{split}_no_context_floor"] < 1.4
        assert pretraining[f"{split}_loss_minus_floor"] == pytest.approx(
            pretraining[f"{split}_loss_after"] - pretraining[f"{split}_no_context_floor"])
    card = (out / "hub" / "beacon-b-demo" / "README.md").read_text()
    assert "Rfam 14.2 seed" in card and "test_no_context_floor" in card
