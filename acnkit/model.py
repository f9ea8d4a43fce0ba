"""The networks of a run, split at the one point where the associative memory steps in.

A training step is ``encode`` (the encoder: x -> q(z|x)), then the memory turns the codes
into prior contexts, then ``cost`` (:class:`CostModel`: sample z, reconstruction and KL
nats). Each half is its own module so that DistributedDataParallel can wrap both.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .distributions import DiagGaussian
from .interfaces import Decoder, Encoder, Loss, Prior


class CostModel(nn.Module):
    """Decoder, prior and likelihood: each datum's cost in nats given its posterior."""

    def __init__(self, decoder: Decoder, prior: Prior, loss: Loss) -> None:
        super().__init__()
        self.decoder, self.prior, self.loss = decoder, prior, loss

    def forward(self, x: Tensor, mean: Tensor, log_std: Tensor, context: Tensor | None,
                noise: torch.Generator | None = None,
                eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Reconstruction -log p(x|z) and KL(q(z|x) || p(z|context)) nats per datum, both at
        the same reparameterised sample z ~ q(z|x) = N(mean, exp(log_std)^2): drawn with
        ``noise``, or z = mean + std * ``eps`` for standard normal numbers drawn already."""
        posterior = DiagGaussian(mean, log_std)
        z = posterior.rsample(noise) if eps is None else mean + torch.exp(log_std) * eps
        recon = self.decoder.nll(z, x, self.loss)  # teacher-forced if autoregressive
        kl = self.prior.kl(posterior, z, context)
        return recon, kl


class CompressionModel(nn.Module):
    """Encoder, decoder and prior of a run (one module for parameters, modes and state)."""

    def __init__(self, encoder: Encoder, decoder: Decoder, prior: Prior, loss: Loss) -> None:
        super().__init__()
        self.encoder = encoder
        self.cost = CostModel(decoder, prior, loss)

    @property
    def decoder(self) -> Decoder:
        return self.cost.decoder

    @property
    def prior(self) -> Prior:
        return self.cost.prior

    @property
    def loss(self) -> Loss:
        return self.cost.loss
