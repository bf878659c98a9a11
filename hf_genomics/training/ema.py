"""Exponential moving average (EMA) of a model's weights.

Shared by the EMA teacher of :class:`SelfDistillationTrainer` / :class:`LayerMatchTrainer` and by the
EMA option of :class:`IMWACallback`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools

import torch
from torch import nn

# Key of the update count in :meth:`ModelEMA.state_dict` (the warm-up depends on it, so checkpoints keep it).
NUM_UPDATES_KEY = "ema_num_updates"


def module_device(module: nn.Module) -> torch.device | None:
    """The one device that holds all of ``module``'s parameters and buffers; ``None`` if they are spread over
    several (a ``device_map`` model) or there are none."""
    devices = {tensor.device for tensor in itertools.chain(module.parameters(), module.buffers())}
    return devices.pop() if len(devices) == 1 else None


class ModelEMA:
    """A frozen copy of ``model`` whose floating-point state follows ``model`` by EMA.

    ``update(model, momentum)`` sets ``ema = momentum * ema + (1 - momentum) * current`` for every
    parameter and floating-point buffer, tied weights once; integer buffers (counters, ids) are copied.

    The copy keeps float32 (or wider) master weights even when ``model`` holds bfloat16/float16 ones: with a
    momentum near 1 the update ``(1 - momentum) * (current - ema)`` is below half-precision resolution and a
    half-precision EMA would not move. Mixed precision (``TrainingArguments(bf16=True)``) autocasts
    computations, never these weights. Before each update the copy moves to ``model``'s device if ``model``
    sits on one device (e.g. it was placed after the copy was made).

    With ``warmup=True`` the update after ``t`` earlier ones uses ``min(momentum, (1 + t) / (10 + t))``, the
    ``num_updates`` rule of TensorFlow's ``ExponentialMovingAverage``: 0.1, 0.18, 0.25, ... so the copy leaves its
    initial weights within the first steps instead of keeping ``momentum^t`` of them. :meth:`state_dict` holds the
    update count with the weights (key ``ema_num_updates``), so a resumed run continues the warm-up exactly.

    >>> import torch
    >>> net = torch.nn.Linear(1, 1, bias=False)
    >>> _ = net.weight.data.fill_(1.0)
    >>> ema = ModelEMA(net)
    >>> _ = net.weight.data.fill_(3.0)
    >>> _ = ema.update(net, momentum=0.75)
    >>> round(ema.module.weight.item(), 4)
    1.5
    >>> warm = ModelEMA(net, warmup=True)
    >>> _ = net.weight.data.fill_(13.0)
    >>> warm.update(net, momentum=0.75)  # the first update moves 90 % of the way
    0.1
    >>> round(warm.module.weight.item(), 4)
    12.0
    """

    def __init__(self, model: nn.Module, warmup: bool = False):
        self.warmup = warmup
        self.num_updates = 0
        self.module = copy.deepcopy(model)
        self.module.eval()
        self.module.requires_grad_(False)
        for tensor in itertools.chain(self.module.parameters(), self.module.buffers()):
            if tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < 32:
                tensor.data = tensor.data.float()

    @torch.no_grad()
    def update(self, model: nn.Module, momentum: float) -> float:
        """Move the copy towards ``model``; returns the momentum used (``momentum`` or its warm-up cap)."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}.")
        if self.warmup:
            momentum = min(momentum, (1 + self.num_updates) / (10 + self.num_updates))
        device = module_device(model)
        if device is not None:
            self.module.to(device)
        current = model.state_dict()
        updated = set()
        for name, ema_value in self.module.state_dict().items():
            # Tied weights (an MLM decoder and the input embeddings) appear under several names: update them once,
            # or their momentum would be m^2.
            if ema_value.numel() and ema_value.data_ptr() in updated:
                continue
            updated.add(ema_value.data_ptr())
            value = current[name].detach().to(device=ema_value.device, dtype=ema_value.dtype)
            if ema_value.is_floating_point():
                ema_value.lerp_(value, 1.0 - momentum)
            else:
                ema_value.copy_(value)
        self.num_updates += 1
        return momentum

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The copy's ``state_dict`` plus the update count under ``ema_num_updates``."""
        return {**self.module.state_dict(), NUM_UPDATES_KEY: torch.tensor(self.num_updates)}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        state_dict = dict(state_dict)
        num_updates = state_dict.pop(NUM_UPDATES_KEY, None)
        if num_updates is None and self.warmup:
            raise ValueError(f"The EMA state has no `{NUM_UPDATES_KEY}` (it predates the EMA warm-up), so the warm-up "
                             "cannot continue where it was; resume with the warm-up off.")
        self.module.load_state_dict(state_dict)
        if num_updates is not None:
            self.num_updates = int(num_updates)

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module):
        """Load the EMA weights into ``model`` (which it copies) for the ``with`` block, then restore ``model``'s own:
        the EMA is evaluated with the very ``Trainer``, data and metrics that evaluate ``model``."""
        live = {name: value.clone() for name, value in model.state_dict().items()}
        model.load_state_dict(self.module.state_dict())
        try:
            yield model
        finally:
            model.load_state_dict(live)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)
