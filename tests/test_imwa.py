"""IMWACallback: averaging arithmetic, replicas at and between episode ends, optimizer-state policies,
checkpoint resume mid-episode, the EMA's evaluation, and the two-process (gloo) mode."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import DataCollatorWithPadding

from hf_genomics import IMWACallback, NucleotideTokenizer, long_tailed_indices, read_nrc
from hf_genomics.training.callback_imwa import average_replicas_, uniform_mean
from scripts.assertions import assert_resumed_run_close

SCRIPT = Path(__file__).parent / "scripts" / "imwa_ddp.py"
_spec = importlib.util.spec_from_file_location("imwa_ddp", SCRIPT)
imwa_ddp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(imwa_ddp)

COUNTER = "encoder.blocks.0.norm1.num_batches_tracked"


def test_long_tailed_subsample_of_nrc_follows_the_exponential_profile(data_dir):
    rows = read_nrc(data_dir / "nrc_ncrna" / "dataset_Rfam_6320_13classes.fasta")
    labels = np.array([row["label"] for row in rows])
    assert len(rows) == 6320 and set(labels) == set(range(13))
    keep = long_tailed_indices(labels, ratio=100, head_size=400, seed=3)
    sizes = sorted(np.bincount(labels[keep], minlength=13), reverse=True)
    assert sizes == [round(400 * 100 ** (-rank / 12)) for rank in range(13)]  # every class has >= 400
    assert np.array_equal(keep, long_tailed_indices(labels, 100, 400, seed=3))
    assert not np.array_equal(keep, long_tailed_indices(labels, 100, 400, seed=4))
    with pytest.raises(ValueError, match="ratio"):
        long_tailed_indices(labels, ratio=0.5, head_size=400, seed=0)


def test_read_nrc_names_the_record_with_an_unknown_family(tmp_path):
    path = tmp_path / "nrc.fasta"
    path.write_text(">RF0001_a tRNA\nGCAUCCGUAG\n>RF0002_b snoRNA\nGGAUC\n")
    with pytest.raises(ValueError, match="RF0002_b.*snoRNA"):
        read_nrc(path)


def test_average_of_known_weights():
    replicas = [
        [torch.tensor([1.0, 2.0]), torch.tensor([[0.5]]), torch.tensor(3)],
        [torch.tensor([3.0, 6.0]), torch.tensor([[1.5]]), torch.tensor(8)],
        [torch.tensor([5.0, 1.0]), torch.tensor([[4.0]]), torch.tensor(100)],
    ]
    mean = uniform_mean(replicas)
    assert torch.equal(mean[0], torch.tensor([3.0, 3.0]))
    assert torch.equal(mean[1], torch.tensor([[2.0]]))
    assert mean[2].item() == 3  # integer buffers are copied from replica 0, not averaged (37)
    average_replicas_(replicas)
    for tensors in replicas:
        for value, expected in zip(tensors, mean):
            assert torch.equal(value, expected)
    with pytest.raises(ValueError, match="same number of tensors"):
        uniform_mean([[torch.zeros(1)], []])


@pytest.mark.parametrize("kwargs, message", [
    ({"num_models": 0}, "num_models"), ({"num_episodes": 0}, "num_episodes"),
    ({"optimizer_state": "sum"}, "optimizer_state"), ({"ema_decay": 1.0}, "ema_decay"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IMWACallback(trainer=None, **kwargs)


def _train(tmp_path, max_steps, tamper_step=None, **imwa_kwargs):
    trainer = imwa_ddp.make_trainer(tmp_path, max_steps=max_steps)
    imwa = IMWACallback(trainer, **imwa_kwargs)
    recorder = imwa_ddp.ReplicaRecorder(imwa, tamper_step=tamper_step)
    trainer.add_callback(imwa)
    trainer.add_callback(recorder)
    trainer.train()
    return trainer, imwa, recorder


def test_replicas_equal_the_average_at_episode_ends_and_differ_inside(tmp_path):
    # 12 steps, 3 episodes, 2 replicas: episodes end at steps 4, 8, 12; step g is made by replica (g-1) % 2.
    trainer, imwa, recorder = _train(tmp_path, max_steps=12, tamper_step=8, num_models=2, num_episodes=3)
    assert imwa.steps_per_episode == 4
    for step in range(1, 13):
        before, after = recorder.pre[step], recorder.post[step]
        if step % 4 == 0:
            for name, value in after[0].items():
                assert torch.equal(after[1][name], value), (step, name)
                if value.is_floating_point():
                    assert torch.equal(value, (before[0][name] + before[1][name]) / 2), (step, name)
                else:
                    assert torch.equal(value, before[0][name]), (step, name)
        else:
            for name, value in after[0].items():
                if value.is_floating_point():
                    assert not torch.equal(after[1][name], value), (step, name)
        # Only the replica that made this step moved.
        idle = step % 2
        if step % 4 != 1:
            previous = recorder.post[step - 1][idle]
            assert all(torch.equal(before[idle][n], previous[n]) for n in previous)
    # The step-8 tamper made replica 1's counter 100 larger; averaging copied replica 0's instead.
    assert recorder.pre[8][1][COUNTER] == recorder.pre[8][0][COUNTER] + 100
    assert recorder.post[8][1][COUNTER] == recorder.pre[8][0][COUNTER]
    # The Trainer's model ends as the final average.
    final = trainer.model.state_dict()
    assert all(torch.equal(final[n], v) for n, v in recorder.post[12][0].items())


@pytest.mark.parametrize("policy", ["keep", "reset", "average"])
def test_optimizer_state_policy_at_episode_end(tmp_path, policy):
    state_after = {}

    class Probe(imwa_ddp.ReplicaRecorder):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                weight = self.imwa._params[-2]  # classifier.weight
                state_after["before"] = self.before
                # Copies: replica 0 keeps training (and updating its state in place) at step 3.
                state_after["after"] = [{k: v.clone() for k, v in self.imwa.replica_optimizer_state(r)[weight].items()}
                                        if weight in self.imwa.replica_optimizer_state(r) else None for r in range(2)]

        def on_optimizer_step(self, args, state, control, **kwargs):
            if state.global_step + 1 == 2:
                weight = self.imwa._params[-2]
                self.before = [self.imwa.replica_optimizer_state(r)[weight]["exp_avg"].clone() for r in range(2)]

    trainer = imwa_ddp.make_trainer(tmp_path, max_steps=4)
    imwa = IMWACallback(trainer, num_models=2, num_episodes=2, optimizer_state=policy)
    trainer.add_callback(imwa)
    trainer.add_callback(Probe(imwa))
    trainer.train()
    assert imwa._param_names[-2] == "classifier.weight"
    before, after = state_after["before"], state_after["after"]
    assert not torch.equal(before[0], before[1])
    if policy == "keep":
        assert torch.equal(after[0]["exp_avg"], before[0]) and torch.equal(after[1]["exp_avg"], before[1])
    elif policy == "reset":
        assert after == [None, None]
    else:
        for state in after:
            assert torch.equal(state["exp_avg"], (before[0] + before[1]) / 2)


def test_resume_mid_episode_continues_exactly(tmp_path):
    # 2 replicas, 2 episodes of 6 steps; the step-3 checkpoint is mid-episode with replica 1 live. Dropout and
    # the EMA make the test also cover the RNG and the EMA state.
    common = dict(num_models=2, num_episodes=2, ema_decay=0.8)
    full = imwa_ddp.make_trainer(tmp_path / "full", max_steps=10, save_strategy="steps", save_steps=3, dropout=0.2)
    full_imwa = IMWACallback(full, **common)
    full.add_callback(full_imwa)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-3"
    assert {"imwa_state.json", "imwa_replicas-rank0.safetensors", "ema"} <= set(os.listdir(checkpoint))
    assert (checkpoint / "ema" / "config.json").is_file()

    shutil.copytree(checkpoint, tmp_path / "resumed" / "checkpoint-3")
    resumed = imwa_ddp.make_trainer(tmp_path / "resumed", max_steps=10, dropout=0.2)
    resumed_imwa = IMWACallback(resumed, **common)
    resumed.add_callback(resumed_imwa)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-3"))

    expected, got = full.model.state_dict(), resumed.model.state_dict()
    assert_resumed_run_close(got, expected)
    expected_ema, got_ema = full_imwa.ema.state_dict(), resumed_imwa.ema.state_dict()
    assert_resumed_run_close(got_ema, expected_ema)
    assert not torch.allclose(expected_ema["classifier.weight"], expected["classifier.weight"])


def test_resume_without_imwa_state_raises(tmp_path):
    plain = imwa_ddp.make_trainer(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    plain.train()
    trainer = imwa_ddp.make_trainer(tmp_path, max_steps=4)
    trainer.add_callback(IMWACallback(trainer, num_models=2, num_episodes=2))
    with pytest.raises(FileNotFoundError, match="imwa_replicas-rank0"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


@pytest.mark.slow
def test_two_processes_average_at_episode_ends_and_stay_apart_inside(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: torchrun picks a free rendezvous port (a fixed one can still be held by the previous run).
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
                    str(tmp_path)], check=True, env=env, cwd=Path(__file__).parents[1], timeout=300)
    ranks = torch.load(tmp_path / "records.pt", weights_only=False)
    assert [r["world_size"] for r in ranks] == [2, 2] and ranks[0]["num_models"] == 2
    assert ranks[0]["steps_per_episode"] == 3  # 6 steps, 2 episodes
    for step in range(1, 7):
        pre = [r["pre"][step][0] for r in ranks]
        post = [r["post"][step][0] for r in ranks]
        if step % 3 == 0:
            for name, value in post[0].items():
                assert torch.equal(post[1][name], value), (step, name)
                if value.is_floating_point():
                    assert torch.equal(value, (pre[0][name] + pre[1][name]) / 2), (step, name)
                else:
                    assert torch.equal(value, pre[0][name]), (step, name)
        else:
            # No hidden gradient or buffer sync: floating tensors differ between ranks. Adam's very first step
            # is about lr * sign(gradient), so a small tensor whose gradient signs agree on both ranks can
            # still match at step 1.
            same = [n for n, v in post[0].items() if v.is_floating_point() and torch.equal(post[1][n], v)]
            assert len(same) <= (1 if step == 1 else 0), (step, same)
    # Rank 1's counter was bumped by 100 before the step-3 average; the average took rank 0's.
    assert ranks[1]["pre"][3][0][COUNTER] == ranks[0]["pre"][3][0][COUNTER] + 100
    assert ranks[1]["post"][3][0][COUNTER] == ranks[0]["pre"][3][0][COUNTER]


def test_ema_is_evaluated_during_training_and_live_weights_restored(tmp_path):
    """``eval_ema_*`` (the Trainer's loss and ``compute_metrics`` on the EMA weights) are logged next to ``eval_*``
    and equal a hand evaluation of :attr:`ema_model`; the live weights are back in place afterwards."""
    eval_dataset = imwa_ddp.tiny_nrc_dataset()[:8]
    trainer = imwa_ddp.make_trainer(tmp_path, max_steps=4, eval_strategy="steps", eval_steps=2,
                                    eval_dataset=eval_dataset)
    trainer.compute_metrics = lambda prediction: {
        "accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}
    imwa = IMWACallback(trainer, num_models=2, num_episodes=2, ema_decay=0.5)
    trainer.add_callback(imwa)
    trainer.train()
    logged = {(entry["step"], key) for entry in trainer.state.log_history for key in entry}
    assert {(step, f"eval_{ema}{name}") for step in (2, 4) for ema in ("", "ema_")
            for name in ("loss", "accuracy")} <= logged
    assert imwa.ema.num_updates == 2  # one per round of K = 2 replica steps, with warm-up: momenta 0.1, 2/11
    live = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    ema_metrics, live_metrics = imwa.evaluate_ema(), trainer.evaluate()
    assert ema_metrics["eval_ema_loss"] != live_metrics["eval_loss"]
    assert all(torch.equal(value, trainer.model.state_dict()[name]) for name, value in live.items())
    batch = DataCollatorWithPadding(NucleotideTokenizer())(eval_dataset)
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = imwa.ema_model(**batch).logits
    assert ema_metrics["eval_ema_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert ema_metrics["eval_ema_accuracy"] == pytest.approx((logits.argmax(-1) == labels).float().mean().item())


def test_run_imwa_example_end_to_end(tmp_path):
    """examples/run_imwa.py on a tiny long-tailed nRC subsample: both runs train, report and save."""
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(repo / "examples" / "run_imwa.py"), "--output_dir", str(tmp_path),
               "--head_class_size", "16", "--imbalance_ratios", "8", "--num_train_epochs", "1",
               "--max_length", "48", "--hidden_size", "16", "--embedding_dim", "8",
               "--num_models", "2", "--num_episodes", "2", "--batch_size", "16"]
    run = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "imwa_results.json").read_text())
    assert [row["method"] for row in results] == ["plain", "ema", "imwa", "imwa_ema"]
    assert all(0 <= row["balanced_accuracy"] <= 1 and 0 <= row["macro_f1"] <= 1 for row in results)
    assert (tmp_path / "ratio8_seed0_imwa" / "model" / "config.json").exists()
    assert "| 8 | imwa |" in run.stdout
