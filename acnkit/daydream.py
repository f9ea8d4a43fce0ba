"""Daydreaming: x0 -> c0 = encode(x0) -> z1 ~ p(z | c0) -> x1 = decode(z1) -> c1 -> ...

Each chain starts from a data point and lets the prior dream the next image given the code
of the last one: what the model thinks lies near it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .engine import Trainer
from .errors import UsageError
from .plots import image_grid

#: bounds of the grid: beyond them the PNG is unreadable and the memory grows without use
MAX_SEEDS, MAX_STEPS = 64, 100


def _decode(trainer: Trainer, z: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """Images for latents z: sampled 0/1 images with a binary likelihood (the chain's next
    state is an image, not probabilities) or an autoregressive decoder (which has no
    probabilities without the pixels drawn before); otherwise the likelihood's mean."""
    if trainer.loss.binary or trainer.decoder.autoregressive:
        return trainer.decoder.sample(z, trainer.loss, noise)
    return trainer.loss.mean(trainer.decoder(z))


@torch.no_grad()
def daydream(trainer: Trainer, seeds: int, steps: int, seed: int = 0,
             split: str = "test") -> torch.Tensor:
    """Images (seeds, steps + 1, *image_shape): column 0 the data, then the dreams. With
    a binary likelihood each dream is a sampled 0/1 image, fed to the encoder as the data
    were (as the paper's chain does); otherwise the likelihood's mean."""
    if not trainer.conditional:
        raise UsageError(f"prior {trainer.config.prior!r} is not conditioned on a code, so it "
                         f"cannot daydream; use a run with a conditional prior such as acn")
    trainer.model.eval()
    data = trainer.test_x if split == "test" else trainer.train_x
    if seeds > len(data):
        raise UsageError(f"--seeds {seeds} exceeds the {len(data)} {split} images")
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(data), generator=gen)[:seeds].to(trainer.device)
    x = data[pick].float()
    noise = torch.Generator(device=trainer.device).manual_seed(seed)
    frames = [x]
    for _ in range(steps):
        code = trainer.encoder(x).mean
        z = trainer.prior.sample(code, len(code), noise)
        x = _decode(trainer, z, noise)
        frames.append(x)
    return torch.stack(frames, 1).cpu()


def write_daydream(trainer: Trainer, out: str | Path, seeds: int, steps: int,
                   seed: int = 0) -> Path:
    frames = daydream(trainer, seeds, steps, seed)
    images = frames[:, :, 0].numpy()  # first channel
    image_grid(images, out, col_labels=["data"] + [f"step {i}" for i in range(1, steps + 1)])
    return Path(out)


@torch.no_grad()
def prior_samples(trainer: Trainer, n: int, seed: int = 0) -> torch.Tensor:
    """Images (n, *image_shape) decoded from z ~ p(z) of an unconditional prior: sampled
    0/1 images with a binary likelihood (pixel by pixel for an autoregressive decoder),
    else the likelihood's mean."""
    if trainer.conditional:
        raise UsageError(f"prior {trainer.config.prior!r} is conditioned on a neighbour's "
                         f"code; its samples are its daydreams: acnkit daydream RUN")
    trainer.model.eval()
    noise = torch.Generator(device=trainer.device).manual_seed(seed)
    return _decode(trainer, trainer.prior.sample(None, n, noise), noise).cpu()


def write_samples(trainer: Trainer, out: str | Path, n: int, seed: int = 0,
                  per_row: int = 10) -> Path:
    images = prior_samples(trainer, n, seed)[:, 0].numpy()  # first channel
    rows = -(-n // per_row)
    grid = np.zeros((rows * per_row, *images.shape[1:]), dtype=images.dtype)
    grid[:n] = images
    image_grid(grid.reshape(rows, per_row, *images.shape[1:]), out)
    return Path(out)
