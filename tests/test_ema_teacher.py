import math

import pytest
import torch
from torch import nn
from transformers import TrainingArguments

from hf_genomics import EMATeacherTrainer, ModelEMA
from hf_genomics.training.trainer_teacher import TEACHER_STATE_NAME, cosine_momentum


class _Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x, labels=None):
        self.steps += 1
        y = self.linear(x).squeeze(-1)
        return {"loss": ((y - labels) ** 2).mean(), "logits": y}


def test_model_ema_matches_hand_computation():
    net = _Regressor()
    ema = ModelEMA(net)
    start = net.linear.weight.detach().clone()
    with torch.no_grad():
        net.linear.weight.add_(2.0)
        net.steps.fill_(7)
    ema.update(net, momentum=0.9)
    torch.testing.assert_close(ema.module.linear.weight, 0.9 * start + 0.1 * (start + 2.0))
    assert ema.module.steps.item() == 7  # integer buffers are copied, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="momentum"):
        ema.update(net, momentum=1.5)


def test_model_ema_moves_tied_weights_once():
    """A masked-LM head tied to the input embeddings (and its bias): at momentum 0.5 every weight moves exactly half
    way, tied ones included (updated once per name, they moved 3/4: momentum m^2)."""
    from hf_genomics import BeaconConfig, BeaconForMaskedLM

    torch.manual_seed(0)
    model = BeaconForMaskedLM(BeaconConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2,
                                           intermediate_size=32))
    assert model.cls.predictions.decoder.weight is model.beacon.embeddings.word_embeddings.weight
    ema = ModelEMA(model)
    start = {name: value.clone() for name, value in ema.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model, momentum=0.5)
    for name, value in ema.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, start[name] + 0.5, rtol=0, atol=1e-6, msg=name)


def test_cosine_momentum_endpoints():
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(1.0 - 0.004 * (math.cos(math.pi / 2) + 1) / 2)


def _trainer(tmp_path, max_steps):
    torch.manual_seed(0)
    data = [{"x": torch.randn(4), "labels": torch.tensor(1.0)} for _ in range(64)]
    args = TrainingArguments(str(tmp_path), max_steps=max_steps, per_device_train_batch_size=8, save_steps=3,
                             report_to=[], use_cpu=True, disable_tqdm=True, seed=0)
    return EMATeacherTrainer(model=_Regressor(), args=args, train_dataset=data, teacher_momentum_base=0.5)


def test_teacher_follows_each_step_and_resumes_exactly(tmp_path):
    full = _trainer(tmp_path / "full", 6)
    before = full.teacher.module.linear.weight.detach().clone()
    full.train()
    assert not torch.equal(before, full.teacher.module.linear.weight)
    assert (tmp_path / "full" / "checkpoint-3" / TEACHER_STATE_NAME).is_file()

    resumed = _trainer(tmp_path / "full", 6)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    torch.testing.assert_close(resumed.teacher.module.linear.weight, full.teacher.module.linear.weight)
    torch.testing.assert_close(resumed.model.linear.weight, full.model.linear.weight)
