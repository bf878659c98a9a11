"""Two-process IMWA run for tests/test_imwa.py, and the tiny real-data set-up the tests share.

Launched as ``torchrun --nproc_per_node 2 tests/scripts/imwa_ddp.py OUT_DIR``: trains a tiny ResNet baseline
(which has BatchNorm float and integer buffers) on nRC sequences with IMWACallback, records every rank's
replica after each optimizer step (before averaging) and at each step end (after), and rank 0 saves both
ranks' records to ``OUT_DIR/records.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

from hf_genomics import BaselineConfig, BaselineForSequenceClassification, IMWACallback, NucleotideTokenizer
from hf_genomics.io.fasta import read_fasta

NRC_TRAIN = Path(__file__).resolve().parents[2] / "data" / "nrc_ncrna" / "dataset_Rfam_6320_13classes.fasta"
CLASSES = ("5S_rRNA", "tRNA", "miRNA")


def tiny_nrc_dataset(per_class: int = 16, max_length: int = 48) -> list[dict]:
    """The first ``per_class`` nRC training sequences of three families, tokenized and truncated."""
    tokenizer = NucleotideTokenizer()
    records, counts = [], dict.fromkeys(CLASSES, 0)
    for header, sequence in read_fasta(NRC_TRAIN):
        family = header.split()[-1]
        if family in counts and counts[family] < per_class:
            counts[family] += 1
            ids = tokenizer(sequence, truncation=True, max_length=max_length)["input_ids"]
            records.append({"input_ids": ids, "labels": CLASSES.index(family)})
    return records


def tiny_resnet(dropout: float = 0.0) -> BaselineForSequenceClassification:
    torch.manual_seed(0)
    config = BaselineConfig(architecture="resnet", num_labels=len(CLASSES), embedding_dim=8, hidden_size=8,
                            kernel_size=3, num_layers=1, dropout=dropout)
    return BaselineForSequenceClassification(config)


def make_trainer(output_dir, max_steps: int, eval_dataset=None, **args) -> Trainer:
    defaults = dict(per_device_train_batch_size=4, learning_rate=1e-2, save_strategy="no", report_to=[],
                    use_cpu=True, disable_tqdm=True, logging_strategy="no", seed=0)
    return Trainer(
        model=tiny_resnet(args.pop("dropout", 0.0)),
        args=TrainingArguments(output_dir=str(output_dir), max_steps=max_steps, **{**defaults, **args}),
        train_dataset=tiny_nrc_dataset(),
        eval_dataset=eval_dataset,
        data_collator=DataCollatorWithPadding(NucleotideTokenizer()),
    )


class ReplicaRecorder(TrainerCallback):
    """Keeps every replica after each optimizer step (``pre``, before averaging) and at step end (``post``).

    ``tamper_step``: before that step's averaging, add 100 to the live replica's first integer buffer, so a test
    can tell copying from averaging.
    """

    def __init__(self, imwa: IMWACallback, tamper_step: int | None = None):
        self.imwa, self.tamper_step = imwa, tamper_step
        self.pre, self.post = {}, {}

    def _replicas(self):
        return [self.imwa.replica_state(r) for r in range(len(self.imwa._param_slots))]

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        step = state.global_step + 1
        if step == self.tamper_step:
            counter = next(b for b in model.buffers() if not b.is_floating_point())
            counter += 100
        self.pre[step] = self._replicas()

    def on_step_end(self, args, state, control, **kwargs):
        self.post[state.global_step] = self._replicas()


def main(out_dir: str) -> None:
    trainer = make_trainer(Path(out_dir) / "run", max_steps=6)
    imwa = IMWACallback(trainer, num_episodes=2)
    rank = trainer.args.process_index
    recorder = ReplicaRecorder(imwa, tamper_step=3 if rank == 1 else None)
    trainer.add_callback(imwa)
    trainer.add_callback(recorder)
    trainer.train()
    records = {"world_size": torch.distributed.get_world_size(), "num_models": imwa.num_models,
               "steps_per_episode": imwa.steps_per_episode, "pre": recorder.pre, "post": recorder.post}
    gathered = [None] * records["world_size"]
    torch.distributed.all_gather_object(gathered, records)
    if rank == 0:
        torch.save(gathered, Path(out_dir) / "records.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()  # see self_distillation_ddp.py


if __name__ == "__main__":
    main(sys.argv[1])
