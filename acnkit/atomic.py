"""Writes that leave either the old file or the new one, never a half-written file."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .bounded import kind_of
from .errors import UsageError

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
