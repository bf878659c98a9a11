"""Every trainer a few steps with ``TrainingArguments(bf16=True)`` on the CPU (bfloat16 autocast): the steps run,
losses are finite, master weights stay float32, EMA teachers / IMWA replicas / averages are float32 on the model's
device, and forwards (the student's and the teacher's) really ran under autocast."""

import math

import pytest
import torch
from torch import nn
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator

from hf_genomics import (
    BeaconConfig,
    BeaconForMaskedLM,
    BeaconForSequenceClassification,
    DataCollatorForRandomMask,
    IMWACallback,
    KmerTokenizer,
    LayerMatchTrainer,
    ModelEMA,
    RandomMaskCallback,
    SelfDistillationTrainer,
)
from hf_genomics.data.pretraining_corpus import build_pretraining_dataset
from scripts import imwa_ddp
from scripts.layermatch_fixtures import REPO_ROOT, TOKENIZER, prom_dataset, strong_view, tiny_bert, weak_view

LAMBDA = REPO_ROOT / "data" / "lambda_phage" / "lambda_virus.fa.gz"


def bf16_args(output_dir, **overrides) -> TrainingArguments:
    settings = dict(
        output_dir=str(output_dir), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1,
        bf16=True, use_cpu=True, save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
    )  # fmt: skip
    return TrainingArguments(**{**settings, **overrides})


class OutputDtypes:
    """Records the output dtype of every call of the given modules, to show whether autocast was on."""

    def __init__(self, **modules: nn.Module):
        self.seen: dict[str, list[torch.dtype]] = {name: [] for name in modules}
        for name, module in modules.items():
            module.register_forward_hook(lambda m, i, output, name=name: self.seen[name].append(output.dtype))


def train_losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def assert_trained_in_bf16(trainer, dtypes: OutputDtypes, steps: int = 3) -> None:
    assert trainer.state.global_step == steps
    losses = train_losses(trainer)
    assert len(losses) == steps and all(math.isfinite(loss) for loss in losses)
    for name, seen in dtypes.seen.items():
        assert seen and set(seen) == {torch.bfloat16}, (name, seen)
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # autocast never casts the master weights


def assert_float32_on(tensors, device: torch.device) -> None:
    tensors = list(tensors)
    assert tensors
    for tensor in tensors:
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32 and tensor.device == device, (tensor.dtype, tensor.device)


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def test_model_ema_keeps_float32_master_weights_of_a_bfloat16_model():
    net = nn.Linear(1, 1, bias=False).to(torch.bfloat16)
    net.weight.data.fill_(1.0)
    ema = ModelEMA(net)
    assert ema.module.weight.dtype == torch.float32 and net.weight.dtype == torch.bfloat16
    net.weight.data.fill_(2.0)
    ema.update(net, momentum=0.999)
    # 1.001 is below bfloat16's resolution at 1 (2^-7): a bfloat16 EMA would have stayed at exactly 1.
    assert ema.module.weight.item() == pytest.approx(1.001, abs=1e-6)


def test_layermatch_in_bf16(tmp_path):
    labeled, unlabeled = prom_dataset("train", 0, 16), prom_dataset("train", 100, 164)
    trainer = LayerMatchTrainer(
        model=tiny_bert(), args=bf16_args(tmp_path), train_dataset=labeled, unlabeled_dataset=unlabeled,
        weak_augment=weak_view, strong_augment=strong_view, mu=2, threshold=0.01, teacher_momentum_base=0.5,
    )  # fmt: skip
    assert trainer.grad_relu and trainer.avg_clustering and trainer.avg_clustering_source == "ema_teacher"
    teacher_before = trainer.teacher.module.classifier.weight.clone()
    dtypes = OutputDtypes(
        student=trainer.model.bert.encoder.layer[0].attention.self.query,
        teacher=trainer.teacher.module.bert.encoder.layer[0].attention.self.query,
    )
    trainer.train()
    assert_trained_in_bf16(trainer, dtypes)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(math.isfinite(entry["loss_unsupervised"]) and entry["mask_rate"] == 1.0 for entry in logs)
    assert_float32_on(trainer.teacher.module.parameters(), device_of(trainer.model))
    assert not torch.equal(trainer.teacher.module.classifier.weight, teacher_before)

    # Grad-ReLU under autocast (the model's forward is autocast from train() on): the strong-view logits come
    # from the detached classifier, so L_u gives the classifier exactly zero gradient and the encoder some.
    model = trainer.model
    lab = default_data_collator([labeled[i] for i in range(4)])
    unl = default_data_collator([unlabeled[i] for i in range(8)])
    losses = trainer.compute_semi_supervised_losses(model, lab, unl)
    assert losses.loss_unsupervised.dtype == torch.float32 and losses.mask.all()
    query = model.bert.encoder.layer[0].attention.self.query.weight
    grads = torch.autograd.grad(losses.loss_unsupervised, [model.classifier.weight, model.classifier.bias, query],
                                allow_unused=True, materialize_grads=True)
    assert torch.count_nonzero(grads[0]) == 0 and torch.count_nonzero(grads[1]) == 0
    assert grads[2].abs().sum() > 0


def tiny_mlm(vocab_size: int, pad_token_id: int) -> BeaconForMaskedLM:
    torch.manual_seed(0)
    config = BeaconConfig(
        vocab_size=vocab_size, pad_token_id=pad_token_id, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    return BeaconForMaskedLM(config)


def promoter_windows(n: int = 32):
    rows = prom_dataset("train", 0, n, length=40)
    return rows.remove_columns("labels")


def test_self_distillation_in_bf16(tmp_path):
    trainer = SelfDistillationTrainer(
        tiny_mlm(len(TOKENIZER), TOKENIZER.pad_token_id), bf16_args(tmp_path, per_device_train_batch_size=8),
        train_dataset=promoter_windows(), data_collator=DataCollatorWithPadding(TOKENIZER), processing_class=TOKENIZER,
        projection_dim=16, teacher_momentum_base=0.5,
    )  # fmt: skip
    teacher = trainer.teacher.module
    head_before = teacher.head.last_layer.weight.clone()
    dtypes = OutputDtypes(student=trainer.model.head.mlp[0], teacher=teacher.head.mlp[0],
                          teacher_encoder=teacher.model.beacon.encoder.layer[0].attention.self.query)
    trainer.train()
    assert_trained_in_bf16(trainer, dtypes)
    device = device_of(trainer.model)
    assert_float32_on(teacher.parameters(), device)
    assert_float32_on([trainer.center], device)
    assert trainer.model.head.mlp[0].weight.dtype == torch.float32
    assert not torch.equal(teacher.head.last_layer.weight, head_before)
    assert all(not p.requires_grad for p in teacher.parameters())


def test_self_distillation_of_a_bfloat16_encoder_keeps_a_float32_head_and_teacher(tmp_path):
    # No autocast here: the encoder itself is bfloat16 (a model loaded with dtype=torch.bfloat16).
    encoder = tiny_mlm(len(TOKENIZER), TOKENIZER.pad_token_id).to(torch.bfloat16)
    trainer = SelfDistillationTrainer(
        encoder, bf16_args(tmp_path, bf16=False, max_steps=2, per_device_train_batch_size=8),
        train_dataset=promoter_windows(), data_collator=DataCollatorWithPadding(TOKENIZER), processing_class=TOKENIZER,
        projection_dim=16, teacher_momentum_base=0.5,
    )  # fmt: skip
    trainer.train()
    assert trainer.state.global_step == 2 and all(math.isfinite(loss) for loss in train_losses(trainer))
    model = trainer.model
    assert model.model.beacon.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    assert {p.dtype for p in model.head.parameters()} == {torch.float32}
    assert_float32_on(trainer.teacher.module.parameters(), device_of(model))


def test_imwa_in_bf16(tmp_path):
    trainer = imwa_ddp.make_trainer(tmp_path, max_steps=4, bf16=True, logging_strategy="steps", logging_steps=1)
    imwa = IMWACallback(trainer, num_models=2, num_episodes=2, ema_decay=0.5)
    trainer.add_callback(imwa)
    model = trainer.model
    dtypes = OutputDtypes(encoder=next(m for m in model.modules() if isinstance(m, nn.Conv1d)),
                          classifier=model.classifier)
    trainer.train()
    assert_trained_in_bf16(trainer, dtypes, steps=4)
    device = device_of(model)
    replicas = [imwa.replica_state(r) for r in range(2)]
    for replica in replicas:
        assert_float32_on(replica.values(), device)
    assert_float32_on(imwa.ema.state_dict().values(), device)
    assert_float32_on(imwa._mean_model.parameters(), device)
    # The last step is an episode end: both replicas hold the same average, which the model holds too.
    for name, value in replicas[0].items():
        assert torch.equal(value, replicas[1][name]), name
    torch.testing.assert_close(model.classifier.weight, replicas[0]["classifier.weight"], rtol=0, atol=0)
    assert not torch.equal(imwa.ema.module.classifier.weight, model.classifier.weight)


def test_randommask_pretraining_in_bf16(tmp_path):
    tokenizer = KmerTokenizer(k=3, stride=1)
    chunks = build_pretraining_dataset([LAMBDA], max_length=64, min_length=32, validation_fraction=0.0)
    train = chunks.select(range(48)).map(lambda rows: tokenizer(rows["sequence"]), batched=True,
                                         remove_columns=["sequence", "source"])
    collator = DataCollatorForRandomMask(tokenizer, mlm_probability=0.05, seed=0)
    model = tiny_mlm(len(tokenizer), tokenizer.pad_token_id)
    trainer = Trainer(model=model, args=bf16_args(tmp_path, per_device_train_batch_size=8), train_dataset=train,
                      data_collator=collator, callbacks=[RandomMaskCallback(collator)])
    dtypes = OutputDtypes(query=model.beacon.encoder.layer[0].attention.self.query)
    trainer.train()
    assert_trained_in_bf16(trainer, dtypes)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(0 < entry["randommask_masked_fraction"] < 1 for entry in logs)


def test_beacon_fine_tuning_in_bf16(tmp_path):
    train, test = prom_dataset("train", 0, 16, length=40), prom_dataset("test", 0, 8, length=40)
    torch.manual_seed(0)
    config = BeaconConfig(
        vocab_size=len(TOKENIZER), pad_token_id=TOKENIZER.pad_token_id, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, num_labels=2,
    )  # fmt: skip
    model = BeaconForSequenceClassification(config)
    before = model.classifier.weight.clone()
    trainer = Trainer(model=model, args=bf16_args(tmp_path), train_dataset=train,
                      data_collator=DataCollatorWithPadding(TOKENIZER))
    dtypes = OutputDtypes(query=model.beacon.encoder.layer[0].attention.self.query)
    trainer.train()
    assert_trained_in_bf16(trainer, dtypes)
    assert not torch.equal(model.classifier.weight, before)
    prediction = trainer.predict(test)
    assert prediction.predictions.dtype.name == "float32" and prediction.predictions.shape == (8, 2)
    assert math.isfinite(prediction.metrics["test_loss"])
