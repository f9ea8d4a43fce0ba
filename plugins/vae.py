"""The plain VAE prior N(0, I), with the closed-form KL."""

from __future__ import annotations

import torch

import acnkit
from acnkit.distributions import DiagGaussian
from acnkit.interfaces import Prior


class StandardNormalPrior(Prior):
    conditional = False

    def __init__(self, latent_dim: int, **_: object) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("_zero", torch.zeros(()))

    def distribution(self, context, batch_size):
        zeros = self._zero.expand(batch_size, self.latent_dim)
        return DiagGaussian(zeros, zeros)


@acnkit.hookimpl
def register_priors(register):
    register("vae", StandardNormalPrior, description="unconditional N(0, I) prior")
