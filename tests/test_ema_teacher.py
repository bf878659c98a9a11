import math
import shutil

import pytest
import torch
from torch import nn
from transformers import TrainingArguments

from hf_genomics import EMATeacherTrainer, ModelEMA
from hf_genomics.training.ema import NUM_UPDATES_KEY
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


def test_model_ema_warmup_moves_by_the_formula():
    """Update t (t updates before it) moves the copy 1 - min(m, (1 + t) / (10 + t)) of the way to the model; the
    count travels in the state dict, so a copy loaded from it continues the warm-up."""
    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    ema = ModelEMA(net, warmup=True)
    fractions = []
    for t in range(11):
        before = ema.module.weight.item()
        with torch.no_grad():
            net.weight.fill_(100.0 * (t + 1))
        momentum = ema.update(net, momentum=0.5)
        fractions.append((ema.module.weight.item() - before) / (net.weight.item() - before))
        assert fractions[-1] == pytest.approx(1 - momentum, rel=1e-6)
    assert fractions[0] == pytest.approx(0.9, rel=1e-6)  # t = 0: 1 - 1/10
    assert fractions[1] == pytest.approx(9 / 11, rel=1e-6)  # t = 1: 1 - 2/11
    assert fractions[5] == pytest.approx(0.6, rel=1e-6)  # t = 5: 1 - 6/15
    assert fractions[10] == pytest.approx(0.5, rel=1e-6)  # t = 10: 11/20 > 0.5, the momentum itself
    state = ema.state_dict()
    assert state[NUM_UPDATES_KEY].item() == 11

    resumed = ModelEMA(net, warmup=True)
    resumed.load_state_dict(state)
    assert resumed.update(net, momentum=0.99) == pytest.approx(12 / 21)  # t = 11, not a fresh t = 0
    plain = ModelEMA(net)
    assert plain.update(net, momentum=0.5) == 0.5
    del state[NUM_UPDATES_KEY]
    plain.load_state_dict(state)  # the count only matters with warm-up
    with pytest.raises(ValueError, match=NUM_UPDATES_KEY):
        resumed.load_state_dict(state)


def test_cosine_momentum_endpoints():
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(1.0 - 0.004 * (math.cos(math.pi / 2) + 1) / 2)


def _trainer(tmp_path, max_steps, ema_warmup=False):
    torch.manual_seed(0)
    data = [{"x": torch.randn(4), "labels": torch.tensor(1.0)} for _ in range(64)]
    args = TrainingArguments(str(tmp_path), max_steps=max_steps, per_device_train_batch_size=8, save_steps=3,
                             report_to=[], use_cpu=True, disable_tqdm=True, seed=0)
    return EMATeacherTrainer(model=_Regressor(), args=args, train_dataset=data, teacher_momentum_base=0.5,
                             ema_warmup=ema_warmup)


@pytest.mark.parametrize("ema_warmup", [False, True])
def test_teacher_follows_each_step_and_resumes_exactly(tmp_path, ema_warmup):
    # With warm-up, a resumed run that restarted the count would use momentum 0.1 at step 4 instead of 4/13.
    full = _trainer(tmp_path / "full", 6, ema_warmup)
    before = full.teacher.module.linear.weight.detach().clone()
    full.train()
    assert not torch.equal(before, full.teacher.module.linear.weight)
    assert (tmp_path / "full" / "checkpoint-3" / TEACHER_STATE_NAME).is_file()
    assert full.teacher.num_updates == 6
    assert full.last_teacher_momentum == (0.5 if not ema_warmup else pytest.approx(6 / 15))

    resumed = _trainer(tmp_path / "full", 6, ema_warmup)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert resumed.teacher.num_updates == 6
    torch.testing.assert_close(resumed.teacher.module.linear.weight, full.teacher.module.linear.weight)
    torch.testing.assert_close(resumed.model.linear.weight, full.model.linear.weight)


def test_resume_finds_the_teacher_from_true_or_a_path_and_refuses_a_checkpoint_without_it(tmp_path):
    full = _trainer(tmp_path / "full", 6)
    full.train()
    shutil.rmtree(tmp_path / "full" / "checkpoint-6")
    latest = _trainer(tmp_path / "full", 6)
    latest.train(resume_from_checkpoint=True)  # checkpoint-3
    assert latest.teacher.num_updates == 6
    torch.testing.assert_close(latest.teacher.module.linear.weight, full.teacher.module.linear.weight)
    from_path = _trainer(tmp_path / "elsewhere", 6)
    from_path.train(resume_from_checkpoint=tmp_path / "full" / "checkpoint-3")
    assert from_path.teacher.num_updates == 6
    torch.testing.assert_close(from_path.teacher.module.linear.weight, full.teacher.module.linear.weight)
    (tmp_path / "full" / "checkpoint-3" / TEACHER_STATE_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=f"checkpoint-3 has no {TEACHER_STATE_NAME}"):
        _trainer(tmp_path / "full", 6).train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
