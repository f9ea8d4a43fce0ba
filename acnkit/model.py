"""The networks of a run as one module, so that DistributedDataParallel can wrap them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .interfaces import Decoder, Encoder, Loss, Prior


class CompressionModel(nn.Module):
    """Encoder, decoder and prior; ``forward`` gives each datum's cost in nats."""

    def __init__(self, encoder: Encoder, decoder: Decoder, prior: Prior, loss: Loss) -> None:
        super().__init__()
        self.encoder, self.decoder, self.prior = encoder, decoder, prior
        self.loss = loss

    def forward(self, x: Tensor, neighbours: Callable[[Tensor], Tensor] | None,
                noise: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Reconstruction and KL nats per datum of ``x``. ``neighbours`` maps the batch's
        codes (detached: no gradient flows into the store) to the prior's context."""
        posterior = self.encoder(x)
        context = neighbours(posterior.mean.detach()) if neighbours else None
        z = posterior.rsample(noise)
        recon = self.loss.nll(self.decoder(z), x)
        kl = self.prior.kl(posterior, z, context)
        return recon, kl
