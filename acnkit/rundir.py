"""A run folder: config.json, metrics.jsonl and checkpoint.pt, each written atomically."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write, atomic_write_text
from .errors import CheckpointError, UsageError

CONFIG, METRICS, CHECKPOINT = "config.json", "metrics.jsonl", "checkpoint.pt"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT)


def check_out(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse an ``--out`` that is a file or holds something, unless ``overwrite``."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file, not a folder; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        what = "another run" if any((path / f).exists() for f in RUN_FILES) else "other files"
        raise UsageError(f"--out {path} already holds {what}; pass --resume {path} to continue "
                         f"it, --overwrite to replace it, or choose an empty folder")
    return path


def prepare(out: str | Path, overwrite: bool = False) -> Path:
    """Make ``out`` ready for a new run, refusing to clobber anything unless ``overwrite``."""
    path = check_out(out, overwrite)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".acnkit-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {path} is not writable ({exc.strerror}); choose another "
                         f"folder") from None
    return path


def write_config(path: Path, config: dict[str, Any]) -> None:
    atomic_write_text(path / CONFIG, json.dumps(config, indent=2) + "\n")


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    # The whole file is rewritten each epoch: a crash leaves the previous complete file.
    atomic_write_text(path / METRICS, "".join(json.dumps(m) + "\n" for m in history))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path / CHECKPOINT, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load ``path/checkpoint.pt`` with ``weights_only=True``: pickled objects are refused."""
    path = Path(path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.exists():
        raise CheckpointError(f"{file} does not exist; only a run that finished at least one "
                              f"epoch can be resumed or evaluated")
    if file.is_file() and not zipfile.is_zipfile(file):
        raise CheckpointError(f"{file} is corrupt or not a checkpoint (not a torch archive); "
                              f"restart the run or restore the file")
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
        what = found[0][:120] if found else "objects other than tensors"
        raise CheckpointError(f"{file} holds pickled Python objects, which acnkit refuses to "
                              f"load ({what}); use a checkpoint acnkit wrote") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{file} is corrupt or not a checkpoint ({first[:120]}); "
                              f"restart the run or restore the file") from None
    if not isinstance(state, dict) or state.get("format") != 1 or "config" not in state:
        raise CheckpointError(f"{file} is not an acnkit checkpoint")
    return state
