"""Training runs on disk: start one in a folder, continue one from its checkpoint (a
finished run is read back by :mod:`acnkit.trained`)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from . import progress, rundir, signals
from .config import RunConfig
from .display import epoch_line
from .distributed import env_rank, from_environment
from .engine import Trainer
from .errors import CheckpointError, Interrupted, NumericalError, UsageError
from .tensorboard_log import Events, TensorBoardLog
from .trained import config_of, fit_state


def interrupted(out: Path, epoch: int, command: str | None = None,
                signum: int = signal.SIGINT) -> Interrupted:
    """The error of a run stopped by a signal, saying what was kept and how to go on."""
    command = command or f"acnkit run --resume {rundir.quoted(out)}"
    kept = (f"the checkpoint of epoch {epoch} is kept in {out}" if epoch else
            f"no epoch had ended, so {out} holds only the run's config")
    stopped = Interrupted(f"interrupted ({signals.name(signum)}); {kept}: continue with "
                          f"`{command}`", out, epoch)
    stopped.exit_code = 128 + signum
    return stopped


@contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP asks the trainer to stop at the end of the current batch
    (the first signal's number gives the exit code)."""

    def handler(signum: int, frame: Any) -> None:
        if not trainer.stop_requested:
            trainer.stop_signal = signum
        trainer.stop_requested = True

    with signals.handled(handler):
        yield


def _checkpoint(out: Path, board: TensorBoardLog | None, epochs: int) -> Any:
    def after_epoch(trainer: Trainer) -> None:
        if trainer.dist.is_main:  # one writer; the other ranks hold the same state
            rundir.save_run(out, trainer.state_dict())
            if board:  # after the checkpoint: an event never runs ahead of the run
                data = trainer.data
                board.epoch(trainer.model, data.test_x, data.test_y, trainer.history[-1],
                            last=trainer.epoch >= epochs)
        trainer.dist.barrier()
    return after_epoch


def diverged(exc: NumericalError, out: Path, trainer: Trainer) -> NumericalError:
    """The engine's words, and what to do about it in this folder: continue from the last
    good checkpoint with a smaller learning rate (a resumed run replays the same numbers,
    so the same --lr would diverge again), or replace the run."""
    lr = trainer.config.lr / 2
    if trainer.epoch == 0:
        return NumericalError(f"{exc}; no epoch had ended: start again with --lr {lr:g} "
                              f"--out {rundir.quoted(out)} --overwrite")
    return NumericalError(f"{exc}; continue from the last good checkpoint with acnkit run "
                          f"--resume {rundir.quoted(out)} --lr {lr:g}, or replace the run "
                          f"with --overwrite")


def _fit(trainer: Trainer, out: Path, epochs: int, label: str, quiet: bool,
         command: str | None = None, tensorboard: Events | None = None) -> list[dict]:
    quiet = quiet or not trainer.dist.is_main
    callbacks = progress.Callbacks(on_epoch=lambda m: progress.echo(epoch_line(label, m, epochs)))
    board = None
    if tensorboard is not None and trainer.dist.is_main:
        board = TensorBoardLog(tensorboard.folder, trainer.history,
                               trainer.config.to_dict(), tensorboard.codes_every)
    with stop_on_signals(trainer), progress.quiet(quiet), progress.prefix(label):
        try:
            try:
                history = trainer.fit(epochs, callbacks=callbacks,
                                      after_epoch=_checkpoint(out, board, epochs))
            except NumericalError as exc:
                raise diverged(exc, out, trainer) from None
        finally:
            if board:
                board.close()
    if trainer.stop_requested:
        raise interrupted(out, trainer.epoch, command, trainer.stop_signal)
    return history


def _owned(path: Path, is_main: bool, what: str = "--out") -> Any:
    """The folder's lock, held by rank 0 alone (the other ranks write nothing)."""
    return rundir.RunLock(path, what) if is_main else nullcontext()


def absolute_data_dir(config: RunConfig) -> RunConfig:
    """A run records where its data came from as an absolute path, so that eval, compress
    and resume find it from any working directory."""
    if config.data_dir is not None:
        config.data_dir = str(Path(config.data_dir).expanduser().resolve())
    return config


def check_new(config: RunConfig, out: str | Path, overwrite: bool = False) -> None:
    """What can be refused before any process starts or any data is read."""
    config.validate()
    rundir.check_out(out, overwrite)


def start(config: RunConfig, out: str | Path, overwrite: bool = False, label: str = "",
          quiet: bool = False, command: str | None = None,
          trainer: Trainer | None = None, tensorboard: Events | None = None) -> Trainer:
    """Train a new run into folder ``out``; returns the trainer (its ``history`` holds the
    per-epoch metrics, also in ``out/metrics.jsonl``). ``trainer``: one already built
    from ``config`` (compare builds every run's before training any); ``tensorboard``: where
    TensorBoard's event files go."""
    absolute_data_dir(config.validate())
    dist = from_environment(config.device)
    path = Path(out)
    if dist.is_main:
        rundir.check_out(path, overwrite)  # refuse before any work
    if trainer is None:
        trainer = Trainer(config, dist=dist)  # bad options and data fail here, before any write
    if dist.is_main:
        rundir.prepare(path, overwrite)
    # Signals are caught from before config.json appears: a Ctrl-C from then on stops the
    # run with what it has and says how to go on, whatever the moment.
    with _owned(path, dist.is_main), stop_on_signals(trainer):
        if dist.is_main:
            rundir.check_out(path, overwrite)  # again, now that no one else can write it
            rundir.clear_run(path)
            rundir.write_config(path, config.to_dict())
        dist.barrier()
        _fit(trainer, path, config.epochs, label, quiet, command, tensorboard)
    return trainer


def _refuse_structural(saved: RunConfig, overrides: dict[str, Any], path: Path) -> None:
    """A resumed run keeps its model and data: options that would change them are refused."""
    # --init is where a new run started: a resumed one goes on from its checkpoint
    refused = {k: v for k, v in overrides.items()
               if k in RunConfig.STRUCTURAL + ("data_dir", "init") and getattr(saved, k) != v}
    if refused:
        name, value = next(iter(refused.items()))
        raise CheckpointError(
            f"--resume {path}: the run was made with {name.replace('_', '-')}="
            f"{getattr(saved, name)!r}, not {value!r}; a resumed run keeps its model and "
            f"data: drop that option or start a new run")


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k.replace('_', '-')} {a!r} -> {b!r}" for k, (a, b) in changes.items())


def resume(out: str | Path, epochs: int | None = None, overrides: dict[str, Any] | None = None,
           label: str = "", quiet: bool = False, notify: Callable[[str], None] | None = None,
           command: str | None = None, tensorboard: Events | None = None) -> Trainer:
    """Continue the run in ``out`` up to ``epochs`` epochs in all (default: its config's).

    Options that change the model or the data are refused; any other change (lr, search,
    k, device, ...) is applied from the next epoch, told through ``notify`` and recorded in
    the config's ``changes``. A folder whose first epoch never ended starts from its
    config.json."""
    path = Path(out)
    if not path.is_dir():
        raise CheckpointError(f"--resume {path} does not exist or is not a folder; give the "
                              f"folder of a run")
    overrides = dict(overrides or {})
    if overrides.get("data_dir") is not None:
        overrides["data_dir"] = str(Path(overrides["data_dir"]).expanduser().resolve())
    is_main = env_rank() == 0
    with _owned(path, is_main, "--resume"):
        if is_main:
            rundir.check_writable(path, "--resume")
        state: dict[str, Any] | None = None
        if (path / rundir.CHECKPOINT).exists() or not (path / rundir.CONFIG).exists():
            state = rundir.load_checkpoint(path)
            saved_dict, changes = state["config"], list(state.get("changes", []))
        else:
            saved_dict, changes = rundir.read_config(path)
        saved = config_of(saved_dict, path)
        done = int(state["epoch"]) if state else 0
        _refuse_structural(saved, overrides, path)
        target = saved.epochs if epochs is None else epochs
        if epochs is not None and epochs < done:
            raise UsageError(f"--resume {path}: the run has trained {done} epochs already; "
                             f"--epochs counts epochs in all, so give more than {done}")
        config = RunConfig.from_dict({**saved.to_dict(), **overrides, "epochs": target})
        config.validate()
        changed = {k: (getattr(saved, k), getattr(config, k)) for k in saved.to_dict()
                   if getattr(saved, k) != getattr(config, k)}
        dist = from_environment(config.device)
        if state and dist.is_main:
            rundir.write_files_of(path, state)  # repair files that lag the checkpoint
        if done >= target:
            if notify and dist.is_main:
                notify(f"nothing to do: {path} has trained its {done} epochs; pass --epochs "
                       f"N (in all, more than {done}) to train on")
            trainer = Trainer(saved, dist=dist)
            fit_state(trainer.load_state_dict, state or {}, path)
            return trainer
        trainer = Trainer(config, dist=dist)
        if state:
            fit_state(trainer.load_state_dict, state, path)
        if changed:
            changes.append({"epoch": done, "changed": {k: list(v) for k, v in changed.items()}})
            told = {k: v for k, v in changed.items() if k != "epochs"}
            if notify and told and dist.is_main:
                notify(f"resuming {path} at epoch {done} with {_describe(told)}")
        trainer.changes = changes
        _fit(trainer, path, config.epochs, label, quiet, command, tensorboard)
    return trainer
