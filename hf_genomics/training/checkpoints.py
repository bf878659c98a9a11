"""Find and check `Trainer` checkpoints before resuming, so a missing or damaged one is an error naming the file
instead of a run that silently starts again at step 1 (or dies deep inside `torch.load`)."""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from pathlib import Path

from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

CHECKPOINT_PATTERN = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")
# What `--resume_from_checkpoint` accepts, besides a path, for "the newest checkpoint in output_dir".
LATEST = ("true", "latest", "last")


class CheckpointError(ValueError):
    """A checkpoint to resume from is missing, incomplete or damaged."""


def checkpoints_in(output_dir: str | Path) -> list[Path]:
    """The `checkpoint-<step>` folders of `output_dir`, oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir()
             if path.is_dir() and (match := CHECKPOINT_PATTERN.match(path.name))]
    return [path for _, path in sorted(found)]


def checkpoint_folder(args, state) -> str:
    """Where Trainer has saved the checkpoint of `state.global_step` when it calls `on_save`:
    `<args.output_dir>/checkpoint-<step>` (hyperparameter-search trials save elsewhere, under `run-<id>/`)."""
    return os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


def _check_safetensors(path: Path) -> None:
    """The header's tensors must end inside the file (a cut file fails here, before any tensor is read)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path} is damaged: {size} bytes, too short for a safetensors header.")
        (header_size,) = struct.unpack("<Q", prefix)
        if 8 + header_size > size:
            raise CheckpointError(f"{path} is truncated: {size} bytes, its header alone needs {8 + header_size}.")
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{path} is damaged: unreadable safetensors header ({error}).") from None
    end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    if 8 + header_size + end > size:
        raise CheckpointError(f"{path} is truncated: {size} bytes, its tensors need {8 + header_size + end}.")


def _check_torch_zip(path: Path) -> None:
    # torch.save writes a zip archive whose directory sits at the end of the file: a cut file has none.
    try:
        with zipfile.ZipFile(path):
            pass
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"{path} is damaged or truncated ({error}).") from None


def validate_checkpoint(folder: str | Path) -> Path:
    """Check that `folder` is a complete `Trainer` checkpoint: it exists, its `trainer_state.json` parses, it holds
    model weights, and no safetensors or torch file in it is cut short. Returns the folder as a `Path`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist (expected a `{PREFIX_CHECKPOINT_DIR}-<step>` "
                              "folder written by Trainer, or `True` for the newest one in --output_dir).")
    state = folder / TRAINER_STATE_NAME
    try:
        json.loads(state.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{state} is missing: {folder} is not a complete Trainer checkpoint "
                              "(the run may have stopped while saving it).") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{state} is damaged ({error}).") from None
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise CheckpointError(f"{folder} holds no model weights (expected one of {', '.join(WEIGHT_FILES)}).")
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".safetensors":
            _check_safetensors(path)
        elif path.suffix in (".pt", ".pth", ".bin"):
            _check_torch_zip(path)
    return folder


def asks_for_latest(resume_from_checkpoint: str | bool | None) -> bool:
    """Whether a `--resume_from_checkpoint` value means "the newest checkpoint" rather than a path."""
    return resume_from_checkpoint is True or str(resume_from_checkpoint).strip().lower() in LATEST


def resolve_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str | Path) -> str | None:
    """The checkpoint folder to resume from, checked: `None`/`False` -> None; `True` (or the strings "true",
    "latest", "last", as `--resume_from_checkpoint True` arrives) -> the newest checkpoint in `output_dir`; else
    the given path. Raises `CheckpointError` naming the missing or damaged file."""
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if asks_for_latest(resume_from_checkpoint):
        found = checkpoints_in(output_dir)
        if not found:
            raise CheckpointError(f"--resume_from_checkpoint True: no {PREFIX_CHECKPOINT_DIR}-<step> folder in "
                                  f"{output_dir}. Checkpoints are written with --save_strategy steps|epoch.")
        try:
            return str(validate_checkpoint(found[-1]))
        except CheckpointError as error:
            intact = latest_valid_checkpoint(output_dir)
            hint = f" The newest intact one is {intact}: pass it explicitly." if intact else ""
            raise CheckpointError(f"{error}{hint}") from None
    return str(validate_checkpoint(resume_from_checkpoint))


def latest_valid_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint of `output_dir` that passes `validate_checkpoint`, or None."""
    for folder in reversed(checkpoints_in(output_dir)):
        try:
            return validate_checkpoint(folder)
        except CheckpointError:
            continue
    return None


def check_checkpoint_fits(trainer, checkpoint: str | Path | None) -> None:
    """Refuse to resume `trainer` from `checkpoint` with settings the checkpoint's run did not have: another batch
    size (the batches to skip would be miscounted) or a stateful callback the run did not use (transformers then
    fails at the first save, e.g. early stopping added by `--load_best_model_at_end`)."""
    if checkpoint is None:
        return
    state = json.loads((Path(checkpoint) / TRAINER_STATE_NAME).read_text())
    problems = []
    saved_batch, batch = state.get("train_batch_size"), trainer.args.train_batch_size
    if saved_batch is not None and saved_batch != batch:
        problems.append(f"its batch size per device was {saved_batch}, this run's is {batch}")
    stored = set(state.get("stateful_callbacks", {}))
    current = {type(callback).__name__ for callback in trainer.callback_handler.callbacks
               if isinstance(callback, ExportableState)}
    if current - stored:
        problems.append(f"this run adds {', '.join(sorted(current - stored))}, which the checkpoint's run did not use")
    if problems:
        raise CheckpointError(f"cannot resume from {checkpoint}: {'; '.join(problems)}. Resume with the flags of the "
                              "run that wrote it (its command is in run_info.json in that run's output folder).")
