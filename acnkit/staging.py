"""Staging folders: where a command writes many files before it moves them into place,
so that an interrupted or failing command leaves its target as it was.

A staging folder is named ``<prefix>XXXXXXXX.tmp`` and locked (``flock``) by the process
that writes it for as long as that process lives. So the next writer to the same place can
tell a live writer's folder (locked: it refuses to write beside it, never mixing two
writers' files) from one that a killed process left behind (unlocked: removed). The place
itself is locked for the moment of looking and creating, so two writers starting at once
see each other.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError

#: every staging folder's name ends so
SUFFIX = ".tmp"
#: and holds this, which no other program's temporary folder does
TAG = "acnkit-staging-"
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class Busy(UsageError):
    """Another live acnkit process is writing into the same place."""


def _open_folder(path: str | Path) -> int:
    return os.open(path, _DIRECTORY | getattr(os, "O_NOFOLLOW", 0))


@contextmanager
def place_locked(place: Path) -> Iterator[None]:
    """A lock on the folder ``place`` while the block runs (a listing and a create: moments);
    none where the folder cannot be opened to hold one (the work goes on unlocked)."""
    try:
        fd = os.open(place, _DIRECTORY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a listing and a mkdir: moments
        yield
    finally:
        os.close(fd)  # closing releases the lock


def unheld(place: Path, prefix: str, folders: bool) -> tuple[list[Path], list[Path]]:
    """acnkit's own temporaries in ``place``: entries named ``prefix...`` + SUFFIX that are
    folders (``folders``) or regular files, opened without following a link (a link, or an
    entry of the other kind, is not ours), as (those no process holds: stale, those a live
    process holds). A held one is told by its writer's flock; a folder that cannot be
    listed raises OSError."""
    free: list[Path] = []
    held: list[Path] = []
    entries = list(os.scandir(place))
    flags = _DIRECTORY if folders else os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(SUFFIX)):
            continue
        try:
            fd = os.open(entry.path, flags | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            mode = os.fstat(fd).st_mode
            if not (stat.S_ISDIR(mode) if folders else stat.S_ISREG(mode)):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                free.append(Path(entry.path))
            except BlockingIOError:
                held.append(Path(entry.path))
        finally:
            os.close(fd)
    return free, held


def stale(place: Path, prefix: str) -> list[Path]:
    """The staging folders named ``prefix...`` in ``place`` that no live process holds;
    raises :class:`Busy` if one is held."""
    free, held = unheld(place, prefix, folders=True)
    if held:
        raise Busy(f"{held[0]} is being written by another acnkit process")
    return free


@contextmanager
def staging_folder(place: Path, prefix: str) -> Iterator[Path]:
    """A new, empty staging folder in ``place`` named ``prefix + TAG + ...``, locked while
    the block runs and removed after it (whatever ends it); stale staging folders of the
    same prefix there are removed first. Raises :class:`Busy` where a live process holds
    one."""
    prefix = prefix + TAG
    with place_locked(place):
        for path in stale(place, prefix):
            shutil.rmtree(path, ignore_errors=True)  # fd-based: never follows a link out
        made = tempfile.mkdtemp(prefix=prefix, suffix=SUFFIX, dir=place)
        fd = _open_folder(made)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield Path(made)
    finally:
        shutil.rmtree(made, ignore_errors=True)
        os.close(fd)
