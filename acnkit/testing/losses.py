"""The kit of likelihoods over discrete levels: probabilities, CDF, causality across a
pixel's channels, sampling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .common import _batch_independent


def check_loss(factory: Callable[..., Any], image_shape: tuple[int, ...] = (1, 8, 8),
               levels: int | None = None) -> None:
    """A likelihood ``factory(levels=L, channels=C)`` (the options it takes of these)
    gives a :class:`~acnkit.interfaces.Loss` for which, on random parameters
    (B, P, H, W) and images of its levels:

    - ``nll`` is finite, (B,) and differentiable in the parameters;
    - ``probabilities`` are non-negative, sum to one over the levels, and ``nll`` equals
      minus the log-probability of the observed levels, summed;
    - channel c's probabilities depend on no channel at or after c of the images, nor on
      any other pixel (the codec decodes a pixel's channels in order);
    - ``cdf`` (what the codec codes with), asked an edge at a time, is 0 at level 0 and 1
      at L, never decreases, and is the probabilities summed;
    - a row's numbers do not depend on the rest of its batch;
    - ``mean`` has the images' shape, in [0, 1]; ``sample`` draws valid levels whose
      frequencies match ``probabilities``;
    - a ``binary`` loss is a Bernoulli: ``nll`` equals
      ``torch.distributions.Bernoulli(probs=mean)``'s.
    """
    import inspect

    from torch import distributions as D

    from ..interfaces import Loss, scaled

    g = torch.Generator().manual_seed(0)
    channels = image_shape[0] if len(image_shape) == 3 else 1
    takes = inspect.signature(factory).parameters
    anything = any(p.kind is p.VAR_KEYWORD for p in takes.values())
    options = {k: v for k, v in (("levels", levels), ("channels", channels))
               if v is not None and (anything or k in takes)}
    loss = factory(**options)
    assert isinstance(loss, Loss), f"the factory gave a {type(loss).__name__}, not a Loss"
    levels = int(loss.levels)
    b, p = 5, loss.param_channels(channels)
    pshape = (b, p, *image_shape[1:]) if len(image_shape) == 3 else (b, *image_shape)
    params = torch.randn(pshape, generator=g, requires_grad=True)
    x = scaled(torch.randint(0, levels, (b, *image_shape), generator=g), levels)
    try:  # the decoder gives param_channels(C) channels: a loss reading others fails here
        nll = loss.nll(params, x)
        loss.mean(params.detach())
    except (RuntimeError, IndexError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise AssertionError(
            f"the loss failed on parameters of shape {tuple(pshape)}, the "
            f"{p} channels its param_channels({channels}) asks the decoder for: does "
            f"param_channels match what nll and mean read? ({type(exc).__name__}: "
            f"{first})") from None
    assert tuple(nll.shape) == (b,) and torch.isfinite(nll).all(), "nll is not finite (B,)"
    nll.sum().backward()
    assert params.grad is not None and torch.isfinite(params.grad).all(), "no finite gradient"
    params = params.detach()
    mean = loss.mean(params)
    assert tuple(mean.shape) == (b, *image_shape), f"mean has shape {tuple(mean.shape)}"
    assert ((mean >= 0) & (mean <= 1)).all(), "mean is not in [0, 1] (images are scaled)"
    probs = loss.probabilities(params, x)
    assert tuple(probs.shape) == (b, *image_shape, levels), (
        f"probabilities have shape {tuple(probs.shape)}, expected {(b, *image_shape, levels)}")
    assert (probs >= 0).all(), "probabilities are negative"
    assert torch.allclose(probs.sum(-1), torch.ones((), dtype=probs.dtype), atol=1e-6), (
        "probabilities do not sum to one over the levels")
    observed = probs.gather(-1, torch.round(x * (levels - 1)).long()[..., None])[..., 0]
    ref = -observed.double().log().flatten(1).sum(1)
    assert torch.allclose(nll.detach().double(), ref, rtol=1e-4, atol=1e-3), (
        f"nll {nll.tolist()} is not minus the log-probability of the observed levels "
        f"{ref.tolist()}")
    _probabilities_causal(loss, params, x, probs)
    _check_cdf(loss, params, x, probs)
    with torch.no_grad():
        _batch_independent(loss.nll, (params, x), "the loss's nll")
    if loss.binary:
        ref = -D.Bernoulli(probs=mean.double()).log_prob(x.double()).flatten(1).sum(1)
        assert torch.allclose(nll.detach().double(), ref, rtol=1e-4, atol=1e-3), (
            f"nll {nll.tolist()} is not the Bernoulli's {ref.tolist()}")
    # one pixel, drawn many times: what sampling must match, in bounded memory
    _check_sampling(loss, params[:1, :, :1, :1] if params.dim() == 4 else params[:1], levels)


def _probabilities_causal(loss: Any, params: Tensor, x: Tensor, probs: Tensor) -> None:
    """Channel c's probabilities are the same whatever channels >= c hold, and a pixel's
    whatever the other pixels hold: each is changed in turn and the rest compared."""
    levels = int(loss.levels)
    b, c_all = len(x), (x.shape[1] if x.dim() == 4 else 1)

    def per_pixel(t: Tensor) -> Tensor:  # (B, C, pixels, ...)
        return t.reshape(b, c_all, -1, *t.shape[x.dim():])

    def changed(t: Tensor) -> Tensor:  # every level moved half the range
        return torch.round((t * (levels - 1) + levels // 2) % levels) / (levels - 1)

    base = per_pixel(probs)
    for c in range(c_all):
        other = per_pixel(x.clone())
        other[:, c:] = changed(other[:, c:])
        again = per_pixel(loss.probabilities(params, other.reshape(x.shape)))
        assert torch.equal(again[:, : c + 1], base[:, : c + 1]), (
            f"the probabilities of channel {c} change with channel {c} or later: a "
            f"receiver decodes a pixel's channels in order")
    if base.shape[2] > 1:
        other = per_pixel(x.clone())
        other[:, :, 1:] = changed(other[:, :, 1:])
        again = per_pixel(loss.probabilities(params, other.reshape(x.shape)))
        assert torch.equal(again[:, :, 0], base[:, :, 0]), (
            "the probabilities of a pixel change with another pixel's values")


def _check_cdf(loss: Any, params: Tensor, x: Tensor, probs: Tensor) -> None:
    """``cdf`` (what the codec codes with) at every edge 0 .. L: 0 at 0, 1 at L, never
    decreasing, and the probabilities summed (within 1e-6), asked an edge at a time as the
    codec asks it."""
    levels = int(loss.levels)
    at = loss.cdf(params, x)
    edges = torch.zeros((*probs.shape[:-1], 1), dtype=torch.long, device=probs.device)
    f = torch.cat([at(edges + k) for k in range(levels + 1)], -1)
    assert tuple(f.shape) == (*probs.shape[:-1], levels + 1), (
        f"cdf gave shape {tuple(f.shape[:-1])} + (1,) for edges {tuple(edges.shape)}")
    assert (f[..., 0] == 0).all() and (f[..., -1] == 1).all(), (
        "cdf is not 0 at level 0 and 1 at the number of levels")
    assert (f.diff(dim=-1) >= 0).all(), "cdf decreases"
    summed = torch.nn.functional.pad(torch.cumsum(probs.double(), -1), (1, 0))
    worst = (f.double() - summed).abs().max().item()
    assert worst < 1e-6, f"cdf differs from the probabilities summed by {worst:.3g}"


def _check_sampling(loss: Any, params: Tensor, levels: int, draws: int = 4000) -> None:
    """``sample`` gives levels in [0, 1] whose frequencies at the first subpixel follow
    ``probabilities`` (a chi-square-like bound on the largest deviation)."""
    g = torch.Generator().manual_seed(3)
    rep = params.expand(draws, *params.shape[1:]).contiguous()
    drawn = loss.sample(rep, g)
    on_grid = drawn * (levels - 1)
    assert ((drawn >= 0) & (drawn <= 1)).all() and \
        ((on_grid - on_grid.round()).abs() < 1e-4).all(), (
        f"sample gave values other than the {levels} levels scaled to [0, 1]")
    first = on_grid.round().long().reshape(draws, -1)[:, 0]
    freq = torch.bincount(first, minlength=levels).double() / draws
    zero = torch.zeros((1, *drawn.shape[1:]))
    p = loss.probabilities(params, zero).reshape(1, -1, levels)[0, 0]
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / draws).sqrt() + 0.01).all(), (
        "sample's frequencies do not follow probabilities")
