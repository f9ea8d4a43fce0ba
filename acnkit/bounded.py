"""Reads of files that may be hostile: a regular file only (a FIFO would block the read
for ever, a device never end it), and never more than a stated number of bytes (a huge
file would fill the memory). Each caller words its own refusals; this module says only
which one applies."""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

#: the most bytes acnkit reads of one input (an array, an image, a compressed file) or
#: holds of one data set file (after gzip); a larger one is refused, never read whole
MAX_INPUT_BYTES = 1 << 31


class Refused(Exception):
    """A file read_regular will not read; its text names the path and why, for a caller
    to add what to do."""


class NotRegularFile(Refused):
    """The path exists and is a folder, a FIFO, a device, a socket: ``kind`` says which."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.kind = kind


class TooLarge(Refused):
    """The file (or what it unpacks to) holds more than the limit."""


def kind_of(mode: int) -> str:
    """What a file of ``os.stat`` mode ``mode`` is, in the words refusals use."""
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a link"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (links followed), at most ``limit`` of them.

    Raises :class:`NotRegularFile` or :class:`TooLarge`, or the OSError that opening or
    reading raised (FileNotFoundError for a missing file). The file is checked both before
    it is opened (opening some devices has effects) and, through the open descriptor,
    after (a FIFO put in its place between the two would otherwise block the read);
    ``O_NONBLOCK`` keeps the open itself from waiting for a FIFO's writer."""
    path = Path(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(path, kind_of(mode))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, kind_of(mode))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{path} holds more than {limit} bytes")
    return data


#: gzip is unpacked this many bytes at a time: the memory it takes beyond its output
GUNZIP_CHUNK = 1 << 24


def gunzip(data: bytes | bytearray, limit: int,
           claimed: Callable[[bytes], int | None] | None = None) -> bytearray:
    """``data`` (one or more gzip members) decompressed, refused with :class:`TooLarge`
    as soon as it passes ``limit`` bytes: a few megabytes of gzip can unpack to more than
    the memory holds. Unpacked :data:`GUNZIP_CHUNK` bytes at a time into one buffer, so the
    memory taken is about the output's size. ``claimed``, given the first chunk, may say
    how many bytes the whole holds (a file format's header): more than ``limit`` is refused
    before anything else is unpacked, and the output never grows past it (one byte more
    tells the caller the data run on). Zero bytes after a member are padding, skipped as
    gzip skips them. A stream cut short raises EOFError, damaged data zlib.error."""
    out = bytearray()
    most = limit
    while data:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        tail = data
        while True:
            chunk = member.decompress(tail, min(GUNZIP_CHUNK, most + 1 - len(out)))
            tail = member.unconsumed_tail
            if claimed is not None and not out and chunk:
                size = claimed(chunk)
                if size is not None and size > limit:
                    raise TooLarge(f"its header claims {size} bytes, more than {limit}")
                most = limit if size is None else size
            out += chunk
            if len(out) > most:
                if most < limit:
                    return out  # more than claimed: the caller says what that means
                raise TooLarge(f"the gzip data unpack to more than {limit} bytes")
            if member.eof or not (chunk or tail):  # at its end the member keeps the rest
                break  # as its tail too: decompressing it again would loop for ever
        if not member.eof:
            raise EOFError("the gzip stream is cut short")
        data = member.unused_data.lstrip(b"\0")
    return out


def compressed_members(archive: Path | IO[bytes]) -> list[str]:
    """The members of a zip archive (a torch checkpoint) that are stored compressed.
    torch.save stores every member as it is, so a checkpoint's tensors never take more
    memory than its size; torch.load inflates compressed members too, and a few kilobytes
    of them can unpack to more than the memory holds. Raises zipfile.BadZipFile."""
    with zipfile.ZipFile(archive) as z:
        return [m.filename for m in z.infolist() if m.compress_type != zipfile.ZIP_STORED]
