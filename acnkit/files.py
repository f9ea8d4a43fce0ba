"""The files the codec commands read and write: .npy arrays of images, compressed files,
and the images of a registered data set (the codec itself takes arrays, gives bytes)."""

from __future__ import annotations

import io
import math
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .codec import as_images
from .errors import UsageError
from .interfaces import Dataset
from .registry import get_registry
from .trained import Run

#: at most this many bytes are read from an input (.npy, image or compressed file); a
#: larger one is refused before it is read
MAX_INPUT_BYTES = 1 << 31


def read_input(path: str | Path, what: str) -> bytes:
    """The bytes of ``path`` (``-``: standard input), read once (a pipe cannot be read
    twice), at most :data:`MAX_INPUT_BYTES`."""
    if str(path) == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    else:
        p = Path(path)
        if p.is_dir():
            raise UsageError(f"{what} {p} is a folder; give a file")
        try:
            with open(p, "rb") as f:
                data = f.read(MAX_INPUT_BYTES + 1)
        except FileNotFoundError:
            raise UsageError(f"{what} {p} does not exist") from None
        except OSError as exc:
            raise UsageError(f"cannot read {what} {p}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{what} {path} is larger than {MAX_INPUT_BYTES >> 20} MB; split it")
    return data


def load_images(path: str | Path) -> np.ndarray:
    """A .npy array of images (``-``: from standard input), without ever unpickling
    objects, its header checked against the bytes that follow before anything is
    allocated."""
    data = read_input(path, "--input")
    if not data:
        raise UsageError(f"--input {path} is empty; give a .npy array saved with numpy.save")
    if data[:6] != b"\x93NUMPY":
        raise UsageError(f"--input {path} is not a .npy file (it does not start with "
                         f"NumPy's header); save the images with numpy.save")
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
    except (OSError, ValueError, EOFError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = first if len(first) <= 100 else first[:first.rfind(" ", 0, 100)] + " ..."
        raise UsageError(f"--input {path} is not a .npy array of numbers ({first})") from None
    if not isinstance(array, np.ndarray):
        raise UsageError(f"--input {path} holds several arrays; give one .npy array")
    return array


def read_file(path: str | Path) -> bytes:
    """A compressed file's bytes (``-``: standard input)."""
    return read_input(path, "file")


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def run_dataset(run: Run, name: str) -> Dataset:
    """Data set ``name`` binarised with the run's own data seed (and read from the run's
    --data-dir when it is the run's data set)."""
    c = run.config
    return get_registry().create("dataset", name, seed=c.data_seed,
                                 data_dir=c.data_dir if name == c.data else None)


def dataset_images(run: Run, name: str, split: str, data: Dataset | None = None) -> np.ndarray:
    """The binary images of data set ``name`` (``split`` test or train), as
    :func:`run_dataset` makes them."""
    data = data or run_dataset(run, name)
    x = data.test_x if split == "test" else data.train_x
    return as_images(x.numpy(), run.model.image_shape, f"--data {name} --split {split}")


#: image files acnkit reads and writes (Pillow), by suffix
IMAGE_SUFFIXES = (".png", ".pbm", ".tif", ".tiff")


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
            files = sorted(p for p in given.rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise UsageError(f"{given} holds no {'/'.join(IMAGE_SUFFIXES)} images")
            found += [(p, p.relative_to(given).as_posix()) for p in files]
        elif given.is_file():
            found.append((given, given.name))
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


def read_image(path: Path, size: tuple[int, int], threshold: float | None) -> np.ndarray:
    """One binary image (H, W) of 0/1 uint8 from a 1-bit image, a grey one holding only 0
    and 255, or any grey or colour one with ``threshold`` (grey level >= T is 1, 16-bit
    images scaled to 8 bits first). Its size is read from its header and checked before
    its pixels are decoded, so a huge image costs no memory."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if (img.height, img.width) != size:
                raise UsageError(f"{path} is {img.width}x{img.height} pixels; the model codes "
                                 f"{size[1]}x{size[0]} images")
            img.load()
            if img.mode == "1":
                array = np.asarray(img, dtype=bool).astype(np.uint8)
            elif threshold is not None:
                array = (grey_levels(img, path) >= threshold).astype(np.uint8)
            elif img.mode == "L" and set(np.unique(np.asarray(img)).tolist()) <= {0, 255}:
                array = (np.asarray(img) == 255).astype(np.uint8)
            else:
                raise UsageError(f"{path} has {img.mode} pixels with levels other than 0 and 255; "
                                 f"give 1-bit images or pass --threshold T (grey level >= T is 1)")
    except Image.DecompressionBombError:
        raise UsageError(f"{path} claims more pixels than an image can safely hold; the "
                         f"model codes {size[1]}x{size[0]} images") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"{path} is not an image Pillow can read ({exc.__class__.__name__})") \
            from None
    return array


def check_threshold(threshold: float | None) -> None:
    """--threshold T: a grey level in [0, 255]."""
    if threshold is not None and not 0 <= threshold <= 255:  # NaN fails both
        raise UsageError(f"--threshold must be a grey level from 0 to 255, got {threshold}")


def read_images(inputs: list[str], image_shape: tuple[int, ...],
                threshold: float | None) -> tuple[np.ndarray, list[str]]:
    """The images of ``inputs`` as (N, *image_shape) 0/1 uint8, and their names."""
    check_threshold(threshold)
    if len(image_shape) != 3 or image_shape[0] != 1:
        raise UsageError(f"image files hold one-channel images; this model codes shape "
                         f"{image_shape}: give a .npy array with --input")
    files = image_files(inputs)
    size = (image_shape[1], image_shape[2])
    images = np.stack([read_image(path, size, threshold) for path, _ in files])[:, None]
    return images, [name for _, name in files]


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


def check_image_targets(folder: Path, names: list[str], count: int, overwrite: bool) -> None:
    """Refuse, before decoding, a folder that cannot take ``count`` images named ``names``
    (:func:`image_names`): see :func:`write_images`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"-o {folder} exists and is not a folder")
    if not folder.absolute().parent.is_dir():
        raise UsageError(f"-o {folder}: folder {folder.absolute().parent} does not exist")
    if folder.exists():
        for name in image_names(names, count):
            _inside(folder, name, overwrite)


def write_images(folder: Path, images: np.ndarray, names: list[str],
                 overwrite: bool) -> list[Path]:
    """Each image (N, 1, H, W) as a 1-bit image file under ``folder``: named as it was
    (its suffix gives the format), or image-00000.png ... when no names were kept.

    Every target is checked first (nothing is written if any exists without
    ``overwrite``, is not a regular file, or lies behind a link inside ``folder``); the
    images are written into a temporary folder beside ``folder`` and moved into place
    only when all are written, so an interrupted run leaves ``folder`` as it was."""
    from PIL import Image

    from .codec.fileformat import name_clash, safe_name

    names = image_names(names, len(images))
    bad = next((n for n in names if not safe_name(n)), None)
    clash = name_clash(names)
    if bad is not None or clash:
        raise UsageError(f"cannot write images named {bad!r}" if bad else clash)
    folder = Path(folder)
    check_image_targets(folder, names, len(images), overwrite)
    targets = [folder.joinpath(*name.split("/")) for name in names]
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.absolute().name}.", suffix=".tmp",
                                    dir=folder.absolute().parent))
    try:
        for name, image in zip(names, images, strict=True):
            picture = Image.fromarray(image.reshape(image.shape[-2:]).astype(bool))
            fmt = {".pbm": "PPM", ".tif": "TIFF", ".tiff": "TIFF"}.get(
                Path(name).suffix.lower(), "PNG")
            path = staging.joinpath(*name.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "xb") as f:
                picture.save(f, format=fmt)
                f.flush()
                os.fsync(f.fileno())
        if not folder.exists():
            os.rename(staging, folder)  # all at once
            return targets
        for name in names:  # into an existing folder: checked again, then moved
            target = _inside(folder, name, overwrite)
            target.parent.mkdir(parents=True, exist_ok=True)
            _inside(folder, name, overwrite)  # the folders just made are folders
            os.replace(staging.joinpath(*name.split("/")), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return targets
