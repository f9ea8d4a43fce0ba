"""The ACN prior network p(z | c~): an MLP on the neighbour's code giving, per latent
dimension, a mixture of M Gaussians (M = 1: a single Gaussian with the closed-form KL)."""

from __future__ import annotations

import torch
from torch import nn

import acnkit
from acnkit.distributions import DiagGaussian, MixtureDiagGaussian
from acnkit.interfaces import Prior

#: bounds of the prior's log standard deviations: std from 0.0009 to 7.4. Beyond them a
#: prior only blows up the KL (and the coder's quantisation); clamping leaves every value
#: inside unchanged.
LOG_STD_MIN, LOG_STD_MAX = -7.0, 2.0


class ACNPrior(Prior):
    """The paper's prior network: ``layers`` tanh layers of ``hidden`` units, the input
    skipping to every hidden layer and every hidden layer skipping to the output."""

    conditional = True

    def __init__(self, latent_dim: int, hidden: int = 512, layers: int = 3,
                 mixtures: int = 1, **_: object) -> None:
        super().__init__()
        if hidden < 1 or layers < 1 or mixtures < 1:
            raise ValueError("hidden, layers and mixtures must be >= 1")
        self.latent_dim, self.mixtures = latent_dim, mixtures
        self.hidden = nn.ModuleList(
            nn.Linear(latent_dim + (hidden if i else 0), hidden) for i in range(layers)
        )
        per_dim = 2 if mixtures == 1 else 3 * mixtures
        self.out = nn.Linear(hidden * layers, latent_dim * per_dim)

    def distribution(self, context, batch_size):
        h, skips = None, []
        for layer in self.hidden:
            h = torch.tanh(layer(context if h is None else torch.cat([context, h], 1)))
            skips.append(h)
        params = self.out(torch.cat(skips, 1))
        if self.mixtures == 1:
            mean, log_std = params.chunk(2, dim=1)
            return DiagGaussian(mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX))
        logits, means, log_stds = params.view(-1, self.latent_dim, 3, self.mixtures).unbind(2)
        return MixtureDiagGaussian(logits, means, log_stds.clamp(LOG_STD_MIN, LOG_STD_MAX))


@acnkit.hookimpl
def register_priors(register):
    register("acn", ACNPrior, description="ACN prior network conditioned on a neighbour's code")
