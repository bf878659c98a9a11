"""Two-process self-distillation run for tests/test_self_distillation.py::test_two_process_torchrun_keeps_teacher_and_centre_identical.

Usage: torchrun --nproc_per_node 2 tests/scripts/self_distillation_ddp.py RUN_DIR OUT_JSON

Trains 3 steps on real promoters and (rank 0) writes what the test checks: world size, whether the ranks
saw different sequences, and whether student, EMA teacher and centre are identical on both ranks.
"""

import json
import sys

import torch
import torch.distributed as dist
from test_self_distillation import make_trainer, promoter_dataset

from hf_genomics import SelfDistillationTrainer


def equal_across_ranks(tensors) -> bool:
    flat = torch.cat([t.detach().double().flatten().cpu() for t in tensors])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def main(run_dir: str, out_json: str) -> None:
    seen = []
    original = SelfDistillationTrainer.compute_loss

    def recording_compute_loss(self, model, inputs, *args, **kwargs):
        seen.append(inputs["input_ids"].float().sum().reshape(1))
        return original(self, model, inputs, *args, **kwargs)

    SelfDistillationTrainer.compute_loss = recording_compute_loss
    trainer = make_trainer(run_dir, max_steps=3, dataset=promoter_dataset(48))
    trainer.train()
    result = {
        "world_size": dist.get_world_size(),
        "different_data": not equal_across_ranks(seen),
        "same_student": equal_across_ranks(trainer.model.state_dict().values()),
        "same_teacher": equal_across_ranks(trainer.teacher.state_dict().values()),
        "same_center": equal_across_ranks([trainer.center]),
        "center_norm": trainer.center.norm().item(),
    }
    if dist.get_rank() == 0:
        with open(out_json, "w") as handle:
            json.dump(result, handle)
    # Without this, gloo's threads may still hold tensors while the interpreter shuts down, and the first
    # process to exit aborts (SIGABRT, "terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
