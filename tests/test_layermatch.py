"""LayerMatchTrainer: Grad-ReLU gradients, thresholding, Avg-Clustering averages, the teacher's warm-up and
evaluation, supervised equivalence with ``Trainer``, label-leak freedom, resume, real-data runs in every mode and
two-process DDP."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer, TrainingArguments, default_data_collator

from hf_genomics import BeaconConfig, BeaconForSequenceClassification, LayerMatchTrainer
from hf_genomics.models.baselines import BaselineConfig, BaselineForSequenceClassification
from hf_genomics.training.trainer_layermatch import linear_classifier, select_pseudo_labels
from scripts.assertions import RESUMED_RUN_TOLERANCE, assert_resumed_run_close
from scripts.layermatch_fixtures import TOKENIZER, prom_dataset, strong_view, tiny_bert, weak_view

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def labeled():
    return prom_dataset("train", 0, 16)


@pytest.fixture(scope="module")
def unlabeled():
    return prom_dataset("train", 100, 164)


def batch_of(dataset, n):
    return default_data_collator([dataset[i] for i in range(n)])


def make_trainer(tmp_path, model, labeled, unlabeled=None, args=None, **kwargs):
    arguments = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=2,
        learning_rate=1e-3,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    arguments.update(args or {})
    kwargs.setdefault("weak_augment", weak_view)
    kwargs.setdefault("strong_augment", strong_view)
    return LayerMatchTrainer(
        model=model,
        args=TrainingArguments(**arguments),
        train_dataset=labeled,
        unlabeled_dataset=unlabeled,
        **kwargs,
    )


def gradients(model, loss):
    model.zero_grad()
    loss.backward(retain_graph=True)
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def without_labels(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


# ---- Grad-ReLU ----


def test_grad_relu_blocks_only_the_classifier(tmp_path, labeled, unlabeled):
    model = tiny_bert()
    lab, unl = batch_of(labeled, 4), batch_of(unlabeled, 8)
    grad_relu = make_trainer(tmp_path, model, labeled, unlabeled, avg_clustering=False, threshold=0.01)
    losses = grad_relu.compute_semi_supervised_losses(model, lab, unl)
    assert losses.mask.all() and losses.loss_unsupervised > 0
    g_unsup = gradients(model, losses.loss_unsupervised)
    g_sup = gradients(model, losses.loss_supervised)
    g_total = gradients(model, losses.loss_supervised + losses.loss_unsupervised)
    encoder_weight = "bert.encoder.layer.0.attention.self.query.weight"
    for name in ("classifier.weight", "classifier.bias"):
        assert torch.count_nonzero(g_unsup[name]) == 0  # exactly nothing from L_u
        torch.testing.assert_close(g_total[name], g_sup[name], rtol=1e-6, atol=1e-9)
    assert g_unsup[encoder_weight].abs().sum() > 0
    assert g_unsup["bert.embeddings.word_embeddings.weight"].abs().sum() > 0

    fixmatch = make_trainer(tmp_path, model, labeled, unlabeled, mode="fixmatch", threshold=0.01)
    losses_fm = fixmatch.compute_semi_supervised_losses(model, lab, unl)
    g_fm = gradients(model, losses_fm.loss_unsupervised)
    assert g_fm["classifier.weight"].abs().sum() > 0 and g_fm["classifier.bias"].abs().sum() > 0
    # Same pseudo-labels, same loss: the feature extractor receives exactly FixMatch's gradient.
    assert torch.equal(losses.pseudo_labels, losses_fm.pseudo_labels)
    torch.testing.assert_close(losses.loss_unsupervised, losses_fm.loss_unsupervised)
    for name in g_fm:
        if not name.startswith("classifier."):
            torch.testing.assert_close(g_unsup[name], g_fm[name], rtol=1e-5, atol=1e-7)


def test_linear_classifier_is_last_linear_of_the_head():
    model = nn.Module()
    model.classifier = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    assert linear_classifier(model) is model.classifier[2]
    with pytest.raises(ValueError, match="no `classifier`"):
        linear_classifier(nn.Linear(2, 2))
    headless = nn.Module()
    headless.classifier = nn.Tanh()
    with pytest.raises(ValueError, match="no nn.Linear"):
        linear_classifier(headless)


# ---- Thresholding, mask rate, logging, label leaks ----


def test_select_pseudo_labels_by_hand():
    probs = torch.tensor([[0.96, 0.04], [0.5, 0.5], [0.05, 0.95], [0.3, 0.7], [0.1, 0.9]])
    labels, mask = select_pseudo_labels(probs, 0.95)
    assert labels.tolist() == [0, 0, 1, 1, 1]
    assert mask.tolist() == [True, False, True, False, False]


def test_mask_rate_and_losses_match_hand_computation(tmp_path, labeled, unlabeled):
    model = tiny_bert(seed=3)
    lab, unl = batch_of(labeled, 4), batch_of(unlabeled, 12)
    with torch.no_grad():
        probs = model(**weak_view(without_labels(unl))).logits.softmax(-1)
        confidence, argmax = probs.max(-1)
        ordered = confidence.sort().values
        threshold = ((ordered[5] + ordered[6]) / 2).item()  # about half the pseudo-labels pass
    trainer = make_trainer(tmp_path, model, labeled, unlabeled, mode="fixmatch", threshold=threshold)
    losses = trainer.compute_semi_supervised_losses(model, lab, unl)

    mask = confidence >= threshold
    assert 0 < mask.sum() < len(mask)
    assert torch.equal(losses.mask, mask) and torch.equal(losses.pseudo_labels, argmax)
    strong_logits = model(**strong_view(without_labels(unl))).logits
    hand_unsup = (F.cross_entropy(strong_logits, argmax, reduction="none") * mask).sum() / len(mask)
    hand_sup = F.cross_entropy(model(**without_labels(lab)).logits, lab["labels"])
    torch.testing.assert_close(losses.loss_unsupervised, hand_unsup, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses.loss_supervised, hand_sup, rtol=1e-5, atol=1e-6)

    trainer.log({"loss": 0.0})
    logged = trainer.state.log_history[-1]
    assert logged["mask_rate"] == pytest.approx(mask.float().mean().item())
    correct = ((argmax == unl["labels"]) & mask).sum().item()
    assert logged["pseudo_label_accuracy"] == pytest.approx(correct / mask.sum().item())
    assert logged["loss_supervised"] == pytest.approx(hand_sup.item(), rel=1e-5)
    assert logged["loss_unsupervised"] == pytest.approx(hand_unsup.item(), rel=1e-5)


def test_unlabeled_labels_only_monitor(tmp_path, labeled, unlabeled):
    """Flipping the monitoring labels of the unlabeled set changes the logged accuracy, nothing else."""
    flipped = unlabeled.map(lambda row: {"labels": 1 - row["labels"]})
    runs = []
    for name, dataset in (("true", unlabeled), ("flipped", flipped), ("none", unlabeled.remove_columns("labels"))):
        trainer = make_trainer(
            tmp_path / name, tiny_bert(), labeled, dataset, mu=2, threshold=0.5,
            args={"max_steps": 1, "logging_steps": 1},
        )
        trainer.train()
        runs.append((trainer.model.state_dict(), trainer.state.log_history[0]))
    (true_state, true_log), (flip_state, flip_log), (none_state, none_log) = runs
    for key in true_state:
        assert torch.equal(true_state[key], flip_state[key]) and torch.equal(true_state[key], none_state[key])
    assert true_log["loss"] == flip_log["loss"] == none_log["loss"]
    assert true_log["mask_rate"] > 0
    assert true_log["pseudo_label_accuracy"] + flip_log["pseudo_label_accuracy"] == pytest.approx(1.0)
    assert "pseudo_label_accuracy" not in none_log


# ---- Supervised mode == Trainer ----


def test_supervised_mode_equals_plain_trainer(tmp_path, labeled):
    eight = labeled.select(range(8))
    args = dict(
        output_dir=str(tmp_path / "plain"), per_device_train_batch_size=8, max_steps=2, learning_rate=0.5,
        optim="sgd", lr_scheduler_type="constant", logging_steps=1, use_cpu=True, report_to="none",
        save_strategy="no", disable_tqdm=True, seed=0,
    )
    plain = Trainer(model=tiny_bert(), args=TrainingArguments(**args), train_dataset=eight)
    plain.train()
    ours = make_trainer(tmp_path, tiny_bert(), eight, mode="supervised",
                        args={**args, "output_dir": str(tmp_path / "ours")})
    ours.train()
    for step in (0, 1):
        assert ours.state.log_history[step]["loss"] == pytest.approx(plain.state.log_history[step]["loss"], rel=1e-6)
    plain_state, our_state = plain.model.state_dict(), ours.model.state_dict()
    assert not torch.equal(our_state["classifier.weight"], tiny_bert().state_dict()["classifier.weight"])
    for key in plain_state:
        torch.testing.assert_close(our_state[key], plain_state[key], rtol=1e-5, atol=1e-6)


# ---- EMA arithmetic ----


def test_avg_clustering_averages_teacher_and_model(tmp_path, labeled, unlabeled):
    model = tiny_bert()
    trainer = make_trainer(tmp_path, model, labeled, unlabeled)
    with torch.no_grad():
        for p in trainer.teacher.module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    weak = weak_view(without_labels(batch_of(unlabeled, 6)))
    with torch.no_grad():
        logits = model(**weak).logits
        teacher_logits = trainer.teacher.module(**weak).logits
    probs = trainer.pseudo_label_distribution(logits, weak, None)
    torch.testing.assert_close(probs, (logits.softmax(-1) + teacher_logits.softmax(-1)) / 2)
    assert not torch.allclose(probs, logits.softmax(-1), atol=1e-3)


def test_prediction_ema_arithmetic(tmp_path, labeled, unlabeled):
    trainer = make_trainer(tmp_path, tiny_bert(), labeled, unlabeled, avg_clustering_source="prediction_ema",
                           prediction_ema_momentum=0.75)
    assert trainer.prediction_ema.shape == (len(unlabeled), 2)
    index = torch.tensor([3, 5])
    p1 = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    p2 = torch.tensor([[0.5, 0.5], [0.6, 0.4]])
    p3 = torch.tensor([[0.3, 0.7], [1.0, 0.0]])
    torch.testing.assert_close(trainer._average_with_prediction_ema(p1, index), p1)  # first sight: no history
    torch.testing.assert_close(trainer.prediction_ema[index], p1)
    torch.testing.assert_close(trainer._average_with_prediction_ema(p2, index), (p1 + p2) / 2)
    ema = 0.75 * p1 + 0.25 * p2
    torch.testing.assert_close(trainer.prediction_ema[index], ema)
    torch.testing.assert_close(trainer._average_with_prediction_ema(p3, index), (ema + p3) / 2)
    others = torch.ones(len(unlabeled), dtype=torch.bool)
    others[index] = False
    assert trainer.prediction_ema[others].abs().sum() == 0 and not trainer.prediction_ema_seen[others].any()


@pytest.mark.parametrize("ema_warmup, momentum", [(True, 0.1), (False, 0.99)])
def test_teacher_follows_model_by_ema_after_a_step(tmp_path, labeled, unlabeled, ema_warmup, momentum):
    # The first update's momentum: min(0.99, 1/10) with warm-up, 0.99 without.
    model = tiny_bert()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(tmp_path, model, labeled, unlabeled, threshold=0.5, ema_warmup=ema_warmup,
                           args={"max_steps": 1})
    trainer.train()
    trained, teacher = trainer.model.state_dict(), trainer.teacher.state_dict()
    for key, value in initial.items():
        if value.is_floating_point():
            torch.testing.assert_close(teacher[key], momentum * value + (1 - momentum) * trained[key])
    assert not torch.equal(trained["classifier.weight"], initial["classifier.weight"])


@pytest.mark.parametrize("ema_warmup", [True, False])
def test_avg_clustering_keeps_confident_pseudo_labels_from_the_first_steps_with_warmup(
    tmp_path, labeled, unlabeled, ema_warmup
):
    """The model is confident (max softmax > 0.99) from the start; the teacher was copied before its head was, so
    it starts random. The teacher is first updated after step 1, so step 1 keeps nothing either way; from step 2
    on the warmed-up teacher (0.9 of the confident model) agrees and pseudo-labels pass tau = 0.95, while a
    teacher at momentum 0.99 is still near 50/50, and the average of 1 and ~0.5 stays under 0.95."""
    model = tiny_bert()
    trainer = make_trainer(tmp_path, model, labeled, unlabeled, mu=2, threshold=0.95, ema_warmup=ema_warmup,
                           args={"max_steps": 4, "logging_steps": 1, "learning_rate": 1e-4})
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([6.0, -6.0]))
        weak = weak_view(without_labels(batch_of(unlabeled, 8)))
        assert model(**weak).logits.softmax(-1).max(-1).values.min() > 0.99
        assert trainer.teacher.module(**weak).logits.softmax(-1).max(-1).values.max() < 0.6
    trainer.train()
    mask_rates = [entry["mask_rate"] for entry in trainer.state.log_history if "mask_rate" in entry]
    assert len(mask_rates) == 4 and mask_rates[0] == 0
    if ema_warmup:
        assert all(rate > 0 for rate in mask_rates[1:]), mask_rates
    else:
        assert mask_rates == [0, 0, 0, 0]


def test_evaluate_reports_the_ema_teacher_next_to_the_model(tmp_path, labeled, unlabeled):
    """``eval_ema_*`` sit in the same log entry and metrics as ``eval_*``, and equal a hand evaluation of the
    teacher's weights; the model's weights are back in place afterwards."""
    test = prom_dataset("test", 0, 24)

    def compute_metrics(prediction):
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    # Without warm-up the teacher stays near the initial weights, far from the trained model.
    trainer = make_trainer(tmp_path, tiny_bert(), labeled, unlabeled, threshold=0.5, eval_dataset=test,
                           compute_metrics=compute_metrics, ema_warmup=False,
                           args={"max_steps": 2, "learning_rate": 1e-2, "eval_strategy": "steps", "eval_steps": 2,
                                 "per_device_eval_batch_size": 8})
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert len(logged) == 1 and {"eval_accuracy", "eval_ema_loss", "eval_ema_accuracy"} <= set(logged[0])

    live = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    metrics = trainer.evaluate()
    batch = batch_of(test, len(test))
    with torch.no_grad():
        for prefix, model in (("eval", trainer.model.eval()), ("eval_ema", trainer.teacher.module)):
            logits = model(**without_labels(batch)).logits
            loss = F.cross_entropy(logits, batch["labels"]).item()
            accuracy = (logits.argmax(-1) == batch["labels"]).float().mean().item()
            assert metrics[f"{prefix}_loss"] == pytest.approx(loss, rel=1e-5)
            assert metrics[f"{prefix}_accuracy"] == pytest.approx(accuracy)
    assert metrics["eval_ema_loss"] != pytest.approx(metrics["eval_loss"], rel=1e-3)
    assert all(torch.equal(value, trainer.model.state_dict()[name]) for name, value in live.items())
    prediction = trainer.predict(test)
    assert prediction.metrics["test_ema_loss"] == pytest.approx(metrics["eval_ema_loss"], rel=1e-6)


# ---- Resume ----


def test_resume_restores_ema_state_and_unlabeled_stream(tmp_path, labeled, unlabeled):
    """A run resumed from step 2 ends where the uninterrupted 4-step run ends (default views; dropout, so the
    model's random stream must also be where it was)."""
    common = dict(
        avg_clustering_source="prediction_ema", threshold=0.5, mu=2, processing_class=TOKENIZER,
        weak_augment=None, strong_augment=None,
    )
    args = {"max_steps": 4, "save_strategy": "steps", "save_steps": 2, "output_dir": str(tmp_path / "full")}
    full = make_trainer(tmp_path, tiny_bert(dropout=0.1), labeled, unlabeled, args=args, **common)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert (checkpoint / "teacher_state.safetensors").is_file()
    assert full.prediction_ema_seen.sum() > 0

    resumed = make_trainer(tmp_path, tiny_bert(seed=7, dropout=0.1), labeled, unlabeled,
                           args={**args, "output_dir": str(tmp_path / "resumed")}, **common)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for ours, reference in ((resumed.model.state_dict(), full.model.state_dict()),
                            (resumed.teacher.state_dict(), full.teacher.state_dict())):
        assert_resumed_run_close(ours, reference)
    torch.testing.assert_close(resumed.prediction_ema, full.prediction_ema, **RESUMED_RUN_TOLERANCE)
    assert torch.equal(resumed.prediction_ema_seen, full.prediction_ema_seen)


# ---- Real data, every mode ----


def tiny_beacon():
    torch.manual_seed(0)
    return BeaconForSequenceClassification(BeaconConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    ))


def tiny_cnn():
    torch.manual_seed(0)
    return BaselineForSequenceClassification(BaselineConfig(
        architecture="cnn", embedding_dim=16, hidden_size=16, num_layers=2, num_labels=2,
    ))


@pytest.mark.parametrize(
    "mode,make_model", [("supervised", tiny_beacon), ("fixmatch", tiny_beacon), ("layermatch", tiny_beacon),
                        ("layermatch", tiny_cnn)]
)
def test_real_data_run(tmp_path, mode, make_model):
    labeled = prom_dataset("train", 0, 16, length=102)
    unlabeled = prom_dataset("train", 16, 80, length=102)
    test = prom_dataset("test", 0, 32, length=102)
    model = make_model()
    initial_classifier = model.classifier.weight.detach().clone()
    trainer = make_trainer(
        tmp_path, model, labeled, unlabeled if mode != "supervised" else None, mode=mode, mu=2, threshold=0.55,
        processing_class=TOKENIZER, weak_augment=None, strong_augment=None,
        args={"max_steps": 3, "logging_steps": 3, "learning_rate": 3e-3},
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["loss_supervised"])
    if mode == "supervised":
        assert "loss_unsupervised" not in logged and "mask_rate" not in logged
    else:
        assert math.isfinite(logged["loss_unsupervised"]) and 0.0 <= logged["mask_rate"] <= 1.0
        assert logged["loss"] == pytest.approx(logged["loss_supervised"] + logged["loss_unsupervised"], rel=1e-5)
    assert not torch.equal(model.classifier.weight.detach(), initial_classifier)
    metrics = trainer.evaluate(test)
    assert math.isfinite(metrics["eval_loss"])


# ---- Bad input ----


def test_bad_arguments_raise(tmp_path, labeled, unlabeled):
    with pytest.raises(ValueError, match="mode must be one of"):
        make_trainer(tmp_path, tiny_bert(), labeled, unlabeled, mode="meanteacher")
    with pytest.raises(ValueError, match="needs mode='layermatch'"):
        make_trainer(tmp_path, tiny_bert(), labeled, unlabeled, mode="fixmatch", grad_relu=True)
    with pytest.raises(ValueError, match="needs an `unlabeled_dataset`"):
        make_trainer(tmp_path, tiny_bert(), labeled, None)
    with pytest.raises(ValueError, match="fewer than one unlabeled step"):
        make_trainer(tmp_path, tiny_bert(), labeled, unlabeled.select(range(10)))
    with pytest.raises(ValueError, match="avg_clustering_source"):
        make_trainer(tmp_path, tiny_bert(), labeled, unlabeled, avg_clustering_source="kmeans")
    with pytest.raises(ValueError, match="processing_class"):
        make_trainer(tmp_path, tiny_bert(), labeled, unlabeled, weak_augment=None)
    regression = tiny_bert()
    regression.config.problem_type = "regression"
    with pytest.raises(ValueError, match="single-label"):
        make_trainer(tmp_path, regression, labeled, unlabeled)


# ---- Two processes ----


@pytest.mark.slow
def test_two_process_torchrun(tmp_path):
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(REPO_ROOT / "tests" / "scripts" / "layermatch_ddp.py"), str(tmp_path / "run"), str(out)],
        check=True, cwd=REPO_ROOT, env=env, timeout=300,
    )
    result = json.loads(out.read_text())
    assert result["world_size"] == 2
    assert result["distributed_type"] == "MULTI_CPU"
    assert result["unlabeled_batches_disjoint"] and result["unlabeled_batch_sizes"] == [6, 6]
    assert result["weights_equal_across_ranks"] and result["teacher_equal_across_ranks"]
    assert result["prediction_ema_equal_across_ranks"]
    assert result["prediction_ema_rows_seen"] == 3 * 2 * 6
    assert result["resumed_equals_full"]
    assert "mask_rate" in result["last_log"]
