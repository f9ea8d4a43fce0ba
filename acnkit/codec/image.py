"""Bits-back coding of images (BB-ANS), one step of a file's lanes at a time: the sender
pops z from q(z|x) (getting bits back), pushes x with p(x|z), then pushes z with the prior;
the receiver pops z with the prior, pops x with p(x|z), re-encodes x and pushes z back
with q(z|x). Each lane is its own ANS stack, so the networks see a step's images of every
lane as one batch.

Every probability is computed by both sides in the same way: the same networks on the same
batches (a step's lanes, in lane order), in one thread, in the same order, so that the
floats agree in every bit.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..distributions import DiagGaussian, MixtureDiagGaussian
from ..errors import CodecError
from ..exact import portable
from ..interfaces import Decoder
from ..model import Model
from .coder import Codecs, Lanes
from .levels import CDF, Decisions, Search, popped

LatentPrior = DiagGaussian | MixtureDiagGaussian
#: at most this many subpixels a CDF call of an image coder (lanes are split into blocks
#: of rows to stay within it, at least one image a block): the loss's temporaries then stay
#: in the CPU's caches
BLOCK_SUBPIXELS = 1 << 14
#: a search's parts a cut (acnkit.codec.levels): halving when a lane's whole image is
#: decided in one coder call (fewest CDF values), sixteen parts when every subpixel is a
#: call on each lane's stack (an autoregressive decoder: fewest calls)
RADIX_INDEPENDENT, RADIX_AUTOREGRESSIVE = 2, 16
#: a stack of a real file never holds fewer valid bits than this while decoding (its
#: initial words keep two spare words below every image)
MIN_VALID_BITS = 32


class NetCalls:
    """The networks of a model as the coder calls them: a batch of a step's lanes at a
    time, float64 out. Images are (B, C, H, W) arrays of integer levels. ``exact``: every
    call runs under :func:`acnkit.exact.portable` (the model a float64 copy,
    :func:`portable_model`), so the numbers are the same on every machine."""

    def __init__(self, model: Model, exact: bool = False) -> None:
        self.model = model.eval()
        self.exact = exact

    def arithmetic(self) -> Any:
        """The arithmetic the networks run in: exact, or the machine's own."""
        return portable() if self.exact else contextlib.nullcontext()

    def _inputs(self, images: np.ndarray) -> Tensor:
        m = self.model
        x = torch.from_numpy(np.ascontiguousarray(images)).reshape(len(images), *m.image_shape)
        return m.inputs(x).to(m.device)

    @torch.no_grad()
    def posterior(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, Tensor]:
        """q(z|x) of a batch of images: means and stds (B, d, float64), and the codes as
        the model gave them."""
        with self.arithmetic():
            q = self.model.encoder(self._inputs(images))
            stds = q.log_std.exp()
        return q.mean.double().cpu().numpy(), stds.double().cpu().numpy(), q.mean

    @property
    def autoregressive(self) -> bool:
        return self.model.decoder.autoregressive

    @property
    def stepping(self) -> bool:
        """An autoregressive decoder with its own incremental start/step/feed."""
        return self.autoregressive and bool(getattr(self.model.decoder, "stepping", False))

    @torch.no_grad()
    def independent_params(self, z: np.ndarray) -> Tensor:
        """The likelihood parameters of images whose pixels are independent given z."""
        m = self.model
        with self.arithmetic():
            return m.decoder.params(torch.from_numpy(z).float().to(m.device))

    @torch.no_grad()
    def channel_cdfs(self, params: Tensor, known: np.ndarray,
                     channel: int) -> Iterator[tuple[range, CDF]]:
        """Channel ``channel``'s CDF given ``known`` (B, C, H, W levels, its channels from
        ``channel`` on zeros, on both sides), a block of rows (lanes) at a time so that the
        loss's work stays in the CPU's caches: each block's ``cdf(edges)`` takes levels
        (b, H*W, m) and gives P(level < edge) (b, H*W, m). The blocks depend only on the batch
        and image sizes, so both sides call the loss on the same shapes."""
        m = self.model
        x = self._inputs(known)
        shape = m.image_shape
        rows = max(1, BLOCK_SUBPIXELS // math.prod(shape))
        for a in range(0, len(known), rows):
            block = range(a, min(a + rows, len(known)))
            yield block, self._channel_cdf(params[a: block.stop], x[a: block.stop], channel)

    def _channel_cdf(self, params: Tensor, x: Tensor, channel: int) -> CDF:
        """Channel ``channel``'s CDF at edges (b, pixels, m) of the images ``x``."""
        m = self.model
        with self.arithmetic():
            at = m.loss.cdf(params, x)

        def cdf(edges: np.ndarray) -> np.ndarray:
            at_channel = torch.from_numpy(edges).to(m.device).reshape(x.shape[0], 1,
                                                                    *x.shape[2:], -1)
            if x.shape[1] == 1:  # one channel: the edges are the whole question
                asked = at_channel
            else:  # the other channels' edges are zeros (F = 0 there, never read)
                asked = torch.zeros((*x.shape, edges.shape[-1]), dtype=torch.long,
                                    device=m.device)
                asked[:, channel: channel + 1] = at_channel
            with self.arithmetic():
                f = at(asked)[:, channel]
            return f.reshape(edges.shape).double().cpu().numpy()

        return cdf

    @torch.no_grad()
    def position_cdfs(self, z: np.ndarray, images: np.ndarray | None,
                      level_of: Callable[[int, int, CDF], np.ndarray]) -> None:
        """An autoregressive decoder, position by position in raster order and a pixel's
        channels in order: ``level_of(i, c, cdf)`` gets subpixel (i, c)'s CDF (edges
        (B, 1, m) in, P(level < edge) (B, 1, m) out) and gives its levels (B,). The loss sees the
        pixel as a 1x1 image whose channels from c on are zeros, on both sides. The
        receiver (``images`` None) takes each position's parameters from start/step/feed;
        the sender from one call over ``images``: a decoder with its own stepping's
        :meth:`~acnkit.interfaces.Decoder.stepped` (the steps' own bits), one without from
        its teacher-forced pass, which gives the same floats since a position's output
        never reads the pixels at or after it (checked before coding)."""
        with self.arithmetic():
            self._position_cdfs(z, images, level_of)

    def _position_cdfs(self, z: np.ndarray, images: np.ndarray | None,
                       level_of: Callable[[int, int, CDF], np.ndarray]) -> None:
        m = self.model
        dec = m.decoder
        zt = torch.from_numpy(z).float().to(m.device)
        channels = m.image_shape[0]
        steps: Any = dec if self.stepping else WholePasses(dec)
        state: Any = None
        if images is not None:  # the sender: every position's parameters at once
            x = self._inputs(images)
            out = dec.stepped(dec.start(zt), x) if self.stepping else dec.params(zt, x)
            forced = out.reshape(len(z), out.shape[1], -1)
        else:
            state = steps.start(zt)
        pixel = torch.zeros((len(z), channels, 1, 1), device=m.device)
        for i in range(math.prod(m.image_shape[1:])):
            params = forced[:, :, i] if state is None else steps.step(state, i)
            params = params.reshape(len(z), -1, 1, 1)
            pixel.zero_()
            for c in range(channels):
                levels = level_of(i, c, self._channel_cdf(params, pixel, c))
                pixel[:, c, 0, 0] = m.inputs(torch.from_numpy(levels)).to(m.device)
            if state is not None:
                steps.feed(state, i, pixel[:, :, 0, 0])

    @torch.no_grad()
    def prior(self, contexts: Tensor | None, batch: int) -> Any:
        """The prior of each of ``batch`` lanes (``contexts``: their neighbours' codes)."""
        with self.arithmetic():
            return self.model.prior_distribution(contexts, batch)


class WholePasses:
    """A decoder without its own stepping, stepped by the base class's start/step/feed: a
    whole forward pass a pixel (its class may define methods of those names without
    declaring ``stepping``)."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    def start(self, z: Tensor) -> Any:
        return Decoder.start(self.decoder, z)

    def step(self, state: Any, position: int) -> Tensor:
        return Decoder.step(self.decoder, state, position)

    def feed(self, state: Any, position: int, values: Tensor) -> None:
        Decoder.feed(self.decoder, state, position, values)


def gaussian_rows(dist: DiagGaussian) -> tuple[np.ndarray, np.ndarray]:
    """Means and stds of a batched diagonal Gaussian, float64."""
    return dist.mean.double().cpu().numpy(), dist.log_std.exp().double().cpu().numpy()


class ImageCoder:
    """Pushes and pops one step of images: row b of every batch on lane b's stack.

    A pixel's subpixels are coded by a search over their levels with the loss's CDF
    (:mod:`acnkit.codec.levels`) in the order the receiver can compute them: a
    channel of every pixel at a time when pixels are independent given z, pixel by pixel
    (a pixel's channels in order) for an autoregressive decoder."""

    def __init__(self, nets: NetCalls, codecs: Codecs) -> None:
        self.nets, self.codecs = nets, codecs
        self.pixel_steps, self.pixel_seconds = 0, 0.0  # the autoregressive decoding loop
        levels = nets.model.levels
        radix = RADIX_AUTOREGRESSIVE if nets.autoregressive else RADIX_INDEPENDENT
        # 0/1 pixels: one Bernoulli decision
        self.search = Search(levels, min(radix, levels), exact=nets.exact)

    def push(self, stacks: list[Any], images: np.ndarray, means: np.ndarray,
             stds: np.ndarray, prior: LatentPrior, keys: list[int],
             extents: np.ndarray | None = None) -> None:
        """The sender's step: image b (C, H, W levels) with posterior (means[b], stds[b])
        onto stack b; ``keys[b]``: its place in the decoding order (the dither's key).
        ``extents`` (B, 3), for tiles: the rows and columns of each image that are real (a
        tile at a photo's edge; the rest is zeros and costs nothing) and whether it is grey
        (a colour model's grey tile: its first channel coded, the others equal to it),
        coded before its pixels."""
        symbols = self.codecs.posterior_lanes(means, stds, keys).pop(stacks)
        z = self.codecs.grid.values(symbols)
        b, c = len(stacks), images.shape[1]
        search = self.search
        sizes = self._sizes(extents, images.shape)
        if self.nets.autoregressive:  # pixel-major: (B, H*W, C) subpixels
            decisions = Decisions(search)  # in the receiver's order, as it will make them
            coded = images.reshape(b, c, -1)

            def subpixel(i: int, ch: int, cdf: CDF) -> np.ndarray:
                known = coded[:, ch, i: i + 1].astype(np.int64)
                found = search.run(known.shape, cdf, decisions.known(known),
                                   sizes=self._at(sizes, ch, slice(i, i + 1)))[:, 0]
                return self._grey(found, extents, ch, coded[:, 0, i])

            self.nets.position_cdfs(z, images, subpixel)
            decisions.push(stacks)
        else:  # a channel of every pixel at a time, the last first (popped last)
            params = self.nets.independent_params(z)
            for ch in reversed(range(c)):
                known = images.copy()
                known[:, ch:] = 0  # what the receiver knows when it pops channel ch
                for block, cdf in self.nets.channel_cdfs(params, known, ch):
                    rows = images[block.start: block.stop, ch].reshape(len(block), -1)
                    decisions = Decisions(search)
                    search.run(rows.shape, cdf, decisions.known(rows.astype(np.int64)),
                               sizes=self._at(sizes, ch, slice(None), block))
                    decisions.push(stacks[block.start: block.stop])
        if extents is not None:
            side = extents.astype(np.int32)
            side[:, :2] -= 1
            self._extents(images.shape[1:]).push(stacks, side)
        self.codecs.prior_lanes(prior).push(stacks, symbols)

    @staticmethod
    def _grey(found: np.ndarray, extents: np.ndarray | None, ch: int,
              first: np.ndarray) -> np.ndarray:
        """Channel ``ch``'s levels with a grey tile's taken from its first channel (they
        were not coded)."""
        if extents is None or ch == 0 or not extents[:, 2].any():
            return found
        return np.where(extents[:, 2] > 0, first, found)

    def _extents(self, shape: tuple[int, ...]) -> Lanes:
        """A tile's real rows and columns (less one) in an image of ``shape`` (C, H, W),
        uniform: ten bits a 32 x 32 tile, coded because the receiver cannot know them
        before its pixels (ACN's chain decodes tiles in an order it learns at the end);
        for a colour model, whether the tile is grey, one bit. A side of one pixel has
        nothing to code."""
        sides = np.array([*shape[1:], 2 if shape[0] == 3 else 1], dtype=np.int32)
        coded = sides > 1
        codec = self.codecs.uniforms(sides[coded])

        def push(stacks: list[Any], rows: np.ndarray) -> None:
            if coded.any():
                Lanes.of([codec] * len(stacks)).push(stacks, np.ascontiguousarray(rows[:, coded]))

        def pop(stacks: list[Any]) -> np.ndarray:
            out = np.zeros((len(stacks), 3), dtype=np.int32)
            if coded.any():
                out[:, coded] = Lanes.of([codec] * len(stacks)).pop(stacks)
            return out

        return Lanes(push, pop)

    def _sizes(self, extents: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
        """Each subpixel's level count (B, C, H*W): the model's where the pixel is real,
        one (no decision, level 0) where it is padding or a grey tile's channel after its
        first; None when every subpixel is coded."""
        if extents is None:
            return None
        b, c, h, w = len(extents), shape[1], shape[2], shape[3]  # shape: (B, C, H, W)
        real = (np.arange(h)[None, :, None] < extents[:, 0, None, None]) \
            & (np.arange(w)[None, None, :] < extents[:, 1, None, None])
        if real.all() and not extents[:, 2].any():
            return None
        counts = np.where(real, self.search.levels, 1).astype(np.int64).reshape(b, 1, h * w)
        counts = np.repeat(counts, c, axis=1)
        counts[extents[:, 2] > 0, 1:] = 1
        return counts

    @staticmethod
    def _at(sizes: np.ndarray | None, ch: int, where: slice,
            block: range | None = None) -> np.ndarray | None:
        """The ``sizes`` of a search over channel ``ch`` at positions ``where`` (of lanes
        ``block``), or None (every subpixel real)."""
        if sizes is None:
            return None
        rows = sizes if block is None else sizes[block.start: block.stop]
        return rows[:, ch, where]

    def pop(self, stacks: list[Any], prior: LatentPrior, shape: tuple[int, ...],
            keys: list[int], tiled: bool = False) -> tuple[np.ndarray, Tensor, np.ndarray | None]:
        """The receiver's step: the images (B, *shape, uint8), one from each stack, their
        codes, and (``tiled``) the rows and columns of each that are real."""
        symbols = self.codecs.prior_lanes(prior).pop(stacks)
        z = self.codecs.grid.values(symbols)
        extents = None
        if tiled:
            extents = self._extents(shape).pop(stacks).astype(np.int64)
            extents[:, :2] += 1
        images = self._pop_pixels(stacks, z, shape, extents)
        for b, ans in enumerate(stacks):
            # the sender's stack at this point held its initial words less what the
            # posterior popped: never fewer than MIN_VALID_BITS (an empty stack would go on
            # reading zeros)
            if ans.num_valid_bits() < MIN_VALID_BITS:
                raise CodecError(f"the file ran out of bits at image {keys[b] + 1}: it is "
                                 f"corrupt or claims more images than it holds")
        means, stds, codes = self.nets.posterior(images)
        self.codecs.posterior_lanes(means, stds, keys).push(stacks, symbols)
        for b, ans in enumerate(stacks):
            if ans.is_empty():  # a real file keeps its initial words below every image
                raise CodecError(f"the file ran out of bits at image {keys[b] + 1}: it is "
                                 f"corrupt or claims more images than it holds")
        return images, codes, extents

    def _pop_pixels(self, stacks: list[Any], z: np.ndarray, shape: tuple[int, ...],
                    extents: np.ndarray | None) -> np.ndarray:
        b, c = len(stacks), shape[0]
        search = self.search
        sizes = self._sizes(extents, (b, *shape))
        images = np.zeros((b, c, math.prod(shape[1:])), dtype=np.uint8)
        if not self.nets.autoregressive:
            params = self.nets.independent_params(z)
            known = images.reshape(b, *shape)  # a view: filled a channel at a time
            for ch in range(c):
                for block, cdf in self.nets.channel_cdfs(params, known, ch):
                    lanes = stacks[block.start: block.stop]
                    found = search.run((len(block), images.shape[2]), cdf, popped(search, lanes),
                                       sizes=self._at(sizes, ch, slice(None), block))
                    images[block.start: block.stop, ch] = found
                if ch > 0 and extents is not None and extents[:, 2].any():
                    grey = extents[:, 2] > 0
                    images[grey, ch] = images[grey, 0]  # before the next channel's CDF
            return known
        t0 = time.perf_counter()

        def pop_subpixel(i: int, ch: int, cdf: CDF) -> np.ndarray:
            found = search.run((b, 1), cdf, popped(search, stacks),
                               sizes=self._at(sizes, ch, slice(i, i + 1)))[:, 0]
            images[:, ch, i] = self._grey(found, extents, ch, images[:, 0, i])
            return images[:, ch, i]

        self.nets.position_cdfs(z, None, pop_subpixel)
        self.pixel_steps += images.shape[2] * b
        self.pixel_seconds += time.perf_counter() - t0
        return images.reshape(b, *shape)


_PORTABLE: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], Model]] = \
    weakref.WeakKeyDictionary()


def portable_model(model: Model) -> Model:
    """The model a portable file is coded with: a float64 copy of ``model`` (its float32
    weights are float64 numbers exactly; the exact layers put them on their grids),
    derived alike on every machine, so it needs no file of its own. Kept while the
    model's weights are not written to (the copy's grids are computed once)."""
    versions = tuple(t._version for t in (*model.nets.parameters(), *model.nets.buffers()))
    hit = _PORTABLE.get(model.nets)
    if hit is not None and hit[0] == versions:
        return hit[1]
    # the loss holds no weights: shared, so the copy is the model's in all but its numbers
    nets = copy.deepcopy(model.nets, {id(model.loss): model.loss}).to(dtype=torch.float64)
    nets.eval()
    made = Model(model.config, nets, model.image_shape, model.device, model.registry)
    _PORTABLE[model.nets] = (versions, made)
    return made
