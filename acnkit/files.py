"""The files the codec commands read and write: .npy arrays of images, compressed files,
and the images of a registered data set (the codec itself takes arrays, gives bytes)."""

from __future__ import annotations

import io
import math
import os
import stat
import sys
import tokenize
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from .bounded import MAX_INPUT_BYTES, Refused, kind_of, read_regular
from .codec import as_images
from .config import RunConfig
from .data import read_dataset
from .data.images import image_paths
from .errors import CodecError, UsageError
from .interfaces import Dataset
from .model import Model
from .registry import get_registry

#: a FIFO with no writer yet is waited for, saying so after this many seconds
FIFO_NOTICE_SECONDS = 1.0


def _wait_for_writer(fd: int, path: Path) -> None:
    """Wait until the FIFO open as ``fd`` (non-blocking) has data or a writer that closed,
    saying once on stderr that it waits (a FIFO nobody writes would wait for ever, and
    silence would look like a hang); Ctrl-C or SIGTERM ends the wait."""
    import select

    poll = select.poll()
    poll.register(fd, select.POLLIN | select.POLLHUP)
    if not poll.poll(int(FIFO_NOTICE_SECONDS * 1000)):
        print(f"waiting for data on FIFO {path} (nothing writes to it yet; Ctrl-C to stop)",
              file=sys.stderr, flush=True)
        poll.poll()


def _read(f: BinaryIO, limit: int, head: Callable[[bytes], None] | None) -> bytes:
    """At most ``limit`` + 1 bytes of ``f``; ``head`` is shown the first bytes (as many
    as :data:`HEAD_BYTES`, fewer if the input ends first) before the rest is read, so that
    an input of the wrong kind (/dev/zero for an array) is refused at once."""
    first = f.read(HEAD_BYTES)
    if head is not None:
        head(first)
    if len(first) < HEAD_BYTES:
        return first
    if f.seekable():  # read again from the start: one buffer, no joined copy of the whole
        f.seek(0)
        return f.read(limit + 1)
    chunks = [first]  # a pipe: chunks joined once at the end
    left = limit + 1 - len(first)
    while left > 0 and (chunk := f.read(min(left, READ_CHUNK))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


#: bytes read from a pipe at a time
READ_CHUNK = 1 << 24


#: the first bytes of an input shown to its check before the rest is read
HEAD_BYTES = 16


def read_input(path: str | Path, what: str,
               head: Callable[[bytes], None] | None = None) -> bytes:
    """The bytes of ``path`` (``-``: standard input), read once (a pipe cannot be read
    twice), at most :data:`MAX_INPUT_BYTES`; ``head`` checks the first bytes before the
    rest is read (it raises to refuse). A FIFO without a writer is waited for, saying so."""
    if str(path) == "-":
        data = _read(sys.stdin.buffer, MAX_INPUT_BYTES, head)
    else:
        p = Path(path)
        if p.is_dir():
            raise UsageError(f"{what} {p} is a folder; give a file")
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise UsageError(f"{what} {p} does not exist") from None
        except OSError as exc:
            raise UsageError(f"cannot read {what} {p}: {exc.strerror}") from None
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                _wait_for_writer(fd, p)
            os.set_blocking(fd, True)
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = _read(f, MAX_INPUT_BYTES, head)
        except OSError as exc:
            raise UsageError(f"cannot read {what} {p}: {exc.strerror}") from None
        finally:
            os.close(fd)
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{what} {path} is larger than {MAX_INPUT_BYTES >> 20} MB; split it")
    return data


def read_regular_input(path: Path, what: str, fix: str) -> bytes:
    """The bytes of ``path`` read from a regular file only (unlike :func:`read_input`, which
    takes pipes; a FIFO put in place of a listed file would block), at most
    :data:`MAX_INPUT_BYTES`; a one-line UsageError that starts with ``what`` and ends with
    ``fix`` otherwise."""
    try:
        return read_regular(path, MAX_INPUT_BYTES)
    except Refused as exc:
        raise UsageError(f"{what}{exc}; {fix} of at most {MAX_INPUT_BYTES} bytes") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what}{path}: {exc.strerror}") from None


def load_images(path: str | Path) -> np.ndarray:
    """A .npy array of images (``-``: from standard input): see :func:`npy_array`."""
    what = f"--input {path}"
    return npy_array(read_input(path, "--input", lambda head: npy_magic(head, what, "images")),
                     what, "images")


def npy_magic(head: bytes, what: str, holds: str) -> None:
    """Refuse ``what`` unless its first bytes ``head`` start a .npy file."""
    if not head:
        raise UsageError(f"{what} is empty; give a .npy array saved with numpy.save")
    if head[:6] != b"\x93NUMPY"[:len(head)] or len(head) < 6:
        raise UsageError(f"{what} is not a .npy file (it does not start with "
                         f"NumPy's header); save the {holds} with numpy.save")


def npy_array(data: bytes, what: str, holds: str) -> np.ndarray:
    """The .npy array in ``data``, without ever unpickling objects, its header checked
    against the bytes that follow before anything is allocated (a header may claim a
    terabyte); a UsageError that names ``what`` (holding ``holds``) otherwise."""
    npy_magic(data[:HEAD_BYTES], what, holds)
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(buf)
        if dtype.hasobject:
            raise ValueError("it holds Python objects")
        need = math.prod(shape) * dtype.itemsize
        if need > len(data) - buf.tell():
            raise ValueError(f"its header claims {math.prod(shape)} values of {dtype}, more "
                             f"than its {len(data)} bytes hold")
        buf.seek(0)
        array = np.load(buf, allow_pickle=False)
    except (OSError, ValueError, EOFError, SyntaxError, TypeError, tokenize.TokenError) as exc:
        # a damaged header (an unbalanced bracket) makes numpy's parser raise TokenError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = first if len(first) <= 100 else first[:first.rfind(" ", 0, 100)] + " ..."
        raise UsageError(f"{what} is not a .npy array of numbers ({first})") from None
    if not isinstance(array, np.ndarray):
        raise UsageError(f"{what} holds several arrays; give one .npy array")
    return array


def read_file(path: str | Path) -> bytes:
    """A compressed file's bytes (``-``: standard input), refused at its first bytes when
    they are not an acnkit file's."""
    from .codec.fileformat import MAGIC

    def head(first: bytes) -> None:
        if first[:len(MAGIC)] != MAGIC:
            raise CodecError(f"{path} is not an acnkit compressed file (no ACNZ magic)")

    return read_input(path, "file", head)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


class WithModel(Protocol):
    """A run (:class:`acnkit.trained.Run`) or a shipped model (:class:`acnkit.shipped.Trained`):
    a model and the config it was trained with."""

    model: Model

    @property
    def config(self) -> RunConfig: ...


def run_dataset(run: WithModel, name: str) -> Dataset:
    """Data set ``name`` as the run reads its own: at its --pixels (binarised with its data
    seed), and, when it is the run's data set, from its --data-dir with its --crop."""
    c = run.config
    if name == c.data:
        return read_dataset(c, get_registry())
    return get_registry().create("dataset", name, seed=c.data_seed, pixels=c.pixels,
                                 given=c.given(pixels="pixels"))


def dataset_images(run: WithModel, name: str, split: str, data: Dataset | None = None) -> np.ndarray:
    """The images of data set ``name`` (``split`` test or train), as :func:`run_dataset`
    makes them."""
    data = data or run_dataset(run, name)
    x = data.test_x if split == "test" else data.train_x
    return as_images(x.numpy(), run.model.image_shape, run.model.levels,
                     f"--data {name} --split {split}")


#: image files acnkit reads and writes (Pillow), by suffix
IMAGE_SUFFIXES = (".png", ".pbm", ".pgm", ".ppm", ".tif", ".tiff")


def image_files(inputs: list[str]) -> list[tuple[Path, str]]:
    """Each image file of ``inputs`` (files, or folders searched recursively for
    :data:`IMAGE_SUFFIXES`) with its name: the path relative to the folder given, or the
    file's own name; sorted within a folder. A name that could not be kept in a file (not
    UTF-8, a control character, too deep or long) or that clashes with another is refused,
    naming the file."""
    from .codec.fileformat import MAX_IMAGES, name_clash, safe_name

    found: list[tuple[Path, str]] = []
    for given in map(Path, inputs):
        if given.is_dir():
            files = image_paths(given, IMAGE_SUFFIXES)
            if not files:
                raise UsageError(f"{given} holds no {'/'.join(IMAGE_SUFFIXES)} images")
            found += [(p, p.relative_to(given).as_posix()) for p in files]
        elif given.is_file():
            found.append((given, given.name))
        elif given.exists():
            raise UsageError(f"{given} is {kind_of(given.stat().st_mode)}, not a regular "
                             f"file; give image files or folders of them")
        else:
            raise UsageError(f"{given} does not exist")
        if len(found) > MAX_IMAGES:
            raise UsageError(f"more than {MAX_IMAGES} images; compress them in parts")
    for path, name in found:
        try:
            name.encode()
        except UnicodeEncodeError:
            raise UsageError(f"{ascii(str(path))}: its name holds bytes that are not UTF-8; "
                             f"rename the file") from None
        if not safe_name(name):
            raise UsageError(f"{ascii(str(path))}: its name holds a control character (a "
                             f"newline, a tab) or is nested or long beyond what a file keeps; "
                             f"rename or move the file")
    clash = name_clash([name for _, name in found])
    if clash:
        raise UsageError(f"{clash}; give each folder or file once, with names that differ "
                         f"in more than case")
    return found


def grey_levels(img: Any, path: Path) -> np.ndarray:
    """An image's grey levels 0..255 (uint8): 8-bit images converted to grey by Pillow,
    16-bit ones scaled to 8 bits first (never clipped)."""
    from .data.images import sixteen_bit_grey

    grey = sixteen_bit_grey(img, path)
    if grey is not None:
        return grey
    if img.mode == "F":
        raise UsageError(f"{path} has floating-point pixels; give 8- or 16-bit images")
    return np.asarray(img.convert("L"))


def read_image(path: Path, shape: tuple[int, ...], levels: int,
               threshold: float | None, any_size: bool = False) -> tuple[np.ndarray, str]:
    """One image (C, H, W) of uint8 levels for a model of images ``shape`` and ``levels``
    levels, and the mode its file is written back in. Without ``threshold`` the image must
    come back exactly (:mod:`acnkit.data.imagefile` decides; anything else is refused in
    one line): a binary run takes 1-bit images and grey ones holding only 0 and 255, an
    8-bit run grey or RGB images of its channels. With ``threshold`` (binary runs) any
    single-frame grey or colour image is binarised (grey level >= T is 1, 16-bit images
    scaled to 8 bits first): a loss the user asked for. Its size is read from its header
    and checked before its pixels are decoded (``any_size``: any size up to
    :data:`~acnkit.codec.fileformat.MAX_SIDE` a side, coded as tiles), so a huge image
    costs no memory."""
    from PIL import Image, UnidentifiedImageError

    from .codec.fileformat import MAX_SIDE
    from .data.imagefile import Unrestorable, describe, exact_levels, opened, refusal

    size = (shape[1], shape[2])
    raw = read_regular_input(path, "", "give image files")
    try:
        with opened(raw) as img:
            if any_size and max(img.height, img.width) > MAX_SIDE:
                raise UsageError(f"{path} is {img.width}x{img.height} pixels, more than "
                                 f"{MAX_SIDE} a side; cut it into parts")
            if not any_size and (img.height, img.width) != size:
                raise UsageError(f"{path} is {img.width}x{img.height} pixels; the model codes "
                                 f"{size[1]}x{size[0]} images")
            info = describe(img, raw)
            if levels == 2 and threshold is not None:
                if info.frames > 1:
                    raise Unrestorable(f"has {info.frames} frames; acnkit codes one image "
                                       f"a file: save each frame as its own file")
                img.load()
                return (grey_levels(img, path) >= threshold).astype(np.uint8)[None], "1"
            why = refusal(info, path.suffix)
            if why is not None:
                raise Unrestorable(why)
            if levels not in (2, 256):
                raise UsageError(f"{path}: image files hold 256 levels and this run models "
                                 f"{levels} levels; give a .npy array of levels "
                                 f"0..{levels - 1} with --input")
            if levels == 2 and info.mode == "RGB":
                raise Unrestorable("has RGB pixels; a binary run codes 1-bit images: give "
                                   "1-bit images or pass --threshold T (grey level >= T is 1)")
            return exact_levels(img, info, shape[0], levels == 2, any_size), info.mode
    except Unrestorable as exc:
        raise UsageError(f"{path} {exc}") from None
    except Image.DecompressionBombError:
        limit = "cut it into parts" if any_size else f"the model codes {size[1]}x{size[0]} images"
        raise UsageError(f"{path} claims more pixels than an image can safely hold; "
                         f"{limit}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"{path} is not an image Pillow can read ({exc.__class__.__name__})") \
            from None


def check_threshold(threshold: float | None) -> None:
    """--threshold T: a grey level in [0, 255]."""
    if threshold is not None and not 0 <= threshold <= 255:  # NaN fails both
        raise UsageError(f"--threshold must be a grey level from 0 to 255, got {threshold}")


def read_images(inputs: list[str], image_shape: tuple[int, ...], levels: int,
                threshold: float | None, any_size: bool = False
                ) -> tuple[np.ndarray | list[np.ndarray], list[str], list[str]]:
    """The images of ``inputs`` as (N, *image_shape) uint8 levels (:func:`read_image`),
    their names and the modes their files are written back in; with ``any_size`` a list
    of (C, H', W') images of their own sizes, stacked when every one is the model's."""
    check_threshold(threshold)
    if len(image_shape) != 3 or image_shape[0] not in ((1,) if levels == 2 else (1, 3)):
        kinds = "one-channel" if levels == 2 else "grey or RGB"
        raise UsageError(f"image files hold {kinds} images; this model codes shape "
                         f"{image_shape}: give a .npy array with --input")
    if threshold is not None and levels > 2:
        raise UsageError(f"--threshold binarises images for a binary run; this run models "
                         f"{levels} levels and codes the files' own levels: drop it")
    files = image_files(inputs)
    read = [read_image(path, image_shape, levels, threshold, any_size) for path, _ in files]
    images = [image for image, _ in read]
    names, modes = [name for _, name in files], [mode for _, mode in read]
    grey_in_colour = image_shape[0] == 3 and any(m in ("1", "L") for m in modes)
    if any_size and (grey_in_colour or any(image.shape != tuple(image_shape)
                                           for image in images)):
        return images, names, modes  # coded as tiles (grey ones by one channel)
    return np.stack(images), names, modes


def _inside(folder: Path, name: str, overwrite: bool) -> Path:
    """``folder / name`` after checking that no part of it inside ``folder`` is a link
    or other than a folder (so nothing is written outside ``folder``), and that the file
    may be written (absent, or a regular file and ``overwrite``)."""
    path = folder
    parts = name.split("/")
    for i, part in enumerate(parts):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return folder.joinpath(*parts)
        last = i == len(parts) - 1
        if stat.S_ISLNK(mode):
            raise UsageError(f"-o {path} is a link; acnkit never writes through a link "
                             f"inside the output folder: remove it or choose another folder")
        if not last and not stat.S_ISDIR(mode):
            raise UsageError(f"-o {path} is not a folder, but image {name!r} goes inside it")
        if last:
            if not stat.S_ISREG(mode):
                raise UsageError(f"-o {path} exists and is not a regular file; acnkit replaces "
                                 f"regular files only")
            if not overwrite:
                raise UsageError(f"-o {path} exists; pass --overwrite to replace it")
    return path


def image_names(names: list[str], count: int) -> list[str]:
    """The names images are written under: the kept ones, else image-00000.png ..."""
    return names or [f"image-{i:05d}.png" for i in range(count)]


def output_folder(folder: Path) -> tuple[Path, bool]:
    """The folder images are written into (a link to a folder followed: the user named it)
    and whether it exists; refused before any decoding when it or its parent is not a
    folder, it is a dangling link, or the place is not writable."""
    try:
        mode: int | None = os.lstat(folder).st_mode
    except FileNotFoundError:
        mode = None
    real = folder.absolute()
    if mode is not None and stat.S_ISLNK(mode):
        real = Path(os.path.realpath(folder))
        if not real.exists():
            raise UsageError(f"-o {folder} is a link to {real}, which does not exist; create "
                             f"the folder it points to, or give another folder")
        if not real.is_dir():
            raise UsageError(f"-o {folder} is a link to {real}, which is not a folder")
    elif mode is not None and not stat.S_ISDIR(mode):
        raise UsageError(f"-o {folder} exists and is not a folder")
    exists = mode is not None
    place = real if exists else real.parent
    if not place.is_dir():
        raise UsageError(f"-o {folder}: folder {place} does not exist")
    if not os.access(place, os.W_OK | os.X_OK):
        raise UsageError(f"-o {folder}: folder {place} is not writable; choose another place")
    return real, exists


def check_image_targets(folder: Path, names: list[str], count: int, overwrite: bool) -> None:
    """Refuse, before decoding, a folder that cannot take ``count`` images named ``names``
    (:func:`image_names`): see :func:`write_images`."""
    real, exists = output_folder(Path(folder))
    if exists:
        for name in image_names(names, count):
            _inside(real, name, overwrite)


def write_images(folder: Path, images: np.ndarray | list[np.ndarray], names: list[str],
                 overwrite: bool, levels: int = 2,
                 modes: list[str] | None = None) -> list[Path]:
    """Each image (N, C, H, W, or a list of (C, H', W') of their own sizes) as an image
    file under ``folder``, in its mode (``modes``:
    one for all or one an image; default the run's own: 1-bit for 0/1 images, else 8-bit
    grey or RGB), named as it was (its suffix gives the format), or image-00000.png ...
    when no names were kept.

    Every target is checked first (nothing is written if any exists without
    ``overwrite``, is not a regular file, or lies behind a link inside ``folder``); the
    images are written into a staging folder on the same file system (beside a new
    ``folder``, inside an existing one) and moved into place only when all are written, so
    an interrupted run leaves ``folder`` as it was. A second writer into the same place is
    refused while the first lives; a staging folder a killed writer left is removed
    (:mod:`acnkit.staging`)."""
    from .codec.fileformat import default_mode, name_clash, safe_name
    from .data.imagefile import container, picture
    from .staging import Busy, staging_folder

    channels = images[0].shape[0] if len(images) else 1
    if channels not in ((1,) if levels == 2 else (1, 3)):
        raise UsageError(f"images of {channels} channels cannot be written as image "
                         f"files; write a .npy array (-o FILE.npy)")
    names = image_names(names, len(images))
    bad = next((n for n in names if not safe_name(n)), None)
    clash = name_clash(names)
    if bad is not None or clash:
        raise UsageError(f"cannot write images named {bad!r}" if bad else clash)
    modes = list(modes or [default_mode(images[0].shape if len(images) else (1,), levels)])
    modes = modes * len(images) if len(modes) == 1 else modes
    folder = Path(folder)
    check_image_targets(folder, names, len(images), overwrite)
    real, exists = output_folder(folder)
    place, prefix = (real, ".") if exists else (real.parent, f".{real.name}.")
    targets = [folder.joinpath(*name.split("/")) for name in names]
    try:
        with staging_folder(place, prefix) as staging:
            for name, image, mode in zip(names, images, modes, strict=True):
                path = staging.joinpath(*name.split("/"))
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "xb") as f:
                    picture(image, mode, levels == 2).save(f, format=container(name))
                    f.flush()
                    os.fsync(f.fileno())
            if not exists:
                os.rename(staging, real)  # all at once
                return targets
            for name in names:  # into an existing folder: checked again, then moved
                target = _inside(real, name, overwrite)
                target.parent.mkdir(parents=True, exist_ok=True)
                _inside(real, name, overwrite)  # the folders just made are folders
                os.replace(staging.joinpath(*name.split("/")), target)
    except Busy:
        raise UsageError(f"-o {folder}: another acnkit process is writing into it; wait for "
                         f"it to end, or choose another folder") from None
    return targets
