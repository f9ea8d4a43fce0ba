"""TensorBoard event files of a run (``--tensorboard``): every figure of metrics.jsonl per
epoch, pictures every few epochs, and the test codes in the embedding projector.

Tags are stable: ``train/nats``, ``train/recon``, ``train/kl``, ``test/nats`` (the headline,
set mode), ``test/nats_set``, ``test/nats_ordered``, ``test/recon``, ``test/kl``,
``test/knn5_accuracy``, ... (each metric ``<split>_<name>`` as ``<split>/<name>``), and
``seconds/epoch``, ``seconds/search``. Pictures: ``images/reconstructions`` (data above,
decoded codes below), ``images/prior_samples`` (an unconditional prior) or
``images/daydream`` (a conditional one: data, then dreams). The projector shows each test
code with its label and thumbnail, so one sees whether codes cluster by class.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from .daydream import daydream
from .errors import UsageError
from .model import Model
from .sampling import decode_images, prior_samples

#: pictures every this many epochs (and at a run's last epoch)
IMAGES_EVERY = 5
#: test codes shown in the projector (its sprite holds one thumbnail each)
PROJECTOR_CODES = 10_000


def require_tensorboard() -> None:
    """Fail before any training when the optional package is missing."""
    try:
        importlib.import_module("tensorboard")
        importlib.import_module("torch.utils.tensorboard")
    except ImportError:
        raise UsageError("--tensorboard needs the tensorboard package: pip install "
                         "'acnkit[tensorboard]' (or pip install tensorboard)") from None


def tag(key: str) -> str | None:
    """The TensorBoard tag of a metrics.jsonl key (None: not a per-epoch number)."""
    if key == "epoch":
        return None
    if key.endswith("_seconds"):
        return "seconds/" + key[: -len("_seconds")].removeprefix("test_")
    split, _, name = key.partition("_")
    return f"{split}/{name}" if name else f"other/{key}"


class TensorBoardLog:
    """Writes one run's events into ``logdir``; ``history`` already trained (a run resumed
    with ``--tensorboard`` for the first time) is written when the folder is new."""

    def __init__(self, logdir: str | Path, history: list[dict[str, Any]]) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = Path(logdir)
        new = not self.logdir.exists()
        self.writer = SummaryWriter(str(self.logdir))
        if new:
            for metrics in history:
                self.scalars(metrics)

    def scalars(self, metrics: dict[str, Any]) -> None:
        step = int(metrics["epoch"])
        for key, value in metrics.items():
            name = tag(key)
            if name and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, value, step)

    def epoch(self, model: Model, test_x: torch.Tensor, metrics: dict[str, Any],
              last: bool) -> None:
        """One epoch's figures; its pictures every :data:`IMAGES_EVERY` epochs and at the
        last."""
        self.scalars(metrics)
        step = int(metrics["epoch"])
        if step % IMAGES_EVERY == 0 or last or step == 1:
            self.pictures(model, test_x, step)
        self.writer.flush()

    @torch.no_grad()
    def pictures(self, model: Model, test_x: torch.Tensor, step: int, n: int = 8) -> None:
        x = model.inputs(test_x[:n])
        model.eval()
        noise = torch.Generator(device=model.device).manual_seed(step)
        recon = decode_images(model, model.encoder(x).mean, noise)
        # originals in the top row, their reconstructions below
        self.writer.add_image("images/reconstructions", grid([x, recon]), step)
        if model.conditional:  # a chain a row: the datum, then its dreams
            frames = daydream(model, test_x, min(4, len(test_x)), 5, seed=step)
            self.writer.add_image("images/daydream", grid(list(frames.unbind(0))), step)
        else:
            samples = prior_samples(model, n, step).float()
            self.writer.add_image("images/prior_samples", grid([samples[: n // 2],
                                                                samples[n // 2:]]), step)

    @torch.no_grad()
    def projector(self, model: Model, test_x: torch.Tensor, test_y: torch.Tensor,
                  step: int) -> None:
        """The test codes with their labels and thumbnails in the embedding projector."""
        x = test_x[:PROJECTOR_CODES]
        codes = model.encode(x).mean.cpu()
        thumbs = model.inputs(x).cpu()  # grey or colour, values in [0, 1]
        self.writer.add_embedding(codes, metadata=test_y[: len(x)].tolist(), label_img=thumbs,
                                  global_step=step, tag="test codes")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


#: pixels of the light grey gap between the images of a grid (and around it)
GAP = 2


def grid(rows: list[torch.Tensor], gap: int = GAP) -> torch.Tensor:
    """Rows of images (each (n, C, H, W) in [0, 1], grey or colour) as one picture
    (C, R*(H+gap)+gap, n*(W+gap)+gap): each image apart from its neighbours by a light
    grey gap, so that originals and reconstructions, or a chain's steps, read apart."""
    c, h, w = rows[0].shape[1:]
    width = max(len(r) for r in rows)
    out = torch.full((c, len(rows) * (h + gap) + gap, width * (w + gap) + gap), 0.75)
    for i, row in enumerate(rows):
        for j, image in enumerate(row.float().cpu().clamp(0, 1)):
            top, left = gap + i * (h + gap), gap + j * (w + gap)
            out[:, top: top + h, left: left + w] = image
    return out
