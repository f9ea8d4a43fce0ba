"""Trained models that travel without their run: a run's networks exported into one small
file (no optimiser state, no code store, no data), the models acnkit ships in the
``acnkit.models`` package (the repository's ``models/`` folder), and finding one by name
or by the fingerprint a compressed file records.

A model folder holds ``model.pt`` (the config, the image shape and levels, the networks'
weights and the model's fingerprint) and ``model.json`` (what it is, for people and for
``acnkit models``). Loading rebuilds the networks from the config, loads the weights and
checks the fingerprint, so an edited or damaged file is refused, never used to code.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from . import rundir
from .atomic import atomic_write_bytes, atomic_write_text
from .config import RunConfig
from .errors import CheckpointError, UsageError
from .model import Model, build_model
from .trained import config_of, fit_state, load_run

MODEL_FILE, INFO_FILE = "model.pt", "model.json"
#: what model.pt holds: {"format", "kind", "name", "config", "image_shape", "levels",
#: "modules", "fingerprint"}
MODEL_FORMAT, MODEL_KIND = 1, "acnkit-model"
#: a model's name: what `--model NAME` takes and its folder is called
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


@dataclass
class Trained:
    """A model loaded from a model folder, with what ``model.json`` says of it; has the
    ``model`` and ``config`` a command needs of a run."""

    name: str
    path: Path
    model: Model
    info: dict[str, Any]

    @property
    def config(self) -> RunConfig:
        return self.model.config


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UsageError(f"model name {name!r} is not allowed; use 1 to 40 lower-case letters, "
                         f"digits and hyphens, starting with a letter or digit")
    return name


def shipped_root() -> Path:
    """The folder of the models acnkit ships (one folder a model)."""
    return Path(str(resources.files("acnkit.models")))


def shipped() -> dict[str, dict[str, Any]]:
    """Each shipped model's ``model.json`` by name (folders without one are not models)."""
    found = {}
    root = shipped_root()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        info = folder / INFO_FILE
        if folder.is_dir() and NAME.fullmatch(folder.name) and info.is_file():
            try:
                found[folder.name] = json.loads(info.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # a damaged listing hides the model; loading it says why
    return found


def model_folder(name_or_path: str) -> Path:
    """A shipped model's folder by name, or a model folder given as a path."""
    given = Path(name_or_path)
    if (given / MODEL_FILE).exists() or "/" in name_or_path or name_or_path in (".", ".."):
        return given
    names = shipped()
    if name_or_path not in names:
        listed = ", ".join(names) or "none"
        raise UsageError(f"no model named {name_or_path!r} is shipped (shipped: {listed}); "
                         f"give one of those, or a model folder made by `acnkit models export`")
    return shipped_root() / name_or_path


def by_fingerprint(prefix: str) -> str | None:
    """The name of the shipped model whose fingerprint starts with ``prefix``, if any."""
    for name, info in shipped().items():
        fingerprint = info.get("fingerprint")
        if prefix and isinstance(fingerprint, str) and fingerprint.startswith(prefix):
            return name
    return None


def _field(state: dict[str, Any], key: str, kind: type, file: Path) -> Any:
    value = state.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CheckpointError(f"{file}: {key!r} is missing or not a {kind.__name__}; it was "
                              f"not written by `acnkit models export` or was edited")
    return value


def load_model(name_or_path: str, device: str = "cpu") -> Trained:
    """The model of a shipped name or a model folder, its weights checked against its
    fingerprint. Raises :class:`~acnkit.errors.CheckpointError` for a damaged or foreign
    file, :class:`~acnkit.errors.UsageError` for an unknown name."""
    folder = model_folder(name_or_path)
    file = folder / MODEL_FILE
    if not file.exists():
        raise CheckpointError(f"{file} does not exist; a model folder holds {MODEL_FILE} and "
                              f"{INFO_FILE} (`acnkit models export` writes them)")
    fix = "restore the model folder or export it again"
    state = rundir.load_archive(file, "model file", fix)
    if not isinstance(state, dict) or state.get("kind") != MODEL_KIND:
        raise CheckpointError(f"{file} is not an acnkit model file; {fix}")
    if state.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{file} has model format {state.get('format')!r}; this acnkit "
                              f"reads format {MODEL_FORMAT}: use the acnkit version that wrote it")
    config = config_of(_field(state, "config", dict, file), file)
    config.device = device
    shape = tuple(_field(state, "image_shape", list, file))
    levels = _field(state, "levels", int, file)
    if not (1 <= len(shape) <= 3 and all(isinstance(s, int) and 0 < s <= 1 << 14 for s in shape)
            and math.prod(shape) <= 1 << 24 and 2 <= levels <= 256):
        raise CheckpointError(f"{file} describes images of shape {shape} with {levels} levels, "
                              f"which acnkit does not make; {fix}")
    modules = _field(state, "modules", dict, file)
    fingerprint = _field(state, "fingerprint", str, file)
    model = build_model(config, shape, torch.device(device), levels=levels)
    fit_state(lambda s: model.load_state_dict(s), modules, folder, MODEL_FILE)
    if model.fingerprint() != fingerprint:
        raise CheckpointError(f"{file}: the weights do not match the fingerprint written with "
                              f"them (the file was edited or damaged); {fix}")
    info: dict[str, Any] = {}
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass  # the description only; the model itself was checked above
    return Trained(str(state.get("name", folder.name)), folder, model.eval(), info)


def export(run_dir: str | Path, name: str, out: Path, made_by: str = "",
           overwrite: bool = False) -> dict[str, Any]:
    """Write the model of the run in ``run_dir`` into folder ``out`` as model ``name``;
    returns what ``model.json`` says. The fingerprint is the run's own, so files the run
    made decode with the exported model and the reverse."""
    check_name(name)
    run = load_run(run_dir, "cpu")
    model = run.model
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out} already holds files; give --overwrite to replace the model "
                         f"there, or another folder")
    modules = {part: {k: v.detach().cpu().clone() for k, v in weights.items()}
               for part, weights in model.state_dict().items()}
    fingerprint = model.fingerprint()
    state = {"format": MODEL_FORMAT, "kind": MODEL_KIND, "name": name,
             "config": model.config.to_dict(), "image_shape": list(model.image_shape),
             "levels": int(model.levels), "modules": modules, "fingerprint": fingerprint}
    last = run.history[-1] if run.history else {}
    c = model.config
    info = {
        "name": name, "fingerprint": fingerprint, "image_shape": list(model.image_shape),
        "levels": int(model.levels),
        "what": f"{c.prior} prior, {c.encoder} encoder, {c.decoder} decoder, {c.loss} "
                f"likelihood; {run.epoch} epoch{'s' * (run.epoch != 1)} on " + (
                    f"{c.patches} patches drawn afresh from its training photos"
                    if c.patches else
                    f"{'the first ' + str(c.train_limit) if c.train_limit else 'all'} "
                    f"{c.data} training images"),
        "parameters": sum(int(t.numel()) for part in modules.values() for t in part.values()),
        "epoch": run.epoch,
        "test_bits_per_dim": last.get("test_bits_per_dim"),
        "test_nats": last.get("test_nats"),
        "made_by": made_by,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / MODEL_FILE, rundir.archive_bytes(state))
    atomic_write_text(out / INFO_FILE, json.dumps(info, indent=2) + "\n")
    return info

