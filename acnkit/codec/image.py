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

import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..distributions import DiagGaussian, MixtureDiagGaussian
from ..errors import CodecError
from ..model import Model
from .coder import Codec, Codecs

LatentPrior = DiagGaussian | MixtureDiagGaussian
#: a stack of a real file never holds fewer valid bits than this while decoding (its
#: initial words keep two spare words below every image)
MIN_VALID_BITS = 32


class NetCalls:
    """The networks of a model as the coder calls them: a batch of a step's lanes at a
    time, float64 out."""

    def __init__(self, model: Model) -> None:
        self.model = model.eval()

    @torch.no_grad()
    def posterior(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, Tensor]:
        """q(z|x) of a batch of images: means and stds (B, d, float64), and the codes as
        the model gave them."""
        m = self.model
        x = torch.from_numpy(images).float().reshape(len(images), *m.image_shape)
        q = m.encoder(x.to(m.device))
        return q.mean.double().cpu().numpy(), q.log_std.exp().double().cpu().numpy(), q.mean

    @property
    def autoregressive(self) -> bool:
        return self.model.decoder.autoregressive

    @torch.no_grad()
    def pixel_probabilities(self, z: np.ndarray, images: np.ndarray | None = None) -> np.ndarray:
        """P(pixel = 1) of every pixel given z (B, d): (B, pixels). An autoregressive
        decoder reads the pixels of ``images`` (B, pixels) before each position (the ones
        after it may hold anything)."""
        m = self.model
        zt = torch.from_numpy(z).float().to(m.device)
        x = None
        if self.autoregressive:
            x = torch.from_numpy(images).float().reshape(len(z), *m.image_shape).to(m.device)
        p = m.loss.mean(m.decoder.params(zt, x))
        return p.reshape(len(z), -1).double().cpu().numpy()

    @property
    def stepping(self) -> bool:
        """An autoregressive decoder with its own incremental start/step/feed."""
        return self.autoregressive and bool(getattr(self.model.decoder, "stepping", False))

    @torch.no_grad()
    def stepped_probabilities(self, z: np.ndarray, next_pixels: Any) -> np.ndarray:
        """P(pixel = 1) position by position through the decoder's stepping calls, on
        either side: ``next_pixels(i, p)`` gets the probabilities (B,) of position i and
        gives its pixels (the sender: the image's; the receiver: those it pops)."""
        m = self.model
        dec = m.decoder
        state = dec.start(torch.from_numpy(z).float().to(m.device))
        size = math.prod(m.image_shape)
        probs = np.empty((len(z), size))
        for i in range(size):
            probs[:, i] = m.loss.mean(dec.step(state, i)).reshape(len(z)).double().cpu().numpy()
            pixels = next_pixels(i, probs[:, i])
            dec.feed(state, i, torch.from_numpy(pixels).float().to(m.device))
        return probs

    @torch.no_grad()
    def prior(self, contexts: Tensor | None, batch: int) -> Any:
        """The prior of each of ``batch`` lanes (``contexts``: their neighbours' codes)."""
        return self.model.prior_distribution(contexts, batch)


def gaussian_rows(dist: DiagGaussian) -> tuple[np.ndarray, np.ndarray]:
    """Means and stds of a batched diagonal Gaussian, float64."""
    return dist.mean.double().cpu().numpy(), dist.log_std.exp().double().cpu().numpy()


def prior_codecs(codecs: Codecs, prior: LatentPrior) -> list[Codec]:
    """The codec of each row of a batched latent prior (its numbers read off once)."""
    if isinstance(prior, DiagGaussian):
        means, stds = gaussian_rows(prior)
        return [codecs.gaussian(m, s) for m, s in zip(means, stds, strict=True)]
    weights = torch.softmax(prior.logits.double(), -1).cpu().numpy()
    means = prior.means.double().cpu().numpy()
    stds = prior.log_stds.exp().double().cpu().numpy()
    return [codecs.mixture(np.ascontiguousarray(w), m, s)
            for w, m, s in zip(weights, means, stds, strict=True)]


class ImageCoder:
    """Pushes and pops one step of images: row b of every batch on lane b's stack."""

    def __init__(self, nets: NetCalls, codecs: Codecs) -> None:
        self.nets, self.codecs = nets, codecs
        self.pixel_steps, self.pixel_seconds = 0, 0.0  # the autoregressive decoding loop

    def push(self, stacks: list[Any], pixels: np.ndarray, means: np.ndarray,
             stds: np.ndarray, prior: LatentPrior, keys: list[int]) -> None:
        """The sender's step: image b (flat 0/1 pixels) with posterior (means[b], stds[b])
        onto stack b; ``keys[b]``: its place in the decoding order (the dither's key)."""
        symbols = [self.codecs.posterior(means[b], stds[b], keys[b]).pop(ans)
                   for b, ans in enumerate(stacks)]
        z = self.codecs.grid.values(np.stack(symbols))
        if self.nets.stepping:  # the very calls the receiver will make
            probs = self.nets.stepped_probabilities(z, lambda i, p: pixels[:, i])
        else:
            probs = self.nets.pixel_probabilities(z, pixels)
        for b, (ans, row) in enumerate(zip(stacks, prior_codecs(self.codecs, prior),
                                           strict=True)):
            self.codecs.bernoulli(probs[b]).push(ans, pixels[b])
            row.push(ans, symbols[b])

    def pop(self, stacks: list[Any], prior: LatentPrior, shape: tuple[int, ...],
            keys: list[int]) -> tuple[np.ndarray, Tensor]:
        """The receiver's step: the images (B, *shape, uint8), one from each stack, and
        their codes."""
        symbols = [row.pop(ans) for ans, row in zip(stacks, prior_codecs(self.codecs, prior),
                                                     strict=True)]
        z = self.codecs.grid.values(np.stack(symbols))
        pixels = self._pop_pixels(stacks, z, math.prod(shape))
        for b, ans in enumerate(stacks):
            # the sender's stack at this point held its initial words less what the
            # posterior popped: never fewer than MIN_VALID_BITS (an empty stack would go on
            # reading zeros)
            if ans.num_valid_bits() < MIN_VALID_BITS:
                raise CodecError(f"the file ran out of bits at image {keys[b] + 1}: it is "
                                 f"corrupt or claims more images than it holds")
        images = pixels.astype(np.uint8).reshape(len(stacks), *shape)
        means, stds, codes = self.nets.posterior(images)
        for b, ans in enumerate(stacks):
            self.codecs.posterior(means[b], stds[b], keys[b]).push(ans, symbols[b])
            if ans.is_empty():  # a real file keeps its initial words below every image
                raise CodecError(f"the file ran out of bits at image {keys[b] + 1}: it is "
                                 f"corrupt or claims more images than it holds")
        return images, codes

    def _pop_pixels(self, stacks: list[Any], z: np.ndarray, size: int) -> np.ndarray:
        if not self.nets.autoregressive:
            probs = self.nets.pixel_probabilities(z)
            return np.stack([self.codecs.bernoulli(probs[b]).pop(ans)
                             for b, ans in enumerate(stacks)])
        t0 = time.perf_counter()
        if self.nets.stepping:
            pixels = np.zeros((len(stacks), size), dtype=np.int32)

            def pop_position(i: int, p: np.ndarray) -> np.ndarray:
                pixels[:, i] = self.codecs.pop_bits(stacks, p)
                return pixels[:, i]

            self.nets.stepped_probabilities(z, pop_position)
            self.pixel_steps += size * len(stacks)
            self.pixel_seconds += time.perf_counter() - t0
            return pixels
        # One position at a time in raster order, each with the pixels decoded so far: the
        # sender's teacher-forced probabilities are these, bit for bit, since a position's
        # output is computed without the pixels after it (zeros here; check_decoder tests
        # it) and the batch is the same step's lanes.
        pixels = np.zeros((len(stacks), size), dtype=np.int32)
        for i in range(size):
            pixels[:, i] = self.codecs.pop_bits(stacks, self.nets.pixel_probabilities(z, pixels)[:, i])
        self.pixel_steps += size * len(stacks)
        self.pixel_seconds += time.perf_counter() - t0
        return pixels
