"""One run per output folder: refuse a folder another run is using or has finished in (unless told to overwrite
it or to resume there), resolve `--resume_from_checkpoint`, record the run in `run_info.json`, and end a
multi-process run cleanly."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState

from .checkpoints import checkpoints_in, resolve_checkpoint

RUN_INFO_NAME = "run_info.json"


@dataclass
class RunArguments:
    """Flags every training example shares (transformers 5 dropped `overwrite_output_dir` from TrainingArguments)."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an --output_dir that already holds another run's files; that run's "
                  "checkpoints are deleted first. Without it such a folder is refused (resuming there is allowed)."},
    )
    allow_tokenizer_mismatch: bool = field(
        default=False,
        metadata={"help": "Use a tokenizer whose vocabulary size or special-token ids disagree with the model's "
                  "config (refused by default: every id would mean another token)."},
    )


class OutputDirInUseError(ValueError):
    """The output folder holds another run's files, or another run is writing there now."""


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _live_writer(output_dir: Path) -> dict | None:
    """The `run_info.json` of a run still writing to `output_dir` on this machine, if there is one."""
    try:
        info = json.loads((output_dir / RUN_INFO_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if info.get("status") != "running" or info.get("host") != socket.gethostname() or info.get("pid") == os.getpid():
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError, TypeError):
        return None
    except PermissionError:  # alive, owned by another user
        pass
    return info


def prepare_run(output_dir: str | Path, resume_from_checkpoint: str | bool | None = None,
                overwrite_output_dir: bool = False) -> str | None:
    """Claim `output_dir` for this run; returns the checked checkpoint to resume from (None to start afresh).

    A folder that is not empty belongs to another run: it is refused unless this run resumes from a checkpoint or
    `overwrite_output_dir` is set (the old run's `checkpoint-*` folders are then deleted, so neither checkpoint
    rotation nor a later `--resume_from_checkpoint True` can pick them up). A folder whose `run_info.json` names a
    live process on this machine is always refused. Call it on every process of a multi-process run.
    """
    output_dir = Path(output_dir)
    state = PartialState()
    writer = _live_writer(output_dir)
    if writer is not None:
        raise OutputDirInUseError(
            f"{output_dir} is in use: run pid {writer['pid']} on {writer['host']} (started {writer.get('started')}) "
            f"is writing there. Pick another --output_dir, or delete {output_dir / RUN_INFO_NAME} if that process "
            "is not a run."
        )
    checkpoint = resolve_checkpoint(resume_from_checkpoint, output_dir)
    used = output_dir.is_dir() and any(output_dir.iterdir())
    if used and checkpoint is None and not overwrite_output_dir:
        contents = sorted(path.name for path in output_dir.iterdir())
        shown = ", ".join(contents[:6]) + (", ..." if len(contents) > 6 else "")
        raise OutputDirInUseError(
            f"{output_dir} already holds another run's files ({shown}). Pass --overwrite_output_dir to replace that "
            "run, --resume_from_checkpoint True to continue it, or another --output_dir."
        )
    state.wait_for_everyone()  # every process has looked before the main one writes
    if state.is_main_process:
        if used and checkpoint is None:
            for stale in checkpoints_in(output_dir):
                shutil.rmtree(stale)
        output_dir.mkdir(parents=True, exist_ok=True)
        info = {"status": "running", "command": [sys.executable, *sys.argv], "started": _now(), "pid": os.getpid(),
                "host": socket.gethostname(), "world_size": state.num_processes, "resumed_from": checkpoint}
        (output_dir / RUN_INFO_NAME).write_text(json.dumps(info, indent=2))
    state.wait_for_everyone()
    return checkpoint


def finish_run(output_dir: str | Path) -> None:
    """Mark the run finished in `run_info.json` and, in a multi-process run, shut the process group down.

    Without `destroy_process_group`, gloo's worker threads can still hold tensors while the interpreter
    finalises, and a process exiting first aborts ("terminate called without an active exception", SIGABRT).
    """
    state = PartialState()
    path = Path(output_dir) / RUN_INFO_NAME
    if state.is_main_process and path.is_file():
        info = json.loads(path.read_text())
        path.write_text(json.dumps({**info, "status": "finished", "finished": _now()}, indent=2))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        state.wait_for_everyone()
        torch.distributed.destroy_process_group()
