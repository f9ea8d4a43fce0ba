"""The files the codec commands read and write: .npy arrays of images, compressed files,
and the images of a registered data set (the codec itself takes arrays, gives bytes)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic import atomic_write, check_target
from .codec import as_images
from .errors import UsageError
from .interfaces import Dataset
from .registry import get_registry
from .trained import Run


def load_images(path: str | Path) -> np.ndarray:
    """A .npy array of images, without ever unpickling objects."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"--input {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"--input {path} is a folder; give a .npy file") from None
    except (OSError, ValueError) as exc:
        if magic != b"\x93NUMPY":
            raise UsageError(f"--input {path} is not a .npy file (it does not start with "
                             f"NumPy's header); save the images with numpy.save") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = first if len(first) <= 100 else first[:first.rfind(" ", 0, 100)] + " ..."
        raise UsageError(f"--input {path} is not a .npy array of numbers ({first})") from None
    if not isinstance(array, np.ndarray):
        raise UsageError(f"--input {path} holds several arrays; give one .npy array")
    return array


def read_file(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p} is not a file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {p}: {exc.strerror}") from None


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
    file's own name; sorted within a folder."""
    found: list[tuple[Path, str]] = []
    for given in map(Path, inputs):
        if given.is_dir():
            files = sorted(p for p in given.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise UsageError(f"{given} holds no {'/'.join(IMAGE_SUFFIXES)} images")
            found += [(p, p.relative_to(given).as_posix()) for p in files]
        elif given.is_file():
            found.append((given, given.name))
        else:
            raise UsageError(f"{given} does not exist")
    names = [name for _, name in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"two images are named {twice[0]}; give each folder or file once")
    return found


def read_image(path: Path, size: tuple[int, int], threshold: float | None) -> np.ndarray:
    """One binary image (H, W) of 0/1 uint8 from a 1-bit image, a grey one holding only 0
    and 255, or any grey or colour one with ``threshold`` (grey level >= T is 1)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "1":
                array = np.asarray(img, dtype=bool).astype(np.uint8)
            elif threshold is not None:
                array = (np.asarray(img.convert("L")) >= threshold).astype(np.uint8)
            elif img.mode == "L" and set(np.unique(np.asarray(img)).tolist()) <= {0, 255}:
                array = (np.asarray(img) == 255).astype(np.uint8)
            else:
                raise UsageError(f"{path} has {img.mode} pixels with levels other than 0 and 255; "
                                 f"give 1-bit images or pass --threshold T (grey level >= T is 1)")
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"{path} is not an image Pillow can read ({exc.__class__.__name__})") \
            from None
    if array.shape != size:
        raise UsageError(f"{path} is {array.shape[1]}x{array.shape[0]} pixels; the model codes "
                         f"{size[1]}x{size[0]} images")
    return array


def read_images(inputs: list[str], image_shape: tuple[int, ...],
                threshold: float | None) -> tuple[np.ndarray, list[str]]:
    """The images of ``inputs`` as (N, *image_shape) 0/1 uint8, and their names."""
    if len(image_shape) != 3 or image_shape[0] != 1:
        raise UsageError(f"image files hold one-channel images; this model codes shape "
                         f"{image_shape}: give a .npy array with --input")
    files = image_files(inputs)
    size = (image_shape[1], image_shape[2])
    images = np.stack([read_image(path, size, threshold) for path, _ in files])[:, None]
    return images, [name for _, name in files]


def write_images(folder: Path, images: np.ndarray, names: list[str],
                 overwrite: bool) -> list[Path]:
    """Each image (N, 1, H, W) as a 1-bit image file under ``folder``: named as it was
    (its suffix gives the format), or image-00000.png ... when no names were kept. Nothing
    is written if any target exists (without ``overwrite``) or is not a regular file."""
    from PIL import Image

    names = names or [f"image-{i:05d}.png" for i in range(len(images))]
    targets = [folder / name for name in names]
    for target in targets:
        if not target.parent.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
        check_target(target, overwrite, "-o")
    for target, image in zip(targets, images, strict=True):
        picture = Image.fromarray(image.reshape(image.shape[-2:]).astype(bool))
        fmt = {".pbm": "PPM", ".tif": "TIFF", ".tiff": "TIFF"}.get(target.suffix.lower(), "PNG")

        def save(f: BinaryIO, picture: Image.Image = picture, fmt: str = fmt) -> None:
            picture.save(f, format=fmt)

        atomic_write(target, save)
    return targets
