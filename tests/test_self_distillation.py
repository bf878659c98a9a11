"""SelfDistillationTrainer: EMA arithmetic, centring/temperature maths, no teacher gradient, exact resume,
a short real-data run, and a two-process torchrun run."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

from hf_genomics import BeaconConfig, BeaconForMaskedLM, NucleotideTokenizer, SelfDistillationTrainer
from hf_genomics.training.trainer_self_distillation import distillation_cross_entropy, teacher_probabilities
from scripts.assertions import RESUMED_RUN_TOLERANCE, assert_resumed_run_close, assert_same_weights

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = NucleotideTokenizer()


def promoter_dataset(n: int, length: int = 40) -> datasets.Dataset:
    with open(REPO / "data/gue/prom/prom_core_tata/train.csv") as handle:
        sequences = [row["sequence"][:length] for _, row in zip(range(n), csv.DictReader(handle))]
    return datasets.Dataset.from_dict(dict(TOKENIZER(sequences)))


def tiny_mlm(seed: int = 0, dropout: float = 0.1) -> BeaconForMaskedLM:
    torch.manual_seed(seed)
    config = BeaconConfig(
        vocab_size=len(TOKENIZER), pad_token_id=TOKENIZER.pad_token_id, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    return BeaconForMaskedLM(config)


def make_trainer(output_dir, max_steps=4, dataset=None, **kwargs) -> SelfDistillationTrainer:
    args = dict(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=8, learning_rate=3e-3,
        logging_steps=1, save_strategy="no", use_cpu=True, report_to="none", disable_tqdm=True, seed=0,
    )
    args = TrainingArguments(**{**args, **kwargs.pop("args", {})})
    return SelfDistillationTrainer(
        tiny_mlm(), args, train_dataset=dataset or promoter_dataset(64), processing_class=TOKENIZER,
        projection_dim=16, **kwargs,
    )


class Snapshots(TrainerCallback):
    """Student and teacher copies after every optimizer step (runs after the teacher update)."""

    def __init__(self, trainer):
        self.trainer, self.student, self.teacher = trainer, [], []

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.student.append({k: v.clone() for k, v in self.trainer.model.state_dict().items()})
        self.teacher.append({k: v.clone() for k, v in self.trainer.teacher.state_dict().items()})


def test_teacher_follows_cosine_ema_and_gets_no_gradient(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=4, teacher_momentum_base=0.9)
    snapshots = Snapshots(trainer)
    trainer.add_callback(snapshots)
    teacher0 = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    trainer.train()
    previous = teacher0
    name = "model.beacon.encoder.layer.0.attention.self.query.weight"
    for step in range(1, 5):
        # Hand computation: m_t = 1 - (1 - 0.9) * (cos(pi t / T) + 1) / 2, teacher = m teacher + (1 - m) student.
        momentum = 1 - (1 - 0.9) * (math.cos(math.pi * step / 4) + 1) / 2
        expected = momentum * previous[name].double() + (1 - momentum) * snapshots.student[step - 1][name].double()
        torch.testing.assert_close(snapshots.teacher[step - 1][name].double(), expected, rtol=0, atol=1e-6)
        previous = snapshots.teacher[step - 1]
    assert not torch.equal(snapshots.teacher[0][name], teacher0[name])
    assert torch.equal(snapshots.teacher[3][name], snapshots.teacher[2][name])  # momentum 1 at the last step
    assert all(not p.requires_grad and p.grad is None for p in trainer.teacher.module.parameters())
    # A backward pass through the loss reaches the student and its head, never the teacher.
    trainer.model.train()
    batch = trainer.data_collator([promoter_dataset(4)[i] for i in range(4)])
    trainer.compute_loss(trainer.model, batch).backward()
    assert trainer.model.head.last_layer.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in trainer.teacher.module.parameters())
    logged = [entry for entry in trainer.state.log_history if "distillation_loss" in entry]
    assert [round(entry["teacher_momentum"], 6) for entry in logged] == [
        round(1 - 0.1 * (math.cos(math.pi * s / 4) + 1) / 2, 6) for s in range(1, 5)
    ]
    assert {"mlm_loss", "teacher_entropy", "teacher_batch_entropy"} <= set(logged[0])


def test_distillation_loss_centring_and_temperatures_match_formula(tmp_path):
    # Fixed views (no randomness): student = input with every 4th base masked, teacher = the input.
    def student_view(batch):
        ids = batch["input_ids"].clone()
        chosen = torch.zeros_like(ids, dtype=torch.bool)
        chosen[:, 2::4] = True
        chosen &= batch["attention_mask"].bool() & (ids != TOKENIZER.eos_token_id)
        ids[chosen] = TOKENIZER.mask_token_id
        return {**batch, "input_ids": ids, "labels": torch.where(chosen, batch["input_ids"], -100)}

    trainer = make_trainer(tmp_path, student_augment=student_view, teacher_augment=lambda batch: dict(batch),
                           distillation_weight=0.7, center_momentum=0.9)
    trainer.center.copy_(torch.linspace(-0.5, 0.5, 16))
    center_before = trainer.center.clone()
    batch = trainer.data_collator([promoter_dataset(6)[i] for i in range(6)])
    trainer.model.eval()  # no dropout, so the manual forward below sees the same numbers
    student = trainer.model(**student_view(batch))
    teacher = trainer.teacher.module(**batch).projection
    loss = trainer.compute_loss(trainer.model, batch)

    # CE(softmax((t - C) / 0.04), softmax(s / 0.1)), written out with exp and sums.
    t_logits = (teacher.double() - center_before.double()) / 0.04
    q = torch.exp(t_logits - t_logits.max(-1, keepdim=True).values)
    q = q / q.sum(-1, keepdim=True)
    s_logits = student.projection.double() / 0.1
    log_p = s_logits - s_logits.max(-1, keepdim=True).values
    log_p = log_p - torch.log(torch.exp(log_p).sum(-1, keepdim=True))
    expected = student.loss.double() + 0.7 * (-(q * log_p).sum(-1)).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(teacher_probabilities(teacher, center_before, 0.04).double(), q, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(distillation_cross_entropy(q.float(), student.projection, 0.1).double(),
                               (-(q * log_p).sum(-1)).mean(), rtol=1e-5, atol=1e-6)
    # Evaluation leaves the centre alone; a training forward moves it: C <- 0.9 C + 0.1 mean_b t.
    assert torch.equal(trainer.center, center_before)
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch)
    torch.testing.assert_close(trainer.center, 0.9 * center_before + 0.1 * teacher.mean(0, keepdim=True))


def test_resume_restores_student_teacher_and_centre_exactly(tmp_path):
    checkpointing = {"save_strategy": "steps", "save_steps": 3}
    full = make_trainer(tmp_path / "full", max_steps=6, args=checkpointing)
    full.train()
    resumed = make_trainer(tmp_path / "resumed", max_steps=6, args=checkpointing)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full/checkpoint-3"))
    assert_resumed_run_close(resumed.model.state_dict(), full.model.state_dict())
    assert_resumed_run_close(resumed.teacher.state_dict(), full.teacher.state_dict())
    torch.testing.assert_close(resumed.center, full.center, **RESUMED_RUN_TOLERANCE)
    assert full.center.abs().sum() > 0
    assert any(k.startswith("head.") for k in full.teacher.state_dict())  # the teacher's head is checkpointed too
    # Saved folders are plain masked-LM models.
    full.save_model(str(tmp_path / "student"))
    full.save_model(str(tmp_path / "teacher"), teacher=True)
    teacher = BeaconForMaskedLM.from_pretrained(tmp_path / "teacher")
    assert_same_weights(teacher.state_dict(), full.teacher.module.model.state_dict())
    assert not torch.equal(teacher.cls.predictions.transform.dense.weight, BeaconForMaskedLM.from_pretrained(tmp_path / "student").cls.predictions.transform.dense.weight)


def test_short_real_data_run_loss_falls(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=30, dataset=promoter_dataset(240, length=70), args={"logging_steps": 10})
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "mlm_loss" in entry]
    assert logs[-1]["mlm_loss"] < logs[0]["mlm_loss"] - 0.1
    assert logs[-1]["loss"] < logs[0]["loss"]
    # Student-teacher disagreement KL = CE - H(teacher) falls as the student learns to match the teacher.
    kl = [entry["distillation_loss"] - entry["teacher_entropy"] for entry in logs]
    assert kl[-1] < kl[0]


def test_short_real_data_run_does_not_collapse(tmp_path):
    # Collapse watch: the teacher's per-sample entropy must stay clearly below the entropy of its batch mean
    # (equal = every sequence gets the same distribution; here uniform, log(16) = 2.77 nats).
    trainer = make_trainer(tmp_path, max_steps=40, dataset=promoter_dataset(640, length=70),
                           teacher_momentum_base=0.9, args={"logging_steps": 10, "per_device_train_batch_size": 16})
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "teacher_entropy" in entry]
    assert len(logs) == 4 and all(entry["teacher_batch_entropy"] - entry["teacher_entropy"] > 0.15 for entry in logs)
    assert logs[-1]["teacher_batch_entropy"] > 0.5 * math.log(16)  # nor collapsed onto a few dimensions
    # The [CLS] state of a fresh encoder barely depends on the sequence (why mean pooling is the default).
    batch = trainer.data_collator([promoter_dataset(64, length=70)[i] for i in range(64)])
    with torch.no_grad():
        hidden = tiny_mlm().eval()(**batch, output_hidden_states=True).hidden_states[-1]
    mean = (hidden * batch["attention_mask"][..., None]).sum(1) / batch["attention_mask"].sum(1, keepdim=True)
    spread = {name: (x.std(0).mean() / x.std(1).mean()).item() for name, x in (("cls", hidden[:, 0]), ("mean", mean))}
    assert spread["mean"] > 20 * spread["cls"]


def test_bad_inputs_raise(tmp_path):
    trainer = make_trainer(tmp_path)
    batch = trainer.data_collator([promoter_dataset(2)[i] for i in range(2)])
    with pytest.raises(ValueError, match="DataCollatorWithPadding"):
        trainer.compute_loss(trainer.model, {**batch, "labels": batch["input_ids"]})
    with pytest.raises(ValueError, match="temperature"):
        make_trainer(tmp_path, teacher_temperature=0.0)
    with pytest.raises(ValueError, match="labels"):
        make_trainer(tmp_path, student_augment=lambda b: dict(b)).compute_loss(trainer.model, batch)


@pytest.mark.slow
def test_two_process_torchrun_keeps_teacher_and_centre_identical(tmp_path):
    out_json = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO / "tests/scripts/self_distillation_ddp.py"), str(tmp_path), str(out_json)]
    subprocess.run(command, check=True, env=env, cwd=REPO, timeout=300)
    result = json.loads(out_json.read_text())
    assert result["world_size"] == 2
    assert result["different_data"]  # the ranks really saw different sequences
    assert result["same_student"] and result["same_teacher"] and result["same_center"]
    assert result["center_norm"] > 0
