"""Diagonal Gaussians and per-dimension Gaussian mixtures over the latent space.

Written by hand rather than with ``torch.distributions`` because the engine needs only
``log_prob``, ``rsample`` and the closed-form Gaussian KL, batched, without argument
validation on the hot path; the tests check every formula against ``torch.distributions``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _normal_log_density(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    return -0.5 * ((z - mean) * torch.exp(-log_std)) ** 2 - log_std - _HALF_LOG_2PI


@runtime_checkable
class LatentDistribution(Protocol):
    """What a prior's ``distribution(context, B)`` must give, for a batch of B latents of
    d dimensions:

    - ``log_prob(z)``: log density of ``z`` (B, d), summed over dimensions: shape (B,),
      differentiable in the prior's parameters (training uses it for any prior that is not
      a :class:`DiagGaussian`: KL = log q(z|x) - log p(z) at the sampled z);
    - ``sample(generator)``: one draw, shape (B, d) (daydreaming, prior samples).

    A :class:`DiagGaussian` also gets the closed-form KL. ``acnkit compress`` codes only
    a :class:`DiagGaussian` (``mean``, ``log_std``: (B, d)) or a
    :class:`MixtureDiagGaussian` (``logits``, ``means``, ``log_stds``: (B, d, M)), since it
    needs their cumulative distribution per dimension."""

    def log_prob(self, z: Tensor) -> Tensor: ...

    def sample(self, generator: torch.Generator | None = None) -> Tensor: ...


@dataclass
class DiagGaussian:
    """N(mean, diag(exp(log_std)^2)); ``mean`` and ``log_std`` have shape (B, d)."""

    mean: Tensor
    log_std: Tensor

    def log_prob(self, z: Tensor) -> Tensor:
        """Log density of ``z`` (B, d), summed over dimensions: shape (B,)."""
        return _normal_log_density(z, self.mean, self.log_std).sum(-1)

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        """A reparameterised sample: gradients flow into ``mean`` and ``log_std``."""
        eps = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + torch.exp(self.log_std) * eps

    sample = rsample


@dataclass
class MixtureDiagGaussian:
    """Per latent dimension, a mixture of M Gaussians: parameters have shape (B, d, M)."""

    logits: Tensor
    means: Tensor
    log_stds: Tensor

    def log_prob(self, z: Tensor) -> Tensor:
        z = z.unsqueeze(-1)
        log_w = torch.log_softmax(self.logits, dim=-1)
        per_dim = torch.logsumexp(log_w + _normal_log_density(z, self.means, self.log_stds), -1)
        return per_dim.sum(-1)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        probs = torch.softmax(self.logits, dim=-1)
        b, d, m = probs.shape
        comp = torch.multinomial(probs.reshape(-1, m), 1, generator=generator).reshape(b, d, 1)
        mean = self.means.gather(-1, comp).squeeze(-1)
        log_std = self.log_stds.gather(-1, comp).squeeze(-1)
        return DiagGaussian(mean, log_std).rsample(generator)


def kl_diag_gaussians(q: DiagGaussian, p: DiagGaussian) -> Tensor:
    """KL(q || p) in nats, closed form, summed over dimensions: shape (B,)."""
    var_ratio = torch.exp(2 * (q.log_std - p.log_std))
    mean_term = ((q.mean - p.mean) * torch.exp(-p.log_std)) ** 2
    return 0.5 * (var_ratio + mean_term - 1).sum(-1) + (p.log_std - q.log_std).sum(-1)
