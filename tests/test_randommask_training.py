"""RandomMask schedule under real training: DataLoader workers, checkpoint resume, two-process launches."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_genomics import BeaconConfig, BeaconForMaskedLM, DataCollatorForRandomMask, KmerTokenizer, RandomMaskCallback
from hf_genomics.data.pretraining_corpus import build_pretraining_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAMBDA = os.path.join(REPO, "data", "lambda_phage", "lambda_virus.fa.gz")
MAX_STEPS = 10


@pytest.fixture(scope="module")
def tokenizer():
    return KmerTokenizer(k=6, stride=1)


@pytest.fixture(scope="module")
def train_dataset(tokenizer):
    chunks = build_pretraining_dataset([LAMBDA], max_length=64, min_length=32, validation_fraction=0.0)
    return chunks.select(range(200)).map(
        lambda batch: tokenizer(batch["sequence"]), batched=True, remove_columns=["sequence", "source"]
    )


def tiny_model(tokenizer):
    config = BeaconConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64,
    )  # fmt: skip
    return BeaconForMaskedLM(config)


def training_args(output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir), max_steps=MAX_STEPS, per_device_train_batch_size=8, learning_rate=1e-3,
        logging_steps=2, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, seed=0,
    )  # fmt: skip
    return TrainingArguments(**{**settings, **overrides})


def test_workers_follow_the_schedule_and_metrics_are_logged(tmp_path, tokenizer, train_dataset):
    collator = DataCollatorForRandomMask(tokenizer, mlm_probability=0.05, seed=0)
    trainer = Trainer(
        model=tiny_model(tokenizer),
        args=training_args(tmp_path, dataloader_num_workers=2),
        train_dataset=train_dataset,
        data_collator=collator,
        callbacks=[RandomMaskCallback(collator)],
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == [2, 4, 6, 8, 10]
    # The logged phase is that of the logged step, a pure function of (step - 1) / max_steps: 5 phases of 2 steps.
    assert [entry["randommask_phase"] for entry in logs] == [0, 1, 2, 3, 4]
    assert [entry["randommask_boundary"] for entry in logs] == [6, 8, 10, 12, 14]
    # Collation happened only in the two workers, which read the phase from and wrote statistics to shared memory.
    stats = collator.statistics()
    assert collator._statistics[0].sum() == 0 and collator._statistics[1:3].sum() > 0
    assert stats["batches_per_phase"][0] >= 1 and sum(stats["batches_per_phase"][3:]) >= 1
    first, last = logs[0], logs[-1]
    assert 0 < first["randommask_masked_fraction"] < last["randommask_masked_fraction"] < 1
    assert 0 < first["randommask_hidden_nucleotides"] < last["randommask_hidden_nucleotides"]


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True


def test_resume_from_checkpoint_starts_in_the_checkpoint_phase(tmp_path, tokenizer, train_dataset):
    first = DataCollatorForRandomMask(tokenizer, seed=0)
    Trainer(
        model=tiny_model(tokenizer), args=training_args(tmp_path), train_dataset=train_dataset,
        data_collator=first, callbacks=[RandomMaskCallback(first), StopAt(6)],
    ).train()  # fmt: skip
    # Each batch is masked in the phase of the step that trains on it (2 steps per phase), although accelerate's
    # DataLoaderShard collates one batch ahead (the 7th, for step 7 of phase 3, was collated before the stop).
    assert first.statistics()["batches_per_phase"][:4] == [2, 2, 2, 1]

    resumed = DataCollatorForRandomMask(tokenizer, seed=0)
    trainer = Trainer(
        model=tiny_model(tokenizer), args=training_args(tmp_path), train_dataset=train_dataset,
        data_collator=resumed, callbacks=[RandomMaskCallback(resumed)],
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
    assert trainer.state.global_step == MAX_STEPS
    # The resumed run trains steps 7-10, which belong to phases 3 and 4: no batch was masked as in phases 0-2.
    per_phase = resumed.statistics()["batches_per_phase"]
    assert per_phase[:4] == [0, 0, 0, 2] and per_phase[4] >= 2  # plus a batch prefetched past the last step
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [(entry["step"], entry["randommask_phase"]) for entry in logs] == [(2, 0), (4, 1), (6, 2), (8, 3), (10, 4)]


LAUNCH_ARGS = [
    "--train_file", LAMBDA, "--max_length", "64", "--min_length", "32", "--validation_fraction", "0.05",
    "--max_eval_samples", "32", "--hidden_size", "32", "--num_attention_heads", "2", "--intermediate_size", "64",
    # 3-mers (vocabulary 73) so that 10 steps visibly lower the held-out loss.
    "--k", "3", "--max_steps", "10", "--logging_steps", "2", "--per_device_train_batch_size", "8",
    "--learning_rate", "1e-2",
    "--warmup_steps", "0", "--disable_tqdm", "true", "--use_cpu",
]  # fmt: skip


def free_port() -> int:
    """A port nobody listens on now (a fixed port can still be held by a previous run's sockets)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


LAUNCHERS = {
    # --standalone: torchrun's own rendezvous binds a free port itself.
    "torchrun": lambda: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    "accelerate": lambda: [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
    ],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_process_launch_trains_in_sync_on_different_data(tmp_path, launcher):
    dump = tmp_path / "ranks"
    command = LAUNCHERS[launcher]() + [
        os.path.join(REPO, "examples", "run_randommask.py"), *LAUNCH_ARGS,
        "--output_dir", str(tmp_path / "model"), "--debug_rank_dump", str(dump),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((dump / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    # Different data on the two ranks, gradients all-reduced into identical weights.
    assert len(ranks[0]["batch_hashes"]) == len(ranks[1]["batch_hashes"]) == 10
    assert not set(ranks[0]["batch_hashes"]) & set(ranks[1]["batch_hashes"])
    assert ranks[0]["weights_hash"] == ranks[1]["weights_hash"]
    # Each rank's own collator followed the same schedule.
    for rank in ranks:
        assert [entry["randommask_phase"] for entry in rank["masking_log"]] == [0, 1, 2, 3, 4]
        assert rank["collator_statistics"]["batches_per_phase"][4] >= 2
        assert rank["heldout_loss_after"] < rank["heldout_loss_before"]
    saved = tmp_path / "model"
    assert (saved / "config.json").is_file() and (saved / "tokenizer_config.json").is_file()
    assert "RandomMask" in (saved / "README.md").read_text()
    shutil.rmtree(saved)
