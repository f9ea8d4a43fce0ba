"""Images from latents: how daydreams and prior samples turn z into pictures, and a VAE's
prior samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import UsageError
from .model import Model
from .plots import image_grid

#: bounds of a grid: beyond them the PNG is unreadable and the memory grows without use
MAX_SEEDS, MAX_STEPS = 64, 100


def decode_images(model: Model, z: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """Images for latents z: sampled 0/1 images with a binary likelihood (a chain's next
    state is an image, not probabilities) or an autoregressive decoder (which has no
    probabilities without the pixels drawn before); otherwise the likelihood's mean."""
    if model.loss.binary or model.decoder.autoregressive:
        return model.decoder.sample(z, model.loss, noise)
    return model.loss.mean(model.decoder(z))


@torch.no_grad()
def prior_samples(model: Model, n: int, seed: int = 0) -> torch.Tensor:
    """Images (n, *image_shape) decoded from z ~ p(z) of an unconditional prior: sampled
    0/1 images with a binary likelihood (pixel by pixel for an autoregressive decoder),
    else the likelihood's mean."""
    if model.conditional:
        raise UsageError(f"prior {model.config.prior!r} is conditioned on a neighbour's "
                         f"code; its samples are its daydreams: acnkit daydream RUN")
    model.eval()
    noise = torch.Generator(device=model.device).manual_seed(seed)
    return decode_images(model, model.prior.sample(None, n, noise), noise).cpu()


def write_samples(model: Model, out: str | Path, n: int, seed: int = 0,
                  per_row: int = 10) -> Path:
    images = prior_samples(model, n, seed).numpy()  # grey or colour (N, C, H, W)
    rows = -(-n // per_row)
    grid = np.zeros((rows * per_row, *images.shape[1:]), dtype=images.dtype)
    grid[:n] = images
    image_grid(grid.reshape(rows, per_row, *images.shape[1:]), out)
    return Path(out)
