"""Exponential moving average (EMA) of a model's weights.

Shared by the EMA teacher of :class:`SelfDistillationTrainer` / :class:`LayerMatchTrainer` and by the
EMA option of :class:`IMWACallback`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """A frozen copy of ``model`` whose floating-point state follows ``model`` by EMA.

    ``update(model, momentum)`` sets ``ema = momentum * ema + (1 - momentum) * current`` for every
    parameter and floating-point buffer; integer buffers (counters, ids) are copied.

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

    @torch.no_grad()
    def update(self, model: nn.Module, momentum: float) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}.")
        current = model.state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = current[name].detach()
            if ema_value.is_floating_point():
                ema_value.lerp_(value.to(ema_value.dtype), 1.0 - momentum)
            else:
                ema_value.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state_dict)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)
