"""Writes that leave either the old file or the new one, never a half-written file."""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .bounded import kind_of
from .errors import UsageError
from .staging import SUFFIX, place_locked, unheld

#: every temporary file of an atomic write holds this in its name, which no user's file
#: does: one no live writer holds (a process killed mid-write) is removed by the next write
#: of the same target
PARTIAL = "acnkit-partial-"

# mkstemp makes files readable by their owner only; give them the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)
_MODE = 0o666 & ~_UMASK


def not_regular(path: Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file (a device, a FIFO, ...):
    only regular files are ever replaced, since renaming a file over /dev/null would
    replace the device itself."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return kind_of(mode)


def refuse_irregular(path: Path, what: str) -> None:
    kind = not_regular(path)
    if kind is not None:
        raise UsageError(f"{what} {path} is {kind}; acnkit replaces regular files only: give "
                         f"the path of a file")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, rename it over
    ``path``. A ``path`` that exists and is not a regular file is refused, never replaced."""
    path = Path(path)
    refuse_irregular(path, "the target")
    with _temporary(path) as (fd, tmp):
        _written(fd, tmp, path, write)
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


@contextmanager
def _temporary(path: Path) -> Iterator[tuple[int, str]]:
    """A new temporary file beside ``path``, flock-held by this process until it is
    closed; the stale ones of the same target that no process holds are removed first.
    Both under a lock on the folder, so that no scan sees a new file before its lock."""
    prefix = f".{path.name}.{PARTIAL}"
    with place_locked(path.parent):
        remove_stale_partials(path.parent, prefix)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=SUFFIX, dir=path.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
    yield fd, tmp


def remove_stale_partials(folder: Path, prefix: str) -> list[Path]:
    """Remove the regular files ``prefix...tmp`` in ``folder`` that no live process holds
    (a link, a folder or a held file of that name is left alone); called under the
    folder's lock, so no writer takes one between the check and the removal."""
    gone: list[Path] = []
    try:
        stale = unheld(folder, prefix, folders=False)[0]
    except OSError:  # a folder that cannot be listed: nothing to tidy, the write goes on
        return gone
    for path in stale:
        try:
            path.unlink()
            gone.append(path)
        except OSError:
            continue
    return gone


def _written(fd: int, tmp: str, path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` into the temporary file ``fd``, fsync it and rename it over ``path``; the
    temporary file removed whatever stops it."""
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    def write(f: BinaryIO) -> None:
        f.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def check_target(path: str | Path, overwrite: bool, what: str) -> Path:
    """Refuse, before any work, to write over a folder, over a file unless ``overwrite``, or
    into a folder that is missing or not writable."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{what} {target} is a folder; give a file name")
    refuse_irregular(target, what)
    if target.exists() and not overwrite:
        raise UsageError(f"{what} {target} exists; pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise UsageError(f"{what} {target}: folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {target}: folder {target.parent} is not writable; choose "
                         f"another place")
    return target
