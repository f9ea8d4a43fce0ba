"""Kits of encoders and decoders, autoregressive stepping and causality included."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..interfaces import Loss
from .common import _batch_independent, _gradients_reach


def check_encoder(factory: Callable[..., torch.nn.Module],
                  image_shape: tuple[int, ...] = (1, 8, 8), latent_dim: int = 6) -> None:
    """An encoder ``factory(image_shape, latent_dim, posterior=...)`` gives an
    ``nn.Module`` mapping images (B, *image_shape) of 0/1 floats to a
    :class:`~acnkit.distributions.DiagGaussian` with (B, d) ``mean`` and ``log_std``,
    finite; ``posterior="unit"`` fixes ``log_std`` to zero; rows are independent; the
    gradient reaches its parameters."""
    from ..distributions import DiagGaussian

    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((5, *image_shape), 0.4), generator=g)
    for posterior in ("learned", "unit"):
        enc = factory(image_shape, latent_dim, posterior=posterior)
        assert isinstance(enc, torch.nn.Module), f"the factory gave a {type(enc).__name__}"
        q = enc(x)
        assert isinstance(q, DiagGaussian), f"forward gave a {type(q).__name__}, not a DiagGaussian"
        for name in ("mean", "log_std"):
            value = getattr(q, name)
            assert tuple(value.shape) == (5, latent_dim), (
                f"{name} has shape {tuple(value.shape)}, expected (5, {latent_dim})")
            assert torch.isfinite(value).all(), f"{name} holds NaN or infinite numbers"
        if posterior == "unit":
            assert torch.equal(q.log_std, torch.zeros_like(q.log_std)), (
                'posterior="unit" must give log_std = 0')
        _gradients_reach(enc, q.mean + q.log_std, "the encoder")
        enc.eval()
        with torch.no_grad():
            _batch_independent(lambda b, enc=enc: enc(b).mean, x, "the encoder's mean")


class _BinaryLoss(Loss):
    """Bernoulli logits, as the kit scores a decoder (the core names no loss plugin);
    ``sample`` is the base class's."""

    binary = True

    def nll(self, params: Tensor, x: Tensor) -> Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            params, x, reduction="none").flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)


def check_decoder(factory: Callable[..., torch.nn.Module],
                  image_shape: tuple[int, ...] = (1, 8, 8), latent_dim: int = 6,
                  loss: Any = None) -> None:
    """A decoder ``factory(image_shape, latent_dim)`` gives an
    :class:`~acnkit.interfaces.Decoder` whose ``params(z, x)`` are finite likelihood
    parameters (B, P, H, W) (P = ``loss.param_channels(C)``, passed to the factory as
    ``param_channels`` when it is not C; ``loss`` defaults to a Bernoulli); rows are
    independent; the gradient reaches its parameters; ``sample(z, loss)`` gives images of
    the loss's levels. An autoregressive decoder also: is causal (changing pixel i, all its
    channels, changes no output at a pixel <= i, in raster order) and its teacher-forced
    log-likelihood of a sample equals the sum of the log-probabilities met while drawing
    it pixel by pixel; one with ``stepping`` passes :func:`check_stepping` and
    :func:`check_stepped`."""
    from ..interfaces import Decoder, scaled

    loss = loss or _BinaryLoss()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, latent_dim, generator=g)
    levels = int(loss.levels)
    x = scaled(torch.randint(0, levels, (5, *image_shape), generator=g), levels)
    channels = image_shape[0] if len(image_shape) == 3 else 1
    p = loss.param_channels(channels)
    dec = factory(image_shape, latent_dim) if p == channels else factory(
        image_shape, latent_dim, param_channels=p)
    assert isinstance(dec, Decoder), (
        f"the factory gave a {type(dec).__name__}, not an acnkit.interfaces.Decoder")
    out = dec.params(z, x)
    want = (5, *image_shape) if p == channels else (5, p, *image_shape[1:])
    assert isinstance(out, Tensor) and tuple(out.shape) == want, (
        f"forward gave {getattr(out, 'shape', type(out).__name__)}, expected {want}")
    assert torch.isfinite(out).all(), "the decoder's output holds NaN or infinite numbers"
    _gradients_reach(dec, out, "the decoder")
    dec.eval()
    with torch.no_grad():
        _batch_independent(dec.params, (z, x), "the decoder's output")
        drawn = dec.sample(z, loss, torch.Generator().manual_seed(1))
        assert tuple(drawn.shape) == (5, *image_shape), (
            f"sample gave shape {tuple(drawn.shape)}, expected (5, *{image_shape})")
        on_grid = drawn * (levels - 1)
        assert ((on_grid - on_grid.round()).abs() < 1e-4).all() and \
            ((drawn >= 0) & (drawn <= 1)).all(), (
            f"sample gave values other than the {levels} levels in [0, 1]")
        if dec.autoregressive:
            check_causal(dec, z[:2], x[:2])
            _check_teacher_forcing(dec, z[:2], loss)
        if getattr(dec, "stepping", False):
            check_stepping(dec, z[:3], x[:3])
            check_stepped(dec, z[:3], x[:3])


def _pixels(t: Tensor) -> Tensor:
    """(B, P, H, W) as (B, P, H*W): position i is pixel i in raster order."""
    return t.reshape(len(t), t.shape[1], -1)


def check_stepping(dec: Any, z: Tensor, x: Tensor) -> None:
    """A decoder's own stepping (start/step/feed) gives, pixel by pixel, what its
    teacher-forced forward gives (to float tolerance), and a row's steps do not depend on
    the rest of its batch: the codec codes with the steps, so both must hold for the
    file's figure to be the model's."""
    from ..interfaces import Decoder

    def stepped(zz: Tensor, xx: Tensor) -> Tensor:  # pixel by pixel, as the receiver
        return Decoder.stepped(dec, dec.start(zz), xx)

    with torch.no_grad():
        forced = _pixels(dec.params(z, x))
        steps = stepped(z, x)
        assert steps.shape == forced.shape and torch.allclose(
            steps, forced, atol=1e-4, rtol=1e-4), (
            f"the decoder's stepping disagrees with its teacher-forced output (largest "
            f"difference {(steps - forced).abs().max().item():.3g})")
        alone = stepped(z[:1], x[:1])
        assert torch.allclose(alone, steps[:1], atol=1e-4, rtol=1e-4), (
            "the decoder's stepping of one image changes with the rest of its batch")


def check_stepped(dec: Any, z: Tensor, x: Tensor) -> None:
    """``dec.stepped(dec.start(z), x)`` (all positions at once, what the codec's sender
    asks) gives the bits of stepping pixel by pixel (what its receiver does), in the
    machine's arithmetic and, for a decoder that has an exact form, under
    :func:`acnkit.exact.portable`: a sender's number that differs in one bit makes a
    file that does not decode."""
    from ..exact import NotPortable, portable
    from ..interfaces import Decoder

    arithmetics: tuple[tuple[str, Any], ...] = (("the machine's", contextlib.nullcontext),
                                                ("the exact", portable))
    for name, arithmetic in arithmetics:
        with torch.no_grad():
            try:
                with arithmetic():
                    zz, xx = z.clone(), x.clone()
                    steps = Decoder.stepped(dec, dec.start(zz), xx)
                    at_once = dec.stepped(dec.start(zz), xx)
            except NotPortable:
                continue  # not portable: its files are machine-bound, checked above
        assert isinstance(at_once, Tensor) and at_once.shape == steps.shape, (
            f"the decoder's stepped gave shape {tuple(getattr(at_once, 'shape', ()))}, "
            f"stepping {tuple(steps.shape)}")
        assert torch.equal(at_once, steps), (
            f"the decoder's stepped differs from its stepping in {name} arithmetic (largest "
            f"difference {(at_once - steps).abs().max().item():.3g}): the sender and "
            f"receiver would not agree; give the steps' own bits, or leave stepped to the "
            f"interface")


def check_causal(dec: Any, z: Tensor, x: Tensor) -> None:
    """An autoregressive decoder's output at each pixel does not change with the pixels
    at or after it (six pixels probed, changing all channels of one each time): the
    property the codec's receiver relies on."""
    base = _pixels(dec.params(z, x))
    dims = base.shape[2]
    for i in sorted({0, 1, dims // 3, dims // 2, dims - 2, dims - 1}):
        flipped = _pixels(x.clone())
        flipped[:, :, i] = 1 - flipped[:, :, i]
        out = _pixels(dec.params(z, flipped.reshape(x.shape)))
        assert torch.equal(out[:, :, : i + 1], base[:, :, : i + 1]), (
            f"the autoregressive decoder is not causal: changing pixel {i} changes its "
            f"output at a pixel <= {i} (raster order)")


def _check_teacher_forcing(dec: Any, z: Tensor, loss: Any) -> None:
    x = torch.zeros((len(z), *dec.image_shape))
    flat = _pixels(x)  # a view of x
    g = torch.Generator().manual_seed(2)
    log_p = torch.zeros(len(z), dtype=torch.float64)
    levels = int(loss.levels)
    for i in range(flat.shape[2]):
        params = dec.params(z, x)
        for c in range(flat.shape[1]):  # a pixel's channels in the loss's order
            probs = loss.probabilities(params, x)
            probs = probs.reshape(len(z), probs.shape[1], -1, levels)[:, c, i]
            drawn = torch.multinomial(probs.float(), 1, generator=g)[:, 0]
            flat[:, c, i] = drawn.float() / (levels - 1)
            log_p += probs.gather(1, drawn[:, None])[:, 0].log()
    forced = -dec.nll(z, x, loss).double()
    assert torch.allclose(forced, log_p, atol=1e-3, rtol=1e-5), (
        f"teacher-forced log-likelihood {forced.tolist()} differs from the sum of the "
        f"step-by-step log-probabilities {log_p.tolist()}")
