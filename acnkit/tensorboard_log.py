"""TensorBoard event files of a run (``--tensorboard``): every figure of metrics.jsonl per
epoch, pictures every few epochs, and the test codes in the embedding projector.

Tags are stable: ``train/nats``, ``train/recon``, ``train/kl``, ``test/nats`` (the headline,
set mode), ``test/nats_set``, ``test/nats_ordered``, ``test/recon``, ``test/kl``,
``test/knn5_accuracy``, ... (each metric ``<split>_<name>`` as ``<split>/<name>``), and
``seconds/epoch``, ``seconds/search``. Pictures: ``images/reconstructions`` (data above,
decoded codes below), ``images/prior_samples`` (an unconditional prior) or
``images/daydream`` (a conditional one: data, then dreams). The projector shows each test
code with its label as metadata and its thumbnail, so one sees whether codes cluster by
class: at the last epoch, and every ``codes_every`` epochs when asked
(``--tensorboard-codes-every N``). The run's config is logged as HParams (the headline
figures its metrics), and ``acnkit eval --samples N`` adds the importance-sampled bound
(``test/is_nats`` ...) at the run's epoch when the run has event files.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
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
#: the projector's tag (its folder's name: no space)
PROJECTOR_TAG = "test_codes"
#: the figures HParams shows beside each run's config
HPARAM_METRICS = ("test/nats", "test/nats_set", "test/nats_ordered", "test/bits_per_dim_set",
                  "test/knn5_accuracy")


@dataclass(frozen=True)
class Events:
    """Where a run's event files go, and how often its test codes reach the projector
    (0: at the last epoch only)."""

    folder: Path
    codes_every: int = 0

    def under(self, name: str) -> Events:
        return Events(self.folder / name, self.codes_every)


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

    def __init__(self, logdir: str | Path, history: list[dict[str, Any]],
                 config: dict[str, Any] | None = None, codes_every: int = 0) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = Path(logdir)
        self.codes_every = codes_every
        new = not self.logdir.exists()
        self.writer = SummaryWriter(str(self.logdir))
        if new:
            if config is not None:
                self.hparams(config)
            for metrics in history:
                self.scalars(metrics)

    def hparams(self, config: dict[str, Any]) -> None:
        """The run's config in TensorBoard's HParams, its metrics the headline figures
        (the scalars of those tags): runs of a comparison side by side in one table."""
        from torch.utils.tensorboard.summary import hparams

        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                for k, v in config.items()}
        file_writer = self.writer.file_writer
        assert file_writer is not None  # SummaryWriter opens it
        for summary in hparams(flat, dict.fromkeys(HPARAM_METRICS, 0.0)):
            file_writer.add_summary(summary)

    def scalars(self, metrics: dict[str, Any]) -> None:
        step = int(metrics["epoch"])
        for key, value in metrics.items():
            name = tag(key)
            if name and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, value, step)

    def epoch(self, model: Model, test_x: torch.Tensor, test_y: torch.Tensor,
              metrics: dict[str, Any], last: bool) -> None:
        """One epoch's figures; its pictures every :data:`IMAGES_EVERY` epochs and at the
        last; the test codes at the last and every ``codes_every`` epochs."""
        self.scalars(metrics)
        step = int(metrics["epoch"])
        if step % IMAGES_EVERY == 0 or last or step == 1:
            self.pictures(model, test_x, step)
        if last or (self.codes_every and step % self.codes_every == 0):
            self.projector(model, test_x, test_y, step)
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
                                  global_step=step, tag=PROJECTOR_TAG)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def add_evaluation(logdir: Path, epoch: int, figures: dict[str, Any]) -> bool:
    """``acnkit eval``'s figures that training does not log (the importance-sampled bound
    ``test_is_*``) into a run's existing event files at its ``epoch``; False (nothing
    written) when the run has none or the package is missing."""
    extra = {k: v for k, v in figures.items() if k.startswith("test_is_")}
    if not extra or not logdir.is_dir():
        return False
    try:
        board = TensorBoardLog(logdir, [])
    except UsageError:
        return False
    board.scalars({"epoch": epoch, **extra})
    board.close()
    return True


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
