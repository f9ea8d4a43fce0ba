"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from ..bounded import MAX_INPUT_BYTES, TooLarge, gunzip
from ..errors import DataError
from .datafile import read_data_file

_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path, limit: int = MAX_INPUT_BYTES) -> np.ndarray:
    """Read one IDX file of at most ``limit`` bytes (after gzip, which is recognised by the
    content, not by the file name)."""
    path = Path(path)
    try:
        raw: bytes | bytearray = read_data_file(path, limit)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; point --data-dir at a folder of IDX "
                        f"files") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gunzip(raw, limit, _claimed_size)
        except TooLarge:
            raise DataError(f"{path} unpacks to more than {limit} bytes, more than acnkit "
                            f"reads of one data file; split the data set") from None
        except (EOFError, zlib.error) as exc:
            raise DataError(f"{path} is a damaged gzip file ({exc}); download it again") from None
        except ValueError as exc:  # the first bytes unpacked are no IDX header
            raise DataError(f"{path} is not an IDX file ({exc})") from None
    elif path.suffix == ".gz":
        raise DataError(f"{path} is named .gz but is not gzip data; rename it or re-download it")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path} has a truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize  # exact: np.prod wraps at 2**63
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or padded: header says {shape} "
            f"({expected} bytes of data), file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _claimed_size(head: bytes) -> int | None:
    """The bytes an IDX file's header says the file holds, header included; a first chunk
    that is no IDX header is refused at once (ValueError), before the rest is unpacked
    (None when it is too short to tell: the checks after unpacking say what it is)."""
    if len(head) >= 4 and (head[:2] != b"\0\0" or head[2] not in _DTYPES or not head[3]):
        raise ValueError(f"bad magic number {head[:4].hex()!r}")
    if len(head) < 4:
        return None
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        return None
    shape = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return 4 + 4 * ndim + math.prod(shape) * np.dtype(_DTYPES[head[2]]).itemsize


def find_idx(directory: Path, stem: str) -> Path:
    """``stem`` (e.g. ``train-images-idx3-ubyte``) in ``directory``, raw or ``.gz``."""
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                      stem.replace("-idx", ".idx") + ".gz"):
        if (directory / candidate).exists():  # read_data_file refuses what is no file
            return directory / candidate
    raise DataError(f"{directory} has no {stem}[.gz]; point --data-dir at a folder of IDX files")


def load_idx_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels (N,) for ``split`` 'train' or 't10k'."""
    images = read_idx(find_idx(directory, f"{split}-images-idx3-ubyte"))
    labels = read_idx(find_idx(directory, f"{split}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{directory}: {split} images must be 3-D and labels 1-D in IDX")
    if images.dtype != np.uint8:
        raise DataError(f"{directory}: {split} images are stored as {images.dtype.name}; "
                        f"MNIST-format images are unsigned bytes 0-255 (IDX type 0x08): "
                        f"convert them first")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{directory}: {split} labels are stored as {labels.dtype.name}; "
                        f"labels must be whole numbers")
    if len(images) != len(labels):
        raise DataError(
            f"{directory}: {split} has {len(images)} images but {len(labels)} labels; "
            f"the files come from different data sets"
        )
    if len(images) == 0:
        raise DataError(f"{directory}: {split} set is empty")
    return images, labels
