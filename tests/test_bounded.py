"""read_regular: hostile paths are refused at once, never read past the limit."""

import os
import stat

import pytest

from acnkit import bounded
from acnkit.bounded import NotRegularFile, TooLarge, read_regular


def test_a_regular_file_is_read_whole_up_to_the_limit(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"x" * 10)
    assert read_regular(f, 10) == b"x" * 10
    link = tmp_path / "link"
    link.symlink_to(f)
    assert read_regular(link, 10) == b"x" * 10  # a link to a regular file is followed
    with pytest.raises(TooLarge):
        read_regular(f, 9)


@pytest.mark.timeout(20)
def test_what_is_no_regular_file_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # a plain read would wait for a writer for ever
    for path, kind in [(fifo, "a FIFO"), (tmp_path, "a folder"),
                       ("/dev/zero", "a character device")]:
        with pytest.raises(NotRegularFile) as caught:
            read_regular(path, 100)
        assert caught.value.kind == kind
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "none", 100)


@pytest.mark.timeout(20)
def test_a_fifo_put_in_place_after_the_first_check_is_refused_through_the_descriptor(
        tmp_path, monkeypatch):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real_stat = os.stat

    class Regular:
        st_mode = stat.S_IFREG | 0o644

    # The path checks as a regular file, then is a FIFO when opened.
    monkeypatch.setattr(bounded.os, "stat", lambda p, *a, **k: Regular()
                        if str(p) == str(fifo) else real_stat(p, *a, **k))
    with pytest.raises(NotRegularFile) as caught:
        read_regular(fifo, 100)
    assert caught.value.kind == "a FIFO"


def test_gunzip_stops_at_the_limit_and_reads_every_member():
    import gzip
    import zlib

    data = bytes(range(256)) * 100
    packed = gzip.compress(data)
    assert bounded.gunzip(packed, len(data)) == data
    assert bounded.gunzip(packed + gzip.compress(b"more"), len(data) + 4) == data + b"more"
    padded = packed + bytes(8)  # zero padding after a member, which gzip reads past
    assert bounded.gunzip(padded, len(data)) == gzip.decompress(padded) == data
    with pytest.raises(TooLarge):
        bounded.gunzip(packed, len(data) - 1)
    with pytest.raises(TooLarge):  # the second member passes the limit
        bounded.gunzip(packed + gzip.compress(b"more"), len(data) + 3)
    with pytest.raises(EOFError):
        bounded.gunzip(packed[:-20], len(data))
    with pytest.raises(zlib.error):
        bounded.gunzip(b"\x1f\x8b" + b"\0" * 30, 100)


def test_gunzip_reads_a_member_whose_end_comes_after_a_full_chunk(monkeypatch):
    """A member that fills a chunk and ends in the next call, with members after it: zlib
    keeps the rest as the ended member's tail too, and decompressing that again once
    looped for ever, growing its unused data. The stream must come back as gzip reads it."""
    import gzip

    monkeypatch.setattr(bounded, "GUNZIP_CHUNK", 1024)
    data = gzip.compress(bytes(1024) + b"tail") + gzip.compress(b"next") * 3
    assert bounded.gunzip(data, 1 << 20) == gzip.decompress(data)
    with pytest.raises(TooLarge):
        bounded.gunzip(data, 1024 + 4 + 8)
