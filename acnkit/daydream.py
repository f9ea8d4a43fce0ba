"""Daydreaming: x0 -> c0 = encode(x0) -> z1 ~ p(z | c0) -> x1 = decode(z1) -> c1 -> ...

Each chain starts from a data point and lets the prior dream the next image given the code
of the last one: what the model thinks lies near it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import progress
from .errors import UsageError
from .model import Model
from .plots import image_grid
from .sampling import decode_images


@torch.no_grad()
def daydream(model: Model, images: torch.Tensor, seeds: int, steps: int, seed: int = 0,
             split: str = "test") -> torch.Tensor:
    """Images (seeds, steps + 1, *image_shape): column 0 data drawn from ``images`` (the
    ``split`` images, named in errors), then the dreams. With a binary likelihood each
    dream is a sampled 0/1 image, fed to the encoder as the data were (as the paper's
    chain does); otherwise the likelihood's mean."""
    if not model.conditional:
        raise UsageError(f"prior {model.config.prior!r} is not conditioned on a code, so it "
                         f"cannot daydream; use a run with a conditional prior such as acn")
    model.eval()
    if seeds > len(images):
        raise UsageError(f"--seeds {seeds} exceeds the {len(images)} {split} images")
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(images), generator=gen)[:seeds].to(model.device)
    x = model.inputs(images[pick])
    noise = torch.Generator(device=model.device).manual_seed(seed)
    frames = [x]
    with progress.task("daydream", steps, "steps") as step:
        for _ in range(steps):
            code = model.encoder(x).mean
            z = model.prior.sample(code, len(code), noise)
            x = decode_images(model, z, noise)
            frames.append(x)
            step()
    return torch.stack(frames, 1).cpu()


def write_daydream(model: Model, images: torch.Tensor, out: str | Path, seeds: int,
                   steps: int, seed: int = 0, labels: torch.Tensor | None = None,
                   epoch: int | None = None) -> Path:
    """The chains as a PNG grid: a row per chain, titled with the run, each row named by
    the test image that seeds it (and its label), each column by its step."""
    frames = daydream(model, images, seeds, steps, seed)
    grid = frames.numpy()  # grey or colour, as the model sees them
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:seeds]
    rows = [f"test {int(i)}" + (f"\nlabel {int(labels[i])}" if labels is not None else "")
            for i in pick]
    c = model.config
    when = f", epoch {epoch}" if epoch is not None else ""
    image_grid(grid, out, row_labels=rows,
               col_labels=["data"] + [f"step {i}" for i in range(1, steps + 1)],
               title=f"daydream of {c.prior} on {c.data}{when}: each row encodes its "
                     f"test image, samples the prior given the code, decodes, repeats")
    return Path(out)
