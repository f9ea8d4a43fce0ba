"""The files the codec commands read and write: .npy arrays of images, compressed files,
and the images of a registered data set (the codec itself takes arrays, gives bytes)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .codec import as_images
from .errors import UsageError
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


def dataset_images(run: Run, name: str, split: str) -> np.ndarray:
    """The binary images of data set ``name`` (``split`` test or train), binarised with the
    run's own data seed (and read from the run's --data-dir when it is the run's data set)."""
    c = run.config
    data = get_registry().create("dataset", name, seed=c.data_seed,
                                 data_dir=c.data_dir if name == c.data else None)
    x = data.test_x if split == "test" else data.train_x
    return as_images(x.numpy(), run.model.image_shape, f"--data {name} --split {split}")
