"""Runs on disk: start one in a folder, continue one from its checkpoint."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import rundir
from .config import RunConfig
from .display import RunDisplay
from .distributed import from_environment
from .engine import Trainer
from .errors import CheckpointError


class Interrupted(Exception):
    """The run was stopped by a signal after saving what it had."""

    def __init__(self, out: Path, epoch: int) -> None:
        super().__init__(f"interrupted; the checkpoint of epoch {epoch} is kept in {out}: "
                         f"continue with `acnkit run --resume {out}`")
        self.out, self.epoch = out, epoch


@contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """Ctrl-C or SIGTERM asks the trainer to stop at the end of the current batch."""

    def handler(signum: int, frame: Any) -> None:
        trainer.stop_requested = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _checkpoint(out: Path) -> Any:
    def after_epoch(trainer: Trainer) -> None:
        if trainer.dist.is_main:  # one writer; the other ranks hold the same state
            rundir.save_checkpoint(out, trainer.state_dict())
            rundir.write_metrics(out, trainer.history)
        trainer.dist.barrier()
    return after_epoch


def _fit(trainer: Trainer, out: Path, epochs: int, label: str, quiet: bool) -> list[dict]:
    quiet = quiet or not trainer.dist.is_main
    with stop_on_signals(trainer), RunDisplay(epochs, label, quiet) as callbacks:
        history = trainer.fit(epochs, callbacks=callbacks, after_epoch=_checkpoint(out))
    if trainer.stop_requested:
        raise Interrupted(out, trainer.epoch)
    return history


def start(config: RunConfig, out: str | Path, overwrite: bool = False, label: str = "",
          quiet: bool = False) -> Trainer:
    """Train a new run into folder ``out``; returns the trainer (its ``history`` holds the
    per-epoch metrics, also in ``out/metrics.jsonl``)."""
    config.validate()
    dist = from_environment(config.device)
    path = Path(out)
    if dist.is_main:
        rundir.check_out(path, overwrite)  # refuse before any work
    trainer = Trainer(config, dist=dist)  # bad options and data fail here, before any write
    if dist.is_main:
        rundir.prepare(path, overwrite)
        rundir.write_config(path, config.to_dict())
    dist.barrier()
    _fit(trainer, path, config.epochs, label, quiet)
    return trainer


def resume(out: str | Path, epochs: int | None = None, overrides: dict[str, Any] | None = None,
           label: str = "", quiet: bool = False) -> Trainer:
    """Continue the run in ``out`` up to ``epochs`` epochs in all (default: its config's)."""
    path = Path(out)
    state = rundir.load_checkpoint(path)
    saved = RunConfig.from_dict(state["config"])
    changed = {k: v for k, v in (overrides or {}).items()
               if k in RunConfig.STRUCTURAL and getattr(saved, k) != v}
    if changed:
        name, value = next(iter(changed.items()))
        raise CheckpointError(
            f"--resume {path}: the run was made with {name.replace('_', '-')}="
            f"{getattr(saved, name)!r}, not {value!r}; drop that option or start a new run"
        )
    config = RunConfig.from_dict({**saved.to_dict(), **(overrides or {})})
    if epochs is not None:
        config.epochs = epochs
    dist = from_environment(config.device)
    trainer = Trainer(config, dist=dist)
    trainer.load_state_dict(state)
    if dist.is_main:
        rundir.write_config(path, config.to_dict())
    _fit(trainer, path, config.epochs, label, quiet)
    return trainer
