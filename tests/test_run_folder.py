"""Checkpoint checks, output-folder claims and tokenizer/model agreement: the guards every example and trainer
runs before training."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file
from transformers import TrainingArguments

from hf_genomics import (
    BeaconConfig,
    BeaconForMaskedLM,
    CheckpointError,
    KmerTokenizer,
    NucleotideTokenizer,
    OutputDirInUseError,
    SelfDistillationTrainer,
    TokenizerMismatchError,
    check_tokenizer_matches_model,
    finish_run,
    prepare_run,
    resolve_checkpoint,
    validate_checkpoint,
)
from hf_genomics.training.checkpoints import latest_valid_checkpoint


def write_checkpoint(folder, step_tensor: float = 1.0):
    """A minimal complete Trainer checkpoint: state, safetensors weights and a torch.save'd optimizer state."""
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    save_file({"weight": torch.full((64, 64), step_tensor)}, str(folder / "model.safetensors"))
    torch.save({"state": {0: torch.ones(256)}}, folder / "optimizer.pt")
    return folder


def cut(path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - keep])


def test_complete_checkpoint_passes_and_true_means_the_newest(tmp_path):
    write_checkpoint(tmp_path / "checkpoint-3")
    write_checkpoint(tmp_path / "checkpoint-12")
    assert validate_checkpoint(tmp_path / "checkpoint-3") == tmp_path / "checkpoint-3"
    for value in (True, "True", "latest"):
        assert resolve_checkpoint(value, tmp_path) == str(tmp_path / "checkpoint-12")  # 12 > 3, not "12" < "3"
    assert resolve_checkpoint(None, tmp_path) is None and resolve_checkpoint(False, tmp_path) is None


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: cut(c / "model.safetensors", 100), r"model\.safetensors is truncated"),
        (lambda c: (c / "model.safetensors").write_bytes(b"\x01"), r"model\.safetensors is damaged"),
        (lambda c: cut(c / "optimizer.pt", 30), r"optimizer\.pt is damaged or truncated"),
        (lambda c: (c / "trainer_state.json").unlink(), r"trainer_state\.json is missing"),
        (lambda c: (c / "trainer_state.json").write_text("{"), r"trainer_state\.json is damaged"),
        (lambda c: (c / "model.safetensors").unlink(), "holds no model weights"),
    ],
)
def test_damaged_checkpoint_is_an_error_naming_the_file(tmp_path, damage, message):
    checkpoint = write_checkpoint(tmp_path / "checkpoint-3")
    damage(checkpoint)
    with pytest.raises(CheckpointError, match=message) as error:
        resolve_checkpoint(str(checkpoint), tmp_path)
    assert str(checkpoint) in str(error.value)


def test_newest_checkpoint_cut_short_names_the_intact_one(tmp_path):
    write_checkpoint(tmp_path / "checkpoint-3")
    newest = write_checkpoint(tmp_path / "checkpoint-6")
    cut(newest / "model.safetensors", 10)  # the run died while saving
    with pytest.raises(CheckpointError, match="checkpoint-6/model.safetensors is truncated.*checkpoint-3: pass it"):
        resolve_checkpoint(True, tmp_path)
    assert latest_valid_checkpoint(tmp_path) == tmp_path / "checkpoint-3"
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "checkpoint-9"), tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint-<step> folder"):
        resolve_checkpoint("True", tmp_path / "empty")


def test_output_folder_of_another_run_is_refused_unless_overwritten_or_resumed(tmp_path):
    out = tmp_path / "run"
    assert prepare_run(out) is None  # new folder: claimed
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "running" and info["pid"] == os.getpid() and info["resumed_from"] is None
    finish_run(out)
    assert json.loads((out / "run_info.json").read_text())["status"] == "finished"

    write_checkpoint(out / "checkpoint-3")
    with pytest.raises(OutputDirInUseError, match="already holds another run's files.*--overwrite_output_dir"):
        prepare_run(out)
    assert prepare_run(out, resume_from_checkpoint=True) == str(out / "checkpoint-3")  # continuing it is fine
    finish_run(out)
    prepare_run(out, overwrite_output_dir=True)
    assert not (out / "checkpoint-3").exists()  # the old run's checkpoints would mix with the new run's


def test_folder_a_live_run_writes_to_is_refused_even_with_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "run_info.json").write_text(json.dumps({"status": "running", "pid": other.pid,
                                                         "host": socket.gethostname(), "started": "now"}))
        with pytest.raises(OutputDirInUseError, match=f"run pid {other.pid}"):
            prepare_run(out, overwrite_output_dir=True)
    finally:
        other.kill()
        other.wait()
    prepare_run(out, overwrite_output_dir=True)  # that process is gone: the folder is free again


def tiny_mlm(vocab_size: int = 10, pad_token_id: int = 1) -> BeaconForMaskedLM:
    return BeaconForMaskedLM(BeaconConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, hidden_size=16,
                                          num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))


def test_tokenizer_that_does_not_fit_the_model_is_refused():
    model = tiny_mlm()
    check_tokenizer_matches_model(NucleotideTokenizer(), model)  # BEACON-B's vocabulary: fits
    # The probe's case: a k=1 KmerTokenizer (9 tokens, <pad>=0) next to a BEACON model (<pad>=1).
    with pytest.raises(TokenizerMismatchError, match="pad_token_id is 0 in the tokenizer but 1 in the model"):
        check_tokenizer_matches_model(KmerTokenizer(k=1), model)
    with pytest.raises(TokenizerMismatchError, match="4105 tokens but the model embeds only 10"):
        check_tokenizer_matches_model(KmerTokenizer(k=6), model.config)
    check_tokenizer_matches_model(KmerTokenizer(k=6), model, allow_mismatch=True)
    # A padded vocabulary (more embedding rows than tokens) fits.
    check_tokenizer_matches_model(NucleotideTokenizer(), tiny_mlm(vocab_size=16))


def test_trainers_refuse_a_mismatched_tokenizer_unless_allowed(tmp_path):
    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none", max_steps=1)
    with pytest.raises(TokenizerMismatchError, match="allow_tokenizer_mismatch"):
        SelfDistillationTrainer(tiny_mlm(), args, processing_class=KmerTokenizer(k=1))
    SelfDistillationTrainer(tiny_mlm(), args, processing_class=KmerTokenizer(k=1), allow_tokenizer_mismatch=True)
