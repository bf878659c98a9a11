"""Exponential moving average (EMA) of a model's weights.

Shared by the EMA teacher of :class:`SelfDistillationTrainer` / :class:`LayerMatchTrainer` and by the
EMA option of :class:`IMWACallback`.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


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

    >>> import torch
    >>> net = torch.nn.Linear(1, 1, bias=False)
    >>> _ = net.weight.data.fill_(1.0)
    >>> ema = ModelEMA(net)
    >>> _ = net.weight.data.fill_(3.0)
    >>> ema.update(net, momentum=0.75)
    >>> round(ema.module.weight.item(), 4)
    1.5
    """

    def __init__(self, model: nn.Module):
        self.module = copy.deepcopy(model)
        self.module.eval()
        self.module.requires_grad_(False)
        for tensor in itertools.chain(self.module.parameters(), self.module.buffers()):
            if tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < 32:
                tensor.data = tensor.data.float()

    @torch.no_grad()
    def update(self, model: nn.Module, momentum: float) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}.")
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

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state_dict)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)
