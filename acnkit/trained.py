"""A trained run read back from its folder: its model, its images, its history.

What evaluation, the codec, daydreams, samples, ``bench codec`` and command plugins work
with; no optimiser, generator or training state is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from . import rundir, threads
from .config import RunConfig
from .data import RunData, load_data
from .distributed import resolve_device
from .errors import CheckpointError, UsageError
from .model import Model, build_model
from .registry import get_registry


def config_of(data: dict[str, Any], path: Path) -> RunConfig:
    """A saved config, or a one-line error naming the folder if this acnkit cannot read it."""
    try:
        return RunConfig.from_dict(data).validate()
    except (UsageError, TypeError) as exc:
        raise CheckpointError(f"{path} holds a config this acnkit cannot use ({exc}); it "
                              f"was written by another version or edited") from None


def fit_state(load: Callable[[dict[str, Any]], Any], state: dict[str, Any], path: Path,
              file: str = rundir.CHECKPOINT) -> Any:
    """``load(state)`` and what it returns, its failures told as a checkpoint (``path /
    file``) that does not fit its config."""
    try:
        return load(state)
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        # torch's first line only names the module; the second says what does not fit
        first = " ".join(str(exc).strip().splitlines()[:2]).strip()[:200] or type(exc).__name__
        raise CheckpointError(f"{path / file} does not fit the model its config "
                              f"describes ({type(exc).__name__}: {first}); it was written by "
                              f"another version or edited: restore it or start a new "
                              f"run") from None


@dataclass
class Run:
    """A trained run, loaded from its folder: what a command plugin works with."""

    path: Path
    #: encoder, decoder, prior and likelihood (in eval mode), config and device
    model: Model
    #: the run's images, binarised with its own data seed
    data: RunData
    #: the metrics of every epoch, as in metrics.jsonl
    history: list[dict[str, Any]]
    epoch: int
    #: ACN's code store as training left it (one row per training image); None for a VAE
    store: Tensor | None = None

    @property
    def config(self) -> RunConfig:
        return self.model.config

    def codes(self, split: str = "train") -> Tensor:
        """The codes (posterior means) of the ``split`` images ("train" or "test"; the
        validation images when the run held some out), from the model as it is now."""
        return self.model.encode(self.data.split(split)).mean


def _restore(model: Model, n: int, state: dict[str, Any]) -> Tensor | None:
    """Load the networks' weights into ``model``; the code store of a conditional prior."""
    model.load_state_dict(state["modules"])
    if not model.conditional:
        return None
    store = state.get("store")
    if not isinstance(store, Tensor) or tuple(store.shape) != (n, model.latent_dim):
        raise KeyError(f"store: the code store is missing or not of shape "
                       f"({n}, {model.latent_dim})")
    return store.to(model.device)


def load_run(run_dir: str | Path, device: str | None = None,
             data_dir: str | None = None, thread_count: int | None = None) -> Run:
    """Load the run in folder ``run_dir`` (on ``device``, default the run's own; with its
    IDX files from ``data_dir`` if they moved; torch's threads ``thread_count``, default
    as :func:`acnkit.threads.choose` says). Raises :class:`~acnkit.errors.CheckpointError`
    for a missing, corrupt or foreign checkpoint."""
    path = Path(run_dir)
    state = rundir.load_checkpoint(path)
    config = config_of(state["config"], path)
    if device is not None:
        config.device = device
    if data_dir is not None:
        config.data_dir = str(Path(data_dir).expanduser().resolve())
    config.validate()
    threads.apply(thread_count)  # --threads, ACNKIT_THREADS, or the cores free now
    torch_device = resolve_device(config.device)
    data = load_data(config, get_registry(), torch_device)
    model = build_model(config, data.image_shape, torch_device, levels=data.levels)
    store = fit_state(lambda s: _restore(model, len(data.train_x), s), state, path)
    return Run(path, model.eval(), data, list(state["history"]), int(state["epoch"]), store)

