"""CIFAR-10 in its binary format (``data_batch_1.bin`` .. ``data_batch_5.bin`` and
``test_batch.bin``): records of one label byte and 3,072 pixel bytes (the red plane, then
green, then blue, each 32 x 32 in raster order). Read as bytes, never unpickled."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bounded import MAX_INPUT_BYTES
from ..errors import DataError
from .datafile import read_data_file

RECORD = 1 + 3 * 32 * 32
TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST = ("test_batch.bin",)


def read_batch(path: Path, limit: int = MAX_INPUT_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one batch file."""
    try:
        raw = read_data_file(path, limit)
    except FileNotFoundError:
        raise DataError(f"{path.parent} has no {path.name}; point --data-dir at the folder of "
                        f"CIFAR-10's binary batches (cifar-10-batches-bin)") from None
    if not raw or len(raw) % RECORD:
        raise DataError(f"{path} is truncated or not a CIFAR-10 binary batch: {len(raw)} "
                        f"bytes is not a whole number of {RECORD}-byte records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path} holds a label {labels.max()}; CIFAR-10's are 0-9 (is it "
                        f"CIFAR-100's format?)")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def read_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not folder.is_dir():
        raise DataError(f"--data-dir {folder} is not a folder; give the folder of CIFAR-10's "
                        f"binary batches")
    train = [read_batch(folder / name) for name in TRAIN]
    test_x, test_y = read_batch(folder / TEST[0])
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            test_x, test_y)
