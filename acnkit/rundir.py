"""A run folder: config.json, metrics.jsonl and checkpoint.pt.

The checkpoint is the truth: it holds the config, the metrics of every epoch and the
config's changes on resume; config.json and metrics.jsonl are written from it right after
it, each atomically, and rewritten from it on resume, so they never describe another run.
Before the first epoch ends a folder holds config.json alone, and ``--resume`` starts it.
One process owns a folder at a time (:class:`RunLock`).
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import math
import os
import pickle
import shlex
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_bytes, atomic_write_text
from .bounded import NotRegularFile, TooLarge, compressed_members, read_regular
from .errors import AcnkitError, CheckpointError, UsageError

CONFIG, METRICS, CHECKPOINT = "config.json", "metrics.jsonl", "checkpoint.pt"
#: the folder of TensorBoard event files (--tensorboard)
TENSORBOARD = "tensorboard"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT)
LOCK = ".acnkit.lock"
FORMAT = 1
#: at most this many bytes of a run's config.json or metrics.jsonl (thousands of epochs
#: take well under a megabyte)
MAX_TEXT_BYTES = 1 << 24


def quoted(path: str | Path) -> str:
    """``path`` as it must be typed in a shell command."""
    return shlex.quote(str(path))


def _ours(name: str) -> bool:
    # The lock and atomic_write's temporary files are acnkit's own, not the user's.
    return name == LOCK or (name.startswith(".") and name.endswith(".tmp"))


def check_out(out: str | Path, overwrite: bool = False, command: str = "run",
              folder: str | Path | None = None) -> Path:
    """Refuse an ``--out`` that is a file or holds something, unless ``overwrite``; the
    advice is a command that works as printed (``command``: run or compare; ``folder``:
    the --out the user gave, when ``out`` is a run inside it)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file, not a folder; choose another --out")
    if path.is_dir() and not overwrite and any(not _ours(p.name) for p in path.iterdir()):
        what = "another run" if any((path / f).exists() for f in RUN_FILES) else "other files"
        resume = (f"acnkit compare --resume --out {quoted(folder or path)}"
                  if command == "compare" else f"acnkit run --resume {quoted(path)}")
        raise UsageError(f"--out {path} already holds {what}; continue it with {resume}, "
                         f"pass --overwrite to replace it, or choose an empty folder")
    return path


class RunLock:
    """An exclusive ``flock`` on ``folder/.acnkit.lock`` while a command writes the folder.
    The kernel drops it when the process ends, however it ends, so a crash leaves no stale
    lock (a file left by kill -9 is locked by no one and taken over); the pid inside only
    names the holder in the message. A clean exit removes the file, while still holding the
    lock; whoever locked a file that was removed meanwhile locks the new one instead."""

    def __init__(self, folder: str | Path, what: str = "--out") -> None:
        self.folder, self.what = Path(folder), what
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        for _ in range(20):
            fd = self._lock(self.folder / LOCK)
            if self._still_there(fd):
                break
            os.close(fd)  # locked a file its holder removed on leaving: lock the new one
        else:
            raise AcnkitError(f"{self.what} {self.folder}: its lock file keeps changing; "
                              f"another process is using the folder")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        remove_stale_temporaries(self.folder)
        return self

    def _still_there(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.folder / LOCK).st_ino
        except FileNotFoundError:
            return False

    def _lock(self, file: Path) -> int:
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"{self.what} {self.folder} is not writable ({exc.strerror}); "
                             f"choose another folder or fix its permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AcnkitError(f"{self.what} {self.folder} is in use by another acnkit process "
                              f"(pid {holder}); wait for it to end or choose another "
                              f"folder") from None
        return fd

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            try:  # removed while locked, so no one can take the old file for a live lock
                (self.folder / LOCK).unlink()
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of writes that never finished (a process killed mid-save):
    called under the lock, so no live writer owns them."""
    gone = []
    for p in folder.glob(".*.tmp"):
        try:
            p.unlink()
            gone.append(p)
        except OSError:
            pass
    return gone


def check_writable(path: Path, what: str) -> None:
    try:
        probe = path / ".acnkit-write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{what} {path} is not writable ({exc.strerror}); choose another "
                         f"folder or fix its permissions") from None


def prepare(out: str | Path, overwrite: bool = False) -> Path:
    """Make ``out`` ready for a new run, refusing to clobber anything unless ``overwrite``."""
    path = check_out(out, overwrite)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {path} is not writable ({exc.strerror}); choose another "
                         f"folder") from None
    check_writable(path, "--out")
    return path


def clear_run(path: Path) -> None:
    """Remove an old run's checkpoint, metrics and TensorBoard events (``--overwrite``,
    under the lock), so that the folder never pairs a new config with an old checkpoint."""
    for name in (CHECKPOINT, METRICS):
        try:
            (path / name).unlink()
        except FileNotFoundError:
            pass
    remove_events(path)


def remove_events(path: Path) -> None:
    """The TensorBoard folder of a run or comparison that is being replaced (a link is
    unlinked, never followed)."""
    events = path / TENSORBOARD
    if events.is_symlink() or events.is_file():
        events.unlink()
    elif events.is_dir():
        shutil.rmtree(events)


def write_config(path: Path, config: dict[str, Any], changes: list[dict] | None = None) -> None:
    """config.json: every option, and ``changes``: what each resume changed, at which epoch."""
    text = json.dumps({**config, "changes": list(changes or [])}, indent=2) + "\n"
    atomic_write_text(path / CONFIG, text)


def read_text(file: Path, fix: str = "restore it or start a new run") -> str:
    """A text file acnkit wrote into a run or comparison folder, read only if it is a
    regular file of at most :data:`MAX_TEXT_BYTES` (a FIFO would block for ever, a huge
    file fill the memory); a CheckpointError that ends with ``fix`` otherwise."""
    try:
        return read_regular(file, MAX_TEXT_BYTES).decode()
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing; {fix}") from None
    except NotRegularFile:
        raise CheckpointError(f"{file} is not a regular file; {fix}") from None
    except TooLarge:
        raise CheckpointError(f"{file} is larger than a run writes ({MAX_TEXT_BYTES} "
                              f"bytes at most); {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} cannot be read ({exc}); {fix}") from None


def read_config(path: Path) -> tuple[dict[str, Any], list[dict]]:
    """The options and the change history in ``path/config.json``."""
    file = path / CONFIG
    try:
        data = json.loads(read_text(file))
    except ValueError as exc:
        raise CheckpointError(f"{file} cannot be read ({exc}); restore it or start a new "
                              f"run") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} does not hold a run's options")
    changes = data.pop("changes", [])
    return data, changes if isinstance(changes, list) else []


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    # The whole file is rewritten each epoch: a crash leaves the previous complete file.
    atomic_write_text(path / METRICS, "".join(json.dumps(m) + "\n" for m in history))


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def read_metrics(path: Path, required: tuple[str, ...] = (),
                 optional: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The figures of every epoch in ``path/metrics.jsonl``: one JSON object a line, its
    epochs 1, 2, ... in order, each with the ``required`` figures as finite numbers, and
    the ``optional`` ones too where a line has them."""
    file = path / METRICS
    if not file.exists():
        raise CheckpointError(f"{file} does not exist: {path} is not a run folder, or its "
                              f"run has not finished an epoch")
    history = []
    for number, line in enumerate(read_text(file).splitlines(), 1):
        try:
            m = json.loads(line)
        except ValueError:
            m = None
        what = None
        if not isinstance(m, dict) or type(m.get("epoch")) is not int or m["epoch"] != number:
            what = f"is not the JSON figures of epoch {number}"
        else:
            bad = [k for k in (*required, *(k for k in optional if k in m))
                   if not _finite(m.get(k))]
            what = f"lacks {', '.join(bad)} as numbers" if bad else None
        if what:
            raise CheckpointError(f"{file} line {number} {what}; restore the file (acnkit run "
                                  f"--resume {quoted(path)} rewrites it from the checkpoint)")
        history.append(m)
    if not history:
        raise CheckpointError(f"{file} holds no epoch yet")
    return history


def archive_bytes(state: dict[str, Any]) -> bytes:
    """What ``torch.save`` writes of ``state``, serialised in memory: a full disk then
    fails as a plain OSError on the write (torch.save into a file reports it as an
    unrelated "unexpected pos" error)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """The checkpoint, serialised in memory first (:func:`archive_bytes`)."""
    file = path / CHECKPOINT
    try:
        atomic_write_bytes(file, archive_bytes(state))
    except OSError as exc:
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else exc.strerror
        kept = (f"the checkpoint of epoch {state['epoch'] - 1} is kept" if state["epoch"] > 1
                else "the folder keeps the run's config")
        raise AcnkitError(f"cannot write {file} ({reason}); {kept}: free space, then "
                          f"continue with `acnkit run --resume {quoted(path)}`") from None


def save_run(path: Path, state: dict[str, Any]) -> None:
    """The checkpoint, then the two files derived from it."""
    save_checkpoint(path, state)
    write_files_of(path, state)


def write_files_of(path: Path, state: dict[str, Any]) -> None:
    write_metrics(path, state["history"])
    write_config(path, state["config"], state.get("changes"))


def _regular(file: Path) -> bool:
    try:
        return stat.S_ISREG(file.stat().st_mode)
    except OSError:
        return False


def load_archive(file: Path, what: str = "checkpoint",
                 fix: str = "restore the file or start a new run",
                 map_location: str | torch.device = "cpu") -> Any:
    """What ``torch.save`` wrote to ``file`` (a ``what``), read with ``weights_only=True``
    (pickled objects are refused) after the checks that keep a hostile file from blocking or
    from filling the memory; every failure one line."""
    if not _regular(file):  # a FIFO or device would block torch.load for ever
        raise CheckpointError(f"{file} is not a regular file; {fix}")
    if not zipfile.is_zipfile(file):
        raise CheckpointError(f"{file} is corrupt or not a {what} (not a torch archive); "
                              f"{fix}")
    try:
        packed = compressed_members(file)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{file} is corrupt or not a {what} ({exc}); {fix}") from None
    if packed:
        raise CheckpointError(f"{file} holds compressed members ({packed[0]}), which "
                              f"torch.save never writes and which could unpack to more than "
                              f"the memory holds; use a {what} acnkit wrote")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
        found_what = found[0][:120] if found else "objects other than tensors"
        raise CheckpointError(f"{file} holds pickled Python objects, which acnkit refuses to "
                              f"load ({found_what}); use a {what} acnkit wrote") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{file} is corrupt or not a {what} ({first[:120]}); "
                              f"{fix}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load ``path/checkpoint.pt`` with ``weights_only=True``: pickled objects are refused."""
    path = Path(path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.exists():
        raise CheckpointError(f"{file} does not exist; only a run that finished at least one "
                              f"epoch can be resumed or evaluated")
    state = load_archive(file, map_location=map_location)
    if not isinstance(state, dict) or "format" not in state or "config" not in state:
        raise CheckpointError(f"{file} is not an acnkit checkpoint")
    if state["format"] != FORMAT:
        raise CheckpointError(f"{file} has checkpoint format {state['format']!r}; this acnkit "
                              f"reads format {FORMAT}: use the acnkit version that wrote it")
    for key, kind, name in (("epoch", int, "whole number"), ("history", list, "list"),
                            ("config", dict, "dict"), ("modules", dict, "dict"),
                            ("optimizer", dict, "dict")):
        if key not in state:
            raise CheckpointError(f"{file} lacks {key!r}; it was not written by this acnkit "
                                  f"or was edited: restore it or start a new run")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise CheckpointError(f"{file}: {key!r} is a {type(state[key]).__name__}, not "
                                  f"a {name}; restore the file or start a new run")
    return state
