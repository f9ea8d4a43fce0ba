"""Kits of priors: what training needs, and what ``acnkit compress`` needs of one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .common import _batch_independent, _gradients_reach


def check_prior(factory: Callable[..., torch.nn.Module], latent_dim: int = 6,
                samples: int = 20000) -> None:
    """A prior ``factory(latent_dim)`` gives a :class:`~acnkit.interfaces.Prior` whose
    ``distribution(context, B)`` has ``log_prob`` (B,) and ``sample`` (B, d), both finite
    (``context``: (B, d) codes when ``conditional``, else None); its ``kl`` is finite, has
    shape (B,), equals the closed form of ``torch.distributions`` for a Gaussian prior and,
    for any other, averages to KL(q || p) estimated independently by Monte Carlo; a row's
    log_prob does not depend on the other rows of its batch; the gradient reaches its
    parameters."""
    from torch import distributions as D

    from ..distributions import DiagGaussian
    from ..interfaces import Prior

    g = torch.Generator().manual_seed(0)
    prior = factory(latent_dim)
    assert isinstance(prior, Prior), f"the factory gave a {type(prior).__name__}, not a Prior"
    b = 4
    context = torch.randn(b, latent_dim, generator=g) if prior.conditional else None
    q = DiagGaussian(torch.randn(b, latent_dim, generator=g),
                     0.3 * torch.randn(b, latent_dim, generator=g) - 0.5)
    with torch.no_grad():
        p = prior.distribution(context, b)
        z = p.sample(g)
        assert tuple(z.shape) == (b, latent_dim), f"sample has shape {tuple(z.shape)}"
        logp = p.log_prob(z)
        assert tuple(logp.shape) == (b,), f"log_prob has shape {tuple(logp.shape)}, not ({b},)"
        assert torch.isfinite(z).all() and torch.isfinite(logp).all(), "NaN or inf from the prior"
        prior.eval()  # the codec and the evaluation batch differently from training
        if context is None:
            _batch_independent(lambda zz: prior.distribution(None, len(zz)).log_prob(zz), z,
                               "the prior's log_prob")
        else:
            _batch_independent(lambda c, zz: prior.distribution(c, len(c)).log_prob(zz),
                               (context, z), "the prior's log_prob")
        prior.train()
        zq = q.rsample(g)
        kl = prior.kl(q, zq, context)
        assert tuple(kl.shape) == (b,) and torch.isfinite(kl).all(), "kl is not finite (B,)"
        # KL(q || p) by Monte Carlo with draws of its own, independent of prior.kl: the
        # batch repeated ``samples`` times, in one call
        rep = DiagGaussian(q.mean.repeat(samples, 1), q.log_std.repeat(samples, 1))
        ctx = None if context is None else context.repeat(samples, 1)
        p_rep = prior.distribution(ctx, b * samples)
        draws = rep.rsample(g)
        log_ratio = (rep.log_prob(draws) - p_rep.log_prob(draws)).view(samples, b)
        mc, spread = log_ratio.mean(0), log_ratio.std(0)
        if isinstance(p, DiagGaussian):
            exact = D.kl_divergence(
                D.Independent(D.Normal(q.mean, q.log_std.exp()), 1),
                D.Independent(D.Normal(p.mean, p.log_std.exp()), 1))
            assert torch.allclose(kl, exact, rtol=1e-4, atol=1e-4), (
                f"kl {kl.tolist()} differs from torch.distributions {exact.tolist()}")
        else:  # a single-sample estimate: its average over many z must be the KL
            kl = prior.kl(rep, rep.rsample(g), ctx).view(samples, b).mean(0)
        tolerance = 7 * spread / samples ** 0.5 + 1e-3  # two independent estimates
        assert ((kl - mc).abs() <= tolerance).all(), (
            f"kl {kl.tolist()} disagrees with a Monte Carlo estimate {mc.tolist()}")
    if any(p.requires_grad for p in prior.parameters()):
        _gradients_reach(prior, prior.kl(q, q.rsample(g), context), "the prior")


def check_prior_codable(prior_factory: Callable[[int], Any], latent_dim: int = 6,
                        batch: int = 3) -> None:
    """What ``acnkit compress`` needs of a prior plugin: ``distribution(context, B)`` gives a
    :class:`~acnkit.distributions.DiagGaussian` with (B, d) ``mean`` and ``log_std``, or a
    :class:`~acnkit.distributions.MixtureDiagGaussian` with (B, d, M) ``logits``, ``means``
    and ``log_stds``; finite numbers; the same floats for one context alone as the coder
    computes them (one row at a time, twice), since sender and receiver must agree in
    every bit."""
    from ..distributions import DiagGaussian, MixtureDiagGaussian

    prior = prior_factory(latent_dim).eval()
    context = (torch.randn(batch, latent_dim, generator=torch.Generator().manual_seed(0))
               if prior.conditional else None)
    with torch.no_grad():
        dist = prior.distribution(context, batch)
        one = None if context is None else context[:1]
        first, second = prior.distribution(one, 1), prior.distribution(None if one is None
                                                                       else one.clone(), 1)
    fields: dict[str, tuple[int, ...]]
    if isinstance(dist, DiagGaussian):
        fields = {"mean": (batch, latent_dim), "log_std": (batch, latent_dim)}
    elif isinstance(dist, MixtureDiagGaussian):
        m = dist.logits.shape[-1]
        fields = {k: (batch, latent_dim, m) for k in ("logits", "means", "log_stds")}
    else:
        raise AssertionError(f"distribution() gave a {type(dist).__name__}; the codec codes "
                             f"DiagGaussian and MixtureDiagGaussian priors only")
    for name, shape in fields.items():
        value = getattr(dist, name)
        assert tuple(value.shape) == shape, f"{name} has shape {tuple(value.shape)}, not {shape}"
        assert torch.isfinite(value).all(), f"{name} holds NaN or infinite numbers"
        assert torch.equal(getattr(first, name), getattr(second, name)), (
            f"{name} differs between two calls on the same context: the coder needs "
            f"deterministic priors")


# ---------------------------------------------------------------- the other kinds
