"""Two-process LayerMatch run for tests/test_layermatch.py::test_two_process_torchrun.

Usage: torchrun --nproc_per_node 2 tests/scripts/layermatch_ddp.py RUN_DIR OUT_JSON

Trains 3 steps with a checkpoint at step 2, resumes a second trainer from that checkpoint, and (rank 0)
writes what the test checks: world size, disjoint unlabeled shards, identical weights / teacher /
prediction EMA on both ranks, and resumed == uninterrupted.
"""

import json
import sys

import torch
import torch.distributed as dist
from assertions import RESUMED_RUN_TOLERANCE
from layermatch_fixtures import TOKENIZER, prom_dataset, tiny_bert
from transformers import TrainingArguments

from hf_genomics import LayerMatchTrainer


class RecordingTrainer(LayerMatchTrainer):
    """Remembers the unlabeled indices this process drew at each step."""

    def next_unlabeled_batch(self):
        batch = super().next_unlabeled_batch()
        self.drawn_indices = getattr(self, "drawn_indices", []) + [batch["unlabeled_index"].tolist()]
        return batch


def train(output_dir: str, resume_from_checkpoint: str | None = None) -> RecordingTrainer:
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=3, max_steps=3, learning_rate=1e-3, logging_steps=1,
        save_strategy="steps", save_steps=2, use_cpu=True, report_to="none", disable_tqdm=True, seed=0,
    )
    trainer = RecordingTrainer(
        model=tiny_bert(), args=args, train_dataset=prom_dataset("train", 0, 16),
        unlabeled_dataset=prom_dataset("train", 100, 164), processing_class=TOKENIZER, mode="layermatch",
        mu=2, threshold=0.5, avg_clustering_source="prediction_ema",
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer


def equal_across_ranks(tensors) -> bool:
    flat = torch.cat([t.detach().double().flatten().cpu() for t in tensors])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def main(run_dir: str, out_json: str) -> None:
    full = train(f"{run_dir}/full")
    resumed = train(f"{run_dir}/resumed", resume_from_checkpoint=f"{run_dir}/full/checkpoint-2")

    drawn = [None] * dist.get_world_size()
    dist.all_gather_object(drawn, full.drawn_indices)
    all_indices = [i for rank in drawn for step in rank for i in step]
    # Resumed vs uninterrupted: separately computed, so equal up to float32 rounding (tests/scripts/assertions.py).
    same = all(
        torch.allclose(a, b, **RESUMED_RUN_TOLERANCE)
        for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values())
    ) and torch.allclose(resumed.prediction_ema, full.prediction_ema, **RESUMED_RUN_TOLERANCE)
    resumed_equals_full = [None] * dist.get_world_size()
    dist.all_gather_object(resumed_equals_full, same)
    result = {
        "world_size": dist.get_world_size(),
        "distributed_type": full.accelerator.distributed_type.value,
        "unlabeled_batch_sizes": [len(rank[0]) for rank in drawn],
        "unlabeled_batches_disjoint": len(all_indices) == len(set(all_indices)),
        "weights_equal_across_ranks": equal_across_ranks(full.model.parameters()),
        "teacher_equal_across_ranks": equal_across_ranks(full.teacher.state_dict().values()),
        "prediction_ema_equal_across_ranks": equal_across_ranks([full.prediction_ema]),
        "prediction_ema_rows_seen": int(full.prediction_ema_seen.sum()),
        "resumed_equals_full": all(resumed_equals_full),
        "last_log": full.state.log_history[-2],
    }
    if dist.get_rank() == 0:
        with open(out_json, "w") as f:
            json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()  # see self_distillation_ddp.py


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
