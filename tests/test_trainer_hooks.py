"""hf_genomics' trainers and callbacks reach transformers' Trainer through public hooks only, and the two contracts
they rely on (checkpoint weights written by `save_model(folder, _internal_call=True)`, then `on_save` called with
that folder in `args.output_dir`) still hold in the installed transformers."""

import ast
import importlib
import inspect
import os
import pkgutil
import textwrap

import torch
import transformers
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import hf_genomics.training
from hf_genomics.training.checkpoints import checkpoint_folder

CHANGED = f"transformers {transformers.__version__} changed a Trainer internal hf_genomics relies on"


def _training_classes(base):
    for module_info in pkgutil.iter_modules(hf_genomics.training.__path__):
        module = importlib.import_module(f"hf_genomics.training.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, base) and cls is not base:
                yield cls


def _private_names(source: str) -> set[str]:
    """Single-underscore names a class body defines or reads on `self`."""
    names = set()
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            names.add(node.attr)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_no_private_trainer_method_or_attribute_is_overridden():
    # Methods defined, and attributes set or read on `self`: none may be one of Trainer's (no exceptions).
    for base in (Trainer, TrainerCallback):
        base_names = _private_names(inspect.getsource(inspect.getmodule(base))) | {
            name for name in dir(base) if name.startswith("_") and not name.startswith("__")}
        classes = list(_training_classes(base))
        assert classes, f"no {base.__name__} subclass found in hf_genomics.training"
        for cls in classes:
            clashes = _private_names(inspect.getsource(cls)) & base_names
            assert not clashes, (f"{cls.__name__} uses {sorted(clashes)}, private names of {base.__name__} in "
                                 f"transformers {transformers.__version__}: use a public hook or a name of its own.")


class _Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x, labels=None):
        return {"loss": ((self.linear(x).squeeze(-1) - labels) ** 2).mean()}


class _RecordingTrainer(Trainer):
    def save_model(self, output_dir=None, _internal_call=False):
        self.saved.append((output_dir, _internal_call))
        super().save_model(output_dir, _internal_call=_internal_call)


class _FolderCallback(TrainerCallback):
    def __init__(self):
        self.seen = []

    def on_save(self, args, state, control, **kwargs):
        folder = checkpoint_folder(args, state)
        self.seen.append((folder, os.path.isfile(os.path.join(folder, "model.safetensors"))))


def test_checkpoints_go_through_save_model_then_on_save(tmp_path):
    # SelfDistillationTrainer.save_model writes the checkpoint weights when `_internal_call` is set; the EMA
    # teacher's and IMWA's on_save add their files to `checkpoint_folder(args, state)`.
    assert "_internal_call" in inspect.signature(Trainer.save_model).parameters, CHANGED
    assert list(inspect.signature(Trainer.train).parameters)[:2] == ["self", "resume_from_checkpoint"], CHANGED
    data = [{"x": torch.randn(2), "labels": torch.tensor(0.5)} for _ in range(8)]
    args = TrainingArguments(str(tmp_path), max_steps=2, per_device_train_batch_size=4, save_steps=1,
                             report_to=[], use_cpu=True, disable_tqdm=True)
    callback = _FolderCallback()
    trainer = _RecordingTrainer(model=_Regressor(), args=args, train_dataset=data, callbacks=[callback])
    trainer.saved = []
    trainer.train()
    folders = [str(tmp_path / f"{PREFIX_CHECKPOINT_DIR}-{step}") for step in (1, 2)]
    assert trainer.saved == [(folder, True) for folder in folders], f"{CHANGED}: save_model calls {trainer.saved}"
    assert callback.seen == [(folder, True) for folder in folders], f"{CHANGED}: on_save saw {callback.seen}"
