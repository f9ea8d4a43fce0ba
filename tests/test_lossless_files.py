"""Lossless means lossless: every image file given to ``compress`` comes back from
``decompress`` pixel for pixel, in its own mode and container, or is refused in one line
with nothing written; signals clean up what a command was writing; memory stays near the
work however large the input claims to be. One test per kind of file that once came back
different with exit 0, then a fresh set of kinds no row names, held to the same rule."""

import fcntl
import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import as_from_a_terminal
from PIL import Image
from test_hostile_io import one_line_failure

from acnkit.cli import main

STAGING = "acnkit-staging-"


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def refused(r, *words, code=2):
    """One `error:` line naming ``words``, exit ``code`` (2: usage, 1: a damaged file), no
    traceback."""
    one_line_failure(r, code)
    for word in words:
        assert word in r.stderr, (word, r.stderr)


def _run(folder, *options):
    r = invoke("run", "--epochs", 1, "--latent-dim", 4, "--encoder-hidden", 32,
               "--decoder-hidden", 32, "--out", folder, "--quiet", *options)
    assert r.exit_code == 0, r.output
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A binary digits run (8x8), an 8-bit grey run (8x8) and an 8-bit RGB run (4 wide,
    5 high), each trained for a moment: exactness does not depend on how well they code."""
    base = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(3)
    grey, rgb = base / "grey-data", base / "rgb-data"
    grey.mkdir()
    rgb.mkdir()
    for i in range(24):
        ramp = np.linspace(0, 200, 8)[None, :]
        Image.fromarray((ramp + rng.integers(0, 40, (8, 8))).astype(np.uint8), "L").save(
            grey / f"{i:03d}.png")
        ramp3 = np.linspace(0, 200, 4)[None, :, None]
        Image.fromarray((ramp3 + rng.integers(0, 40, (5, 4, 3))).astype(np.uint8), "RGB").save(
            rgb / f"{i:03d}.png")
    return {
        "binary": _run(base / "binary", "--train-limit", 200, "--test-limit", 30),
        "grey": _run(base / "grey", "--data", "images", "--data-dir", grey, "--pixels", "native"),
        "rgb": _run(base / "rgb", "--data", "images", "--data-dir", rgb, "--pixels", "native"),
    }


SIZE = {"binary": (8, 8), "grey": (8, 8), "rgb": (5, 4)}  # (height, width)


def refused_file(runs, kind, path, *words):
    """``path`` compressed with the ``kind`` run is refused naming ``words``; no file."""
    out = path.parent / (path.name + ".acnz")
    refused(invoke("compress", runs[kind], path, "-o", out), path.name, *words)
    assert not out.exists()


def comes_back(runs, kind, folder, tmp_path):
    """Every file of ``folder`` compresses with the ``kind`` run and decompresses to a file of
    the same name, container, mode and pixels."""
    tmp_path.mkdir(exist_ok=True)
    file, out = tmp_path / "back.acnz", tmp_path / "back"
    r = invoke("compress", runs[kind], folder, "-o", file)
    assert r.exit_code == 0, r.output
    r = invoke("decompress", file, "--run", runs[kind], "-o", f"{out}/")
    assert r.exit_code == 0, r.output
    given = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == given
    for name in given:
        with Image.open(folder / name) as a, Image.open(out / name) as b:
            assert (b.format, b.mode, b.size) == (a.format, a.mode, a.size), name
            assert np.array_equal(np.asarray(b), np.asarray(a)), name


# -- PNG chunks written by hand: what Pillow will not write ------------------------------------

def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(path, width, height, depth, colour, samples, extra=()):
    """A PNG of ``samples`` (height, width, channels) at ``depth`` bits and PNG colour
    type ``colour``, with ``extra`` chunks before the pixels."""
    samples = np.asarray(samples).reshape(height, width, -1)
    if depth == 16:
        rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    elif depth == 8:
        rows = samples.astype(np.uint8).reshape(height, -1)
    else:  # packed below a byte, the first pixel in the high bits
        bits = np.unpackbits(samples.astype(np.uint8).reshape(height, -1, 1), axis=2,
                             count=8)[:, :, 8 - depth:]
        rows = np.packbits(bits.reshape(height, -1), axis=1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(extra)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def noise(kind, channels=None, top=256, seed=0):
    h, w = SIZE[kind]
    c = channels or (3 if kind == "rgb" else 1)
    return np.random.default_rng(seed).integers(0, top, (h, w, c))


# -- 1. depth: 16 bits is not 8 ----------------------------------------------------------------

def test_sixteen_bit_rgb_and_rgba_pngs_are_refused(runs, tmp_path):
    h, w = SIZE["rgb"]
    refused_file(runs, "rgb", png(tmp_path / "deep.png", w, h, 16, 2, noise("rgb", top=65536)),
                 "16-bit RGB PNG", "16 bits a sample", "convert it to 8 bits")
    refused_file(runs, "rgb", png(tmp_path / "deepa.png", w, h, 16, 6,
                                  noise("rgb", 4, top=65536)), "16-bit RGBA PNG", "alpha")
    refused_file(runs, "grey", png(tmp_path / "grey16.png", 8, 8, 16, 0,
                                   noise("grey", top=65536)), "16-bit grey PNG", "8 bits")


# -- 2. alpha and transparency are pixels too --------------------------------------------------

def test_alpha_and_transparency_are_refused_not_dropped(runs, tmp_path):
    h, w = SIZE["rgb"]
    Image.fromarray(noise("rgb", 4).astype(np.uint8), "RGBA").save(tmp_path / "rgba.png")
    refused_file(runs, "rgb", tmp_path / "rgba.png", "RGBA PNG", "alpha", "convert('RGB')")
    Image.fromarray(noise("grey", 2).astype(np.uint8), "LA").save(tmp_path / "la.png")
    refused_file(runs, "grey", tmp_path / "la.png", "grey+alpha PNG", "alpha")
    grey = Image.fromarray(noise("grey").astype(np.uint8)[:, :, 0], "L")
    grey.save(tmp_path / "trns.png", transparency=int(np.asarray(grey)[0, 0]))
    refused_file(runs, "grey", tmp_path / "trns.png", "transparent (tRNS)")
    colour = Image.fromarray(noise("rgb").astype(np.uint8), "RGB")
    colour.save(tmp_path / "rgbtrns.png", transparency=tuple(int(v) for v in
                                                                np.asarray(colour)[0, 0]))
    refused_file(runs, "rgb", tmp_path / "rgbtrns.png", "transparent (tRNS)")
    paletted = colour.convert("P")
    paletted.save(tmp_path / "ptrns.png", transparency=0)
    refused_file(runs, "rgb", tmp_path / "ptrns.png", "paletted PNG")
    grey.convert("P").save(tmp_path / "greyptrns.png", transparency=0)
    refused_file(runs, "grey", tmp_path / "greyptrns.png", "paletted PNG")


# -- 3. colour spaces that are not grey or RGB -------------------------------------------------

@pytest.mark.parametrize("mode,save,words", [
    ("CMYK", {"format": "JPEG"}, "CMYK JPEG"),  # a JPEG named .png
    ("CMYK", {"format": "TIFF"}, "CMYK TIFF"),
    ("LAB", {"format": "TIFF"}, "CIELab TIFF"),
    ("YCbCr", {"format": "TIFF"}, "YCbCr TIFF"),
])
def test_other_colour_spaces_are_refused_naming_the_conversion(runs, tmp_path, mode, save,
                                                               words):
    h, w = SIZE["rgb"]
    image = Image.fromarray(noise("rgb").astype(np.uint8), "RGB").convert(mode)
    path = tmp_path / ("cmyk.png" if save["format"] == "JPEG" else f"{mode}.tif")
    image.save(path, **save)
    refused_file(runs, "rgb", path, words, "not invertible", "convert it to RGB")


# -- 4. every frame or none --------------------------------------------------------------------

def test_pages_and_animations_are_refused_not_cut_to_the_first(runs, tmp_path):
    frames = [Image.fromarray(noise("grey", seed=s).astype(np.uint8)[:, :, 0], "L")
              for s in range(3)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    refused_file(runs, "grey", tmp_path / "pages.tif", "3 pages (a multi-page TIFF)")
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    refused_file(runs, "grey", tmp_path / "anim.png", "3 frames (an animation)")
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    refused_file(runs, "grey", tmp_path / "anim.gif", "3 frames (an animation)")
    colour = [Image.fromarray(noise("rgb", seed=s).astype(np.uint8), "RGB") for s in range(2)]
    colour[0].save(tmp_path / "anim-rgb.png", save_all=True, append_images=colour[1:])
    refused_file(runs, "rgb", tmp_path / "anim-rgb.png", "2 frames")


# -- what comes back: every accepted kind, mode and container kept -----------------------------

def test_one_bit_grey_and_rgb_files_come_back_exactly_in_their_own_mode(runs, tmp_path):
    rng = np.random.default_rng(1)
    binary = tmp_path / "binary"
    (binary / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.pbm", "c.tif"):
        Image.fromarray(rng.integers(0, 2, (8, 8)).astype(bool)).save(binary / name)
    for name in ("d.png", "e.pgm", "f.tiff"):  # grey files of 0 and 255 come back grey
        Image.fromarray(rng.integers(0, 2, (8, 8)).astype(np.uint8) * 255).save(binary / name)
    comes_back(runs, "binary", binary, tmp_path / "1")

    grey = tmp_path / "grey"
    grey.mkdir()
    for name in ("a.png", "b.pgm", "c.tif"):
        Image.fromarray(rng.integers(0, 256, (8, 8)).astype(np.uint8), "L").save(grey / name)
    for name in ("d.png", "e.pbm"):  # 1-bit files on a grey run come back 1-bit
        Image.fromarray(rng.integers(0, 2, (8, 8)).astype(bool)).save(grey / name)
    comes_back(runs, "grey", grey, tmp_path / "2")

    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for name in ("a.png", "b.ppm", "c.tif"):
        Image.fromarray(rng.integers(0, 256, (5, 4, 3)).astype(np.uint8), "RGB").save(rgb / name)
    comes_back(runs, "rgb", rgb, tmp_path / "3")


def test_a_file_of_one_format_under_another_suffix_is_refused(runs, tmp_path):
    image = Image.fromarray(noise("grey").astype(np.uint8)[:, :, 0], "L")
    image.save(tmp_path / "really-a-tiff.png", format="TIFF")
    refused_file(runs, "grey", tmp_path / "really-a-tiff.png", "grey TIFF file named .png",
                 "convert it to PNG")
    image.save(tmp_path / "photo.jpg")
    refused_file(runs, "grey", tmp_path / "photo.jpg", "is named .jpg", "convert it to PNG")


# -- 7 and 8. arrays no image can be made of ---------------------------------------------------

def test_a_timedelta_array_and_a_damaged_npy_header_are_one_line(runs, tmp_path):
    np.save(tmp_path / "td.npy", np.zeros((2, 1, 8, 8), dtype="timedelta64[s]"))
    r = invoke("compress", runs["binary"], "--input", tmp_path / "td.npy", "-o",
               tmp_path / "td.acnz")
    refused(r, "timedelta64")
    np.save(tmp_path / "bad.npy", np.zeros((2, 1, 8, 8), dtype=np.uint8))
    data = (tmp_path / "bad.npy").read_bytes()
    header_end = data.index(b"}")
    (tmp_path / "bad.npy").write_bytes(data[:header_end].replace(b"(", b"((") + data[header_end:])
    r = invoke("compress", runs["binary"], "--input", tmp_path / "bad.npy", "-o",
               tmp_path / "bad.acnz")
    refused(r, "is not a .npy array of numbers")
    assert not (tmp_path / "td.acnz").exists() and not (tmp_path / "bad.acnz").exists()


# -- 12. a FIFO nobody writes to ---------------------------------------------------------------

def _acnkit(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "acnkit", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_from_a_terminal, **kwargs)


def test_a_fifo_without_a_writer_is_waited_for_saying_so_and_stops_on_sigterm(runs, tmp_path):
    fifo = tmp_path / "images.npy"
    os.mkfifo(fifo)
    p = _acnkit("compress", runs["binary"], "--input", fifo, "-o", tmp_path / "f.acnz")
    line = p.stderr.readline()  # comes after a second without a writer
    assert "waiting for data on FIFO" in line and "Ctrl-C" in line, line
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and err.count("\n") == 1 and "SIGTERM" in err, err
    assert not (tmp_path / "f.acnz").exists()


def test_a_fifo_with_a_writer_is_read(runs, tmp_path):
    fifo = tmp_path / "images.npy"
    os.mkfifo(fifo)
    images = np.random.default_rng(0).integers(0, 2, (3, 1, 8, 8)).astype(np.uint8)
    p = _acnkit("compress", runs["binary"], "--input", fifo, "-o", tmp_path / "f.acnz")
    with open(fifo, "wb") as f:  # np.save asks a pipe for its position: write its bytes
        buffer = io.BytesIO()
        np.save(buffer, images)
        f.write(buffer.getvalue())
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    r = invoke("decompress", tmp_path / "f.acnz", "--run", runs["binary"], "-o",
               tmp_path / "back.npy")
    assert r.exit_code == 0 and np.array_equal(np.load(tmp_path / "back.npy"), images)


# -- 5 and 6. signals and staging folders ------------------------------------------------------

@pytest.fixture(scope="module")
def many(runs, tmp_path_factory):
    """A file of 5,391 digit images: long enough to write that a signal lands mid-way."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("many")
    digits = (load_digits().images >= 8).astype(np.uint8)[:, None]
    np.save(folder / "digits.npy", np.concatenate([digits] * 3))
    r = invoke("compress", runs["binary"], "--input", folder / "digits.npy", "-o",
               folder / "digits.acnz")
    assert r.exit_code == 0, r.output
    return folder / "digits.acnz"


def _staging(place):
    return [p for p in Path(place).iterdir() if STAGING in p.name]


@pytest.mark.parametrize("sig,existing", [(signal.SIGTERM, False), (signal.SIGTERM, True),
                                          (signal.SIGHUP, True), (signal.SIGINT, False)])
def test_a_signal_during_decompress_into_a_folder_leaves_nothing_behind(runs, many, tmp_path,
                                                                        sig, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "mine.txt").write_text("kept")
    p = _acnkit("decompress", many, "--run", runs["binary"], "-o", f"{out}/")
    place = out if existing else tmp_path
    deadline = time.monotonic() + 120
    while not _staging(place) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _staging(place), "decompress wrote no staging folder"
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    # CPython ends a process whose KeyboardInterrupt it saw escape an evaluation by SIGINT
    # itself, whatever the exit code asked for: a shell shows both as 130
    assert p.returncode in ((128 + sig, -sig) if sig == signal.SIGINT else (128 + sig,)), err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert signal.Signals(sig).name in err and "nothing half-written" in err, err
    assert not _staging(place)
    if existing:
        assert [q.name for q in out.iterdir()] == ["mine.txt"]
    else:
        assert not out.exists()


def test_a_stale_staging_folder_is_removed_and_a_live_one_refuses_a_second_writer(runs, many,
                                                                                  tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".{STAGING}dead.tmp"  # what a SIGKILLed decompress leaves
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "0.png").write_bytes(b"half")
    alien = out / ".not-ours.tmp"  # a user's own folder, named otherwise, is never touched
    alien.mkdir()
    live = out / f".{STAGING}live.tmp"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another writer, still at work
    try:
        r = invoke("decompress", many, "--run", runs["binary"], "-o", f"{out}/")
        refused(r, "another acnkit process is writing into it")
    finally:
        os.close(fd)
    assert live.exists() and alien.exists()
    r = invoke("decompress", many, "--run", runs["binary"], "-o", f"{out}/")
    assert r.exit_code == 0, r.output
    assert not stale.exists() and not live.exists() and alien.exists()
    assert len(list(out.glob("image-*.png"))) == 5391


def test_a_partial_file_left_by_a_killed_compress_is_removed_by_the_next_write(runs, tmp_path):
    """What SIGKILL leaves of ``compress -o F`` (its temporary file) is removed by the next
    write of F; one a live writer holds, a user's file of a similar name, and a link of
    the pattern are left alone."""
    from acnkit.atomic import PARTIAL

    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), dtype=np.uint8))
    stale = tmp_path / f".f.acnz.{PARTIAL}dead.tmp"
    stale.write_bytes(b"half a file")
    live = tmp_path / f".f.acnz.{PARTIAL}live.tmp"
    live.write_bytes(b"being written")
    mine = tmp_path / ".f.acnz.mine.tmp"
    mine.write_bytes(b"the user's")
    link = tmp_path / f".f.acnz.{PARTIAL}link.tmp"
    link.symlink_to(mine)
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another writer, still at work
    try:
        r = invoke("compress", runs["binary"], "--input", tmp_path / "x.npy", "-o",
                   tmp_path / "f.acnz")
        assert r.exit_code == 0, r.output
    finally:
        os.close(fd)
    assert not stale.exists() and live.exists() and mine.read_bytes() == b"the user's"
    assert link.is_symlink()


# -- 13 and 14. output folders checked before any decoding -------------------------------------

def test_a_dangling_link_as_the_output_folder_is_refused_up_front(runs, many, tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    r = invoke("decompress", many, "--run", runs["binary"], "-o", f"{link}/")
    refused(r, f"-o {link} is a link to", "which does not exist")
    assert not (tmp_path / "gone").exists() and not _staging(tmp_path)


def test_a_link_to_a_folder_on_another_file_system_is_written_through(runs, tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) \
            or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second writable file system")
    import tempfile

    with tempfile.TemporaryDirectory(dir=shm) as far:
        rng = np.random.default_rng(2)
        folder = tmp_path / "in"
        folder.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 2, (8, 8)).astype(bool)).save(folder / f"{i}.png")
        file = tmp_path / "f.acnz"
        assert invoke("compress", runs["binary"], folder, "-o", file).exit_code == 0
        link = tmp_path / "out"
        link.symlink_to(far)
        r = invoke("decompress", file, "--run", runs["binary"], "-o", f"{link}/")
        assert r.exit_code == 0, r.output
        assert sorted(p.name for p in Path(far).iterdir()) == ["0.png", "1.png", "2.png"]
        for i in range(3):
            with Image.open(Path(far) / f"{i}.png") as a, Image.open(folder / f"{i}.png") as b:
                assert np.array_equal(np.asarray(a), np.asarray(b))


def test_an_output_folder_under_a_file_is_refused_before_decoding(runs, many, tmp_path):
    (tmp_path / "file").write_text("x")
    r = invoke("decompress", many, "--run", runs["binary"], "-o", f"{tmp_path / 'file'}/")
    refused(r, "is not a folder")
    assert (tmp_path / "file").read_text() == "x"


# -- 15 and 16. refusals that say what the file is ---------------------------------------------

def test_sixteen_bit_grey_alpha_and_grey_palettes_are_named(runs, tmp_path):
    refused_file(runs, "grey", png(tmp_path / "la16.png", 8, 8, 16, 4,
                                   noise("grey", 2, top=65536)), "16-bit grey+alpha PNG")
    greys = Image.fromarray(noise("grey", top=4).astype(np.uint8)[:, :, 0] * 80, "L")
    greys.convert("P").save(tmp_path / "greys.png")
    refused_file(runs, "grey", tmp_path / "greys.png", "paletted PNG", "convert('L')")


@pytest.mark.parametrize("kind", [b"zTXt", b"iCCP"])
def test_a_huge_metadata_chunk_is_named(runs, tmp_path, kind):
    bomb = zlib.compress(bytes(100 << 20), 9)  # 100 MB of text or profile, 100 kB packed
    body = (b"Comment\0\0" if kind == b"zTXt" else b"profile\0\0") + bomb
    path = png(tmp_path / "meta.png", 8, 8, 8, 0, noise("grey"), extra=[chunk(kind, body)])
    refused_file(runs, "grey", path, "metadata chunk", "strip its metadata")


# -- 17. damage that says it is damage ---------------------------------------------------------

def _repacked(data: bytes, **fields) -> bytes:
    from acnkit.codec import read_header
    from acnkit.codec.fileformat import pack

    header, words = read_header(data)
    header.update(fields)
    return pack(header, words.astype("<u4").tobytes())


def test_damaged_version_strings_and_a_stored_file_off_its_digest_say_damaged(runs, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 2, (2, 1, 8, 8)).astype(np.uint8))
    file = tmp_path / "f.acnz"
    assert invoke("compress", runs["binary"], "--input", tmp_path / "x.npy", "-o",
                  file).exit_code == 0
    data = file.read_bytes()
    for fields in ({"torch": "2.\x0013.0"}, {"acnkit": "0.1.0\n"}, {"torch": "2.13 .0"}):
        bad = tmp_path / "bad.acnz"
        bad.write_bytes(_repacked(data, **fields))
        r = invoke("decompress", bad, "--run", runs["binary"], "-o", tmp_path / "y.npy")
        refused(r, "are damaged", code=1)
        assert "warning" not in r.output and not (tmp_path / "y.npy").exists()
    from acnkit.codec import read_header

    header, _ = read_header(data)
    assert header["stored"]  # two tiny images: the plain packing is smaller
    payload = bytearray(data[:-4])
    payload[-1] ^= 0x80  # an image's pixel flipped, the CRC made good
    (tmp_path / "flipped.acnz").write_bytes(bytes(payload)
                                            + struct.pack("<I", zlib.crc32(payload)))
    r = invoke("decompress", tmp_path / "flipped.acnz", "--run", runs["binary"], "-o",
               tmp_path / "y.npy")
    refused(r, "is corrupt: its stored images do not match its digest", code=1)
    assert "arithmetic" not in r.stderr and not (tmp_path / "y.npy").exists()


# -- a fresh set of kinds: other modes, depths, containers and frame counts --------------------

def _fresh(folder):
    """Files of kinds no test above writes, as (name, run kind)."""
    rng = np.random.default_rng(9)
    g = rng.integers(0, 256, (8, 8)).astype(np.uint8)
    c = rng.integers(0, 256, (5, 4, 3)).astype(np.uint8)
    made = []

    def keep(name, kind, image=None, **save):
        if image is not None:
            image.save(folder / name, **save)
        made.append((name, kind))

    keep("int32.tif", "grey", Image.fromarray(g.astype(np.int32), "I"))
    keep("float.tif", "grey", Image.fromarray(g.astype(np.float32), "F"))
    keep("grey16.tif", "grey", Image.fromarray(g.astype(np.uint16) * 257))
    keep("grey16.pgm", "grey", Image.fromarray(g.astype(np.uint16) * 257))
    (folder / "maxval15.pgm").write_bytes(b"P5\n8 8\n15\n" + (g >> 4).tobytes())
    keep("maxval15.pgm", "grey")
    (folder / "ascii.pgm").write_bytes(b"P2\n8 8\n255\n" + " ".join(map(str, g.ravel())).encode())
    keep("ascii.pgm", "grey")
    png(folder / "two-bit.png", 8, 8, 2, 0, g >> 6)
    keep("two-bit.png", "grey")
    png(folder / "four-bit-grey.png", 8, 8, 4, 0, g >> 4)
    keep("four-bit-grey.png", "grey")
    keep("four-bit-palette.png", "rgb", Image.fromarray(c, "RGB").quantize(16), bits=4)
    keep("grey.bmp", "grey", Image.fromarray(g, "L"))
    keep("rgb.bmp", "rgb", Image.fromarray(c, "RGB"))
    keep("rgb.webp", "rgb", Image.fromarray(c, "RGB"), lossless=True)
    keep("grey.jpg", "grey", Image.fromarray(g, "L"))
    keep("one-frame.gif", "grey", Image.fromarray(g, "L"))
    keep("rgba.tif", "rgb", Image.fromarray(np.dstack([c, c[:, :, :1]]), "RGBA"))
    keep("la.tif", "grey", Image.fromarray(np.dstack([g, g]), "LA"))
    keep("rgb-on-grey.png", "grey", Image.fromarray(rng.integers(0, 256, (8, 8, 3))
                                                    .astype(np.uint8), "RGB"))
    keep("grey-on-rgb.png", "rgb", Image.fromarray(c[:, :, 0], "L"))
    keep("pages.pgm", "grey")  # two PGM frames back to back
    (folder / "pages.pgm").write_bytes((b"P5\n8 8\n255\n" + g.tobytes()) * 2)
    plain = b"P2\n8 8\n255\n" + " ".join(map(str, g.ravel())).encode() + b"\n"
    (folder / "plain-pages.pgm").write_bytes(plain * 2)
    keep("plain-pages.pgm", "grey")
    bits = np.packbits(g > 127, axis=1).tobytes()
    (folder / "pages.pbm").write_bytes((b"P4\n# two\n8 8\n" + bits) * 2)
    keep("pages.pbm", "binary")
    (folder / "newline.pgm").write_bytes(b"P5\n8 8\n255\n" + g.tobytes() + b"\n")
    keep("newline.pgm", "grey")  # a trailing newline is no second image
    keep("icc.png", "grey", Image.fromarray(g, "L"), icc_profile=b"\0" * 200)
    keep("text.png", "grey")
    png(folder / "text.png", 8, 8, 8, 0, g, extra=[chunk(b"tEXt", b"Comment\0hello")])
    keep("gamma.png", "grey")
    png(folder / "gamma.png", 8, 8, 8, 0, g, extra=[chunk(b"gAMA", struct.pack(">I", 45455))])
    keep("sbit.png", "grey")
    png(folder / "sbit.png", 8, 8, 8, 0, g, extra=[chunk(b"sBIT", b"\x05")])
    keep("deflate.tif", "rgb", Image.fromarray(c, "RGB"), compression="tiff_adobe_deflate")
    keep("lzw.tif", "grey", Image.fromarray(g, "L"), compression="tiff_lzw")
    keep("one-bit.bmp", "binary", Image.fromarray(g > 127))
    keep("one-bit-on-rgb.png", "rgb", Image.fromarray(rng.integers(0, 2, (5, 4)).astype(bool)))
    return made


def test_a_fresh_set_of_kinds_is_refused_or_comes_back_exactly(runs, tmp_path):
    """Whatever the kind, the rule holds: one line and nothing written, or the same
    container, mode and pixels back."""
    given = tmp_path / "given"
    given.mkdir()
    outcomes = {}
    for name, kind in _fresh(given):
        file, back = tmp_path / f"{name}.acnz", tmp_path / "back" / name
        r = invoke("compress", runs[kind], given / name, "-o", file)
        if r.exit_code != 0:
            refused(r, name)
            assert not file.exists()
            outcomes[name] = "refused"
            continue
        r = invoke("decompress", file, "--run", runs[kind], "-o", f"{back.parent}/",
                   "--overwrite")
        assert r.exit_code == 0, r.output
        with Image.open(given / name) as a, Image.open(back) as b:
            assert (b.format, b.mode, b.size, getattr(b, "n_frames", 1)) == \
                (a.format, a.mode, a.size, getattr(a, "n_frames", 1)), name
            assert np.array_equal(np.asarray(b), np.asarray(a)), name
        outcomes[name] = "exact"
    # the kinds acnkit writes back come back; the rest are refused
    assert {n for n, o in outcomes.items() if o == "exact"} >= {
        "ascii.pgm", "newline.pgm", "icc.png", "text.png", "gamma.png", "sbit.png", "lzw.tif",
        "deflate.tif",
        # grey and 1-bit images given to a colour run: coded by one channel, back in their mode
        "grey-on-rgb.png", "one-bit-on-rgb.png"}, outcomes
    assert {n for n, o in outcomes.items() if o == "refused"} >= {
        "int32.tif", "float.tif", "grey16.tif", "grey16.pgm", "maxval15.pgm", "two-bit.png",
        "four-bit-grey.png", "four-bit-palette.png", "grey.bmp", "rgb.webp", "grey.jpg",
        "one-frame.gif", "rgba.tif", "la.tif", "rgb-on-grey.png",
        "pages.pgm", "plain-pages.pgm", "pages.pbm", "one-bit.bmp"}, outcomes


# -- 9, 10 and 11. memory near the work --------------------------------------------------------

# the command runs under a limit of its own: on a timeout subprocess.run kills it, so a
# command that loops is never left running after the test
PEAK = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=240)
sys.stderr.write(r.stderr)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def peak(*command, stdin=None):
    """(exit code, peak resident bytes, stderr) of ``command`` run in a child process."""
    r = subprocess.run([sys.executable, "-c", PEAK, *map(str, command)], capture_output=True,
                       text=True, stdin=stdin, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       timeout=300)
    code, bytes_ = map(int, r.stdout.split())
    return code, bytes_, r.stderr


MB = 1 << 20


@pytest.fixture(scope="module")
def baseline(runs, tmp_path_factory):
    """The peak of a decompress of two images: Python, torch and a model."""
    tmp_path = tmp_path_factory.mktemp("baseline")
    np.save(tmp_path / "two.npy", np.zeros((2, 1, 8, 8), dtype=np.uint8))
    invoke("compress", runs["binary"], "--input", tmp_path / "two.npy", "-o", tmp_path / "t.acnz")
    code, base, err = peak(sys.executable, "-m", "acnkit", "decompress", tmp_path / "t.acnz",
                           "--run", runs["binary"], "-o", tmp_path / "t.npy")
    assert code == 0, err
    return base


def _gzip_member(data: bytes, zeros: int) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = bytes(16 * MB)
    return c.compress(data) + b"".join(c.compress(block) for _ in range(zeros // len(block))) \
        + c.flush()


def test_gzip_that_unpacks_past_its_claim_or_the_limit_stays_small(runs, tmp_path):
    """Row 9: an IDX .gz claiming 4.6 GB is refused from its header; one claiming 7,840
    bytes that unpacks to 4.4 GB stops just past its claim; one whose first bytes are no IDX
    header is refused there. Peaks measured in a child process."""
    def head(*shape):
        return b"\0\0\x08" + bytes([len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape)

    zeros16 = _gzip_member(b"", 16 * MB)
    files = {  # members joined: a gzip stream of many members is one file
        "claims-4.6GB.gz": _gzip_member(head(70000, 256, 256), 16 * MB) + zeros16 * 274,
        "claims-7840B.gz": _gzip_member(head(10, 28, 28), 16 * MB) + zeros16 * 274,
        "no-header.gz": _gzip_member(b"\1\1\1\1", 16 * MB) + zeros16 * 274,
    }
    limit = 256 * MB  # the bound at work, as the 2 GiB default would be
    script = ("import sys, resource\nfrom acnkit.data.idx import read_idx\n"
              "try:\n    read_idx(sys.argv[1], limit=int(sys.argv[2]))\n"
              "except Exception as e:\n    print(e, file=sys.stderr)\n")
    code, base, _ = peak(sys.executable, "-c", "import acnkit.data.idx")
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        code, most, err = peak(sys.executable, "-c", script, path, limit)
        assert "unpacks to more than" in err or "truncated or padded" in err \
            or "not an IDX file" in err, err
        # each is refused at its first chunk: the claim, or no IDX header at all
        assert most - base < 64 * MB + 3 * len(data), (name, most >> 20, base >> 20)
        assert most < 2.5 * 1024 * MB


def test_a_large_stored_file_decodes_in_memory_near_its_images(runs, baseline, tmp_path):
    """Row 10: a stored file of 8-bit images and one of bits decode with a peak near the
    images' own size (the levels of a byte file are its bytes; bits are unpacked in
    blocks), not eight times it."""
    from acnkit import load_run
    from acnkit.codec import compress
    from acnkit.codec.compress import stored

    base = baseline
    for kind, count, top in (("grey", 1_000_000, 256), ("binary", 2_000_000, 2)):
        run = load_run(runs[kind])
        small = np.zeros((2, 1, 8, 8), dtype=np.uint8)
        header = {k: v for k, v in compress(run.model, small, "ordered").header.items()
                  if k != "digest"}
        images = np.random.default_rng(0).integers(0, top, (count, 1, 8, 8), dtype=np.uint8)
        header.update(count=count, input_shape=[count, 1, 8, 8])
        file = tmp_path / f"{kind}.acnz"
        file.write_bytes(stored(images, header, 0.0).data)
        del images
        code, most, err = peak(sys.executable, "-m", "acnkit", "decompress", file, "--run",
                               runs[kind], "-o", tmp_path / f"{kind}.npy")
        assert code == 0, err
        size = count * 64
        # the images and the file, no more (before: 3.7 times the images of a byte file)
        assert most - base < size + file.stat().st_size + 48 * MB, \
            (kind, (most - base) >> 20, size >> 20)
        back = np.load(tmp_path / f"{kind}.npy", mmap_mode="r")
        again = np.random.default_rng(0).integers(0, top, (count, 1, 8, 8), dtype=np.uint8)
        assert np.array_equal(back, again)


def test_dev_zero_as_input_is_refused_at_its_first_bytes(runs, baseline, tmp_path):
    """Row 11: /dev/zero, named or fed to standard input, is refused at its first 16 bytes."""
    base = baseline
    code, most, err = peak(sys.executable, "-m", "acnkit", "compress", runs["binary"], "--input",
                           "/dev/zero", "-o", tmp_path / "z.acnz")
    assert code == 2 and "does not start with NumPy's header" in err, err
    assert most - base < 64 * MB, (most - base) >> 20
    with open("/dev/zero", "rb") as zero:
        code, most, err = peak(sys.executable, "-m", "acnkit", "compress", runs["binary"],
                               "--input", "-", "-o", tmp_path / "z.acnz", stdin=zero)
    assert code == 2 and "does not start with NumPy's header" in err, err
    assert most - base < 64 * MB, (most - base) >> 20
    assert not (tmp_path / "z.acnz").exists()
