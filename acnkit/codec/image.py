"""Bits-back coding of one image (BB-ANS): the sender pops z from q(z|x) (getting bits
back), pushes x with p(x|z), then pushes z with the prior; the receiver pops z with the
prior, pops x with p(x|z), re-encodes x and pushes z back with q(z|x).

Every probability is computed by both sides in the same way: networks are called on one
image at a time, in one thread, in the same order, so that the floats agree in every bit.
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


class NetCalls:
    """The networks of a model as the coder calls them: one image at a time, float64 out."""

    def __init__(self, model: Model) -> None:
        self.model = model.eval()

    @torch.no_grad()
    def posterior(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, Tensor]:
        """q(z|x) of one image: mean and std (float64), and the code as the model gave it."""
        x = torch.from_numpy(image).float().unsqueeze(0).to(self.model.device)
        q = self.model.encoder(x)
        return (q.mean[0].double().cpu().numpy(), q.log_std[0].exp().double().cpu().numpy(),
                q.mean)

    @property
    def autoregressive(self) -> bool:
        return self.model.decoder.autoregressive

    @torch.no_grad()
    def pixel_probabilities(self, z: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        """P(pixel = 1) of every pixel given z; an autoregressive decoder reads the pixels
        of ``image`` before each position (the ones after it may hold anything)."""
        m = self.model
        zt = torch.from_numpy(z).float().unsqueeze(0).to(m.device)
        x = None
        if self.autoregressive:
            x = torch.from_numpy(image).float().reshape(1, *m.image_shape).to(m.device)
        p = m.loss.mean(m.decoder.params(zt, x))
        return p.reshape(-1).double().cpu().numpy()

    @torch.no_grad()
    def prior(self, context: Tensor | None) -> Any:
        return self.model.prior_distribution(context, 1)


def gaussian_params(prior: DiagGaussian) -> tuple[np.ndarray, np.ndarray]:
    return prior.mean[0].double().cpu().numpy(), prior.log_std[0].exp().double().cpu().numpy()


def mixture_params(prior: MixtureDiagGaussian) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weights = torch.softmax(prior.logits[0].double(), -1).cpu().numpy()
    return (np.ascontiguousarray(weights), prior.means[0].double().cpu().numpy(),
            prior.log_stds[0].exp().double().cpu().numpy())


def prior_codec(codecs: Codecs, prior: LatentPrior) -> Codec:
    if isinstance(prior, DiagGaussian):
        return codecs.gaussian(*gaussian_params(prior))
    return codecs.mixture(*mixture_params(prior))


class ImageCoder:
    """Pushes and pops whole images on one ANS stack with one model and grid."""

    def __init__(self, nets: NetCalls, codecs: Codecs) -> None:
        self.nets, self.codecs = nets, codecs
        self.pixel_steps, self.pixel_seconds = 0, 0.0  # the autoregressive decoding loop

    def push(self, ans: Any, pixels: np.ndarray, mean: np.ndarray, std: np.ndarray,
             prior: LatentPrior, step: int) -> None:
        """The sender's step for one image (flat 0/1 pixels) with posterior (mean, std);
        ``step``: its place in the receiver's decoding order (the dither's key)."""
        symbols = self.codecs.posterior(mean, std, step).pop(ans)
        z = self.codecs.grid.values(symbols)
        self.codecs.bernoulli(self.nets.pixel_probabilities(z, pixels)).push(ans, pixels)
        prior_codec(self.codecs, prior).push(ans, symbols)

    def pop(self, ans: Any, prior: LatentPrior, shape: tuple[int, ...],
            step: int) -> tuple[np.ndarray, Tensor]:
        """The receiver's step for the ``step``-th image: the image (uint8, ``shape``) and
        its code."""
        symbols = prior_codec(self.codecs, prior).pop(ans)
        pixels = self._pop_pixels(ans, self.codecs.grid.values(symbols), math.prod(shape))
        image = pixels.astype(np.uint8).reshape(shape)
        mean, std, code = self.nets.posterior(image)
        self.codecs.posterior(mean, std, step).push(ans, symbols)
        if ans.is_empty():  # a real file keeps its initial words below every image
            raise CodecError(f"the file ran out of bits at image {step + 1}: it is corrupt "
                             f"or claims more images than it holds")
        return image, code

    def _pop_pixels(self, ans: Any, z: np.ndarray, size: int) -> np.ndarray:
        if not self.nets.autoregressive:
            return self.codecs.bernoulli(self.nets.pixel_probabilities(z)).pop(ans)
        # One position at a time in raster order, each with the pixels decoded so far: the
        # sender's teacher-forced probabilities are these, bit for bit, since a position's
        # output is computed without the pixels after it (zeros here; check_decoder tests it).
        t0 = time.perf_counter()
        pixels = np.zeros(size, dtype=np.int32)
        for i in range(size):
            p = self.nets.pixel_probabilities(z, pixels)[i: i + 1]
            pixels[i] = self.codecs.bernoulli(p).pop(ans)[0]
        self.pixel_steps += size
        self.pixel_seconds += time.perf_counter() - t0
        return pixels
