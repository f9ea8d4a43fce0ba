"""Categorical likelihood: a softmax over the levels of every subpixel, the simplest exact
model of discrete pixels (more parameters than a logistic mixture, no assumption of shape).

Parameters a pixel of C channels: C * L logits, channel by channel (L = levels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import acnkit
from acnkit.interfaces import Loss, to_levels


class CategoricalLoss(Loss):
    def __init__(self, levels: int = 256, channels: int = 1) -> None:
        if levels < 2 or channels < 1:
            raise ValueError(f"categorical needs levels >= 2 and channels >= 1, got "
                             f"{levels}, {channels}")
        self.levels, self.channels = levels, channels

    def param_channels(self, channels: int) -> int:
        return channels * self.levels

    def _logits(self, params: Tensor) -> Tensor:
        """(B, C, H, W, L)."""
        b, _, h, w = params.shape
        return params.reshape(b, self.channels, self.levels, h, w).movedim(2, -1)

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        log_p = F.log_softmax(self._logits(params), -1)
        level = to_levels(x, self.levels)
        return -log_p.gather(-1, level[..., None]).flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        values = torch.linspace(0, 1, self.levels, device=params.device)
        return (torch.softmax(self._logits(params), -1) * values).sum(-1)

    def probabilities(self, params: Tensor, x: Tensor) -> Tensor:
        return torch.softmax(self._logits(params).double(), -1)


@acnkit.hookimpl
def register_losses(register):
    register("categorical", CategoricalLoss,
             description="a softmax over the levels of every subpixel (exact, many parameters)")
