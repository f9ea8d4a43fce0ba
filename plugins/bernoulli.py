"""Bernoulli likelihood on binarized pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import acnkit
from acnkit.interfaces import Loss


class BernoulliLoss(Loss):
    binary = True  # mean() is P(pixel = 1): the codec can code it

    def nll(self, params, x):
        per_pixel = F.binary_cross_entropy_with_logits(params, x, reduction="none")
        return per_pixel.flatten(1).sum(1)

    def mean(self, params):
        return torch.sigmoid(params)


@acnkit.hookimpl
def register_losses(register):
    register("bernoulli", BernoulliLoss, description="Bernoulli on binarized pixels (nats)")
