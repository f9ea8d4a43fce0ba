"""Data sets: sklearn's digits (embedded, the default), MNIST and Fashion-MNIST from IDX files,
CIFAR-10's binary batches, a folder of image files, and colour patches of sklearn's two
sample photos (embedded).

``pixels="binary"`` (the default): pixels are binarized by sampling Bernoulli(intensity)
once, with a generator seeded by the data seed, so a given seed always gives the same
binary training and test images and test nats are comparable across runs.
``pixels="native"``: the data set's own levels (digits 17, IDX files 256), untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import acnkit
from acnkit.config import crop_size
from acnkit.data.cifar import read_cifar10
from acnkit.data.idx import load_idx_split
from acnkit.data.images import (
    Patches,
    augments,
    read_folder,
    read_photos,
    sample_patches,
    tiles_of,
)
from acnkit.errors import DataError
from acnkit.interfaces import Dataset

FASHION_DEFAULT = Path("/usr/share/datasets/fashion-mnist")


def binarize(intensity: np.ndarray, seed: int) -> torch.Tensor:
    """Sample {0, 1} pixels with P(1) = intensity in [0, 1]; deterministic in ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    probs = torch.as_tensor(np.ascontiguousarray(intensity), dtype=torch.float32)
    return torch.bernoulli(probs, generator=gen).to(torch.uint8)


def check_pixels(pixels: str) -> None:
    if pixels not in ("binary", "native"):
        raise ValueError(f"pixels must be 'binary' or 'native', got {pixels!r}")


def digits(data_dir=None, seed=0, pixels="binary") -> Dataset:
    from sklearn.datasets import load_digits

    check_pixels(pixels)
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    # A fixed split (not the run's seed) so that every run is tested on the same images.
    order = np.random.default_rng(12345).permutation(len(images))
    test, train = order[:360], order[360:]
    if pixels == "native":  # the 17 levels 0 .. 16 the data set holds
        levels = torch.from_numpy(bunch.images.astype(np.uint8)[:, None])
        return Dataset("digits", levels[train], torch.from_numpy(labels[train]),
                       levels[test], torch.from_numpy(labels[test]), (1, 8, 8),
                       {"source": "sklearn.datasets.load_digits"}, levels=17)
    return Dataset(
        "digits",
        binarize(images[train][:, None], seed), torch.from_numpy(labels[train]),
        binarize(images[test][:, None], seed + 1), torch.from_numpy(labels[test]),
        (1, 8, 8), {"source": "sklearn.datasets.load_digits"},
        intensity=lambda split: images[train if split == "train" else test][:, None],
    )


def _idx_dataset(name: str, data_dir, seed: int, default: Path | None,
                 pixels: str = "binary") -> Dataset:
    check_pixels(pixels)
    if data_dir is None:
        if default is None or not default.is_dir():
            hint = f" (or install Debian's dataset-{name} into {default})" if default else ""
            raise DataError(f"data set {name!r} needs --data-dir DIR with its IDX files{hint}")
        data_dir = default
    directory = Path(data_dir)
    if not directory.is_dir():
        raise DataError(f"--data-dir {directory} is not a folder; give the folder of IDX files")
    train_x, train_y = load_idx_split(directory, "train")
    test_x, test_y = load_idx_split(directory, "t10k")
    if pixels == "native":  # 8-bit grey levels as the files hold them
        return Dataset(name, torch.from_numpy(train_x[:, None].copy()),
                       torch.from_numpy(train_y.astype(np.int64)),
                       torch.from_numpy(test_x[:, None].copy()),
                       torch.from_numpy(test_y.astype(np.int64)),
                       (1, *train_x.shape[1:]), {"source": str(directory)}, levels=256)
    return Dataset(
        name,
        binarize(train_x[:, None] / np.float32(255), seed), torch.from_numpy(train_y.astype(np.int64)),
        binarize(test_x[:, None] / np.float32(255), seed + 1), torch.from_numpy(test_y.astype(np.int64)),
        (1, *train_x.shape[1:]), {"source": str(directory)},
        intensity=lambda split: (train_x if split == "train" else test_x)[:, None] / np.float32(255),
    )


def mnist(data_dir=None, seed=0, pixels="binary") -> Dataset:
    return _idx_dataset("mnist", data_dir, seed, None, pixels)


def fashion_mnist(data_dir=None, seed=0, pixels="binary") -> Dataset:
    return _idx_dataset("fashion-mnist", data_dir, seed, FASHION_DEFAULT, pixels)


def _levels_dataset(name: str, arrays: tuple, seed: int, pixels: str, source: str) -> Dataset:
    """A data set of 8-bit images (N, C, H, W): as they are (``native``), or grey ones
    binarised with the data seed; colour cannot be binarised."""
    train_x, train_y, test_x, test_y = arrays
    check_pixels(pixels)
    if pixels == "binary":
        if train_x.shape[1] != 1:
            raise ValueError(f"{name} holds colour images, which --pixels binary cannot "
                             f"binarise; pass --pixels native")
        return Dataset(name, binarize(train_x / np.float32(255), seed),
                       torch.from_numpy(train_y), binarize(test_x / np.float32(255), seed + 1),
                       torch.from_numpy(test_y), tuple(train_x.shape[1:]), {"source": source})
    return Dataset(name, torch.from_numpy(train_x), torch.from_numpy(train_y),
                   torch.from_numpy(test_x), torch.from_numpy(test_y),
                   tuple(train_x.shape[1:]), {"source": source}, levels=256)


def cifar10(data_dir=None, seed=0, pixels="binary") -> Dataset:
    if data_dir is None:
        raise DataError("data set 'cifar10' needs --data-dir DIR, the folder of its binary "
                        "batches (data_batch_1.bin ... test_batch.bin)")
    return _levels_dataset("cifar10", read_cifar10(Path(data_dir)), seed, pixels,
                           str(data_dir))


def images(data_dir=None, seed=0, pixels="binary", crop=None, patches=None,
           augment="flip") -> Dataset:
    if data_dir is None:
        raise DataError("data set 'images' needs --data-dir DIR, a folder of image files "
                        "(PNG, JPEG, TIFF; with train/ and test/ subfolders, or every tenth "
                        "file held out)")
    if patches is not None:
        return _patches_dataset(Path(data_dir), crop_size(patches, "--patches"), seed, pixels,
                                augments(augment))
    size = None if crop is None else crop_size(crop)
    return _levels_dataset("images", read_folder(Path(data_dir), size), seed, pixels,
                           str(data_dir))


def _patches_dataset(folder: Path, size: tuple[int, int], seed: int, pixels: str,
                     augment: tuple[str, ...]) -> Dataset:
    """Photos of any size: random patches to train on, drawn afresh each epoch; the
    held-out photos' whole tiles to test on. 8-bit levels only (patches are not
    binarised)."""
    if pixels != "native":
        raise DataError("--patches trains on the photos' own levels: pass --pixels native")
    train, test = read_photos(folder, size)
    draw = Patches(train, size, seed, augment)
    test_x = tiles_of(test, size)
    first = draw(1)
    return Dataset("images", torch.from_numpy(first), torch.zeros(len(first), dtype=torch.long),
                   torch.from_numpy(test_x), torch.zeros(len(test_x), dtype=torch.long),
                   tuple(first.shape[1:]), {"source": str(folder), "patches": len(first)},
                   levels=256, resample=lambda epoch: torch.from_numpy(draw(epoch)))


def sample_patches_dataset(data_dir=None, seed=0, pixels="binary") -> Dataset:
    x, y = sample_patches()
    test = np.arange(len(x)) % 5 == 4  # every fifth patch held out
    arrays = (x[~test], y[~test], x[test], y[test])
    return _levels_dataset("sample-patches", arrays, seed, pixels,
                           "sklearn.datasets.load_sample_images, 32x32 patches")


@acnkit.hookimpl
def register_datasets(register):
    register("digits", digits, description="sklearn's 8x8 digits (1437 train / 360 test)")
    register("mnist", mnist, description="MNIST from IDX files in --data-dir (raw or .gz)")
    register("fashion-mnist", fashion_mnist,
             description=f"Fashion-MNIST from IDX files (default {FASHION_DEFAULT})")
    register("cifar10", cifar10,
             description="CIFAR-10's binary batches in --data-dir (colour: --pixels native)")
    register("images", images,
             description="a folder of image files in --data-dir (grey or colour; --crop HxW)")
    register("sample-patches", sample_patches_dataset,
             description="32x32 colour patches of sklearn's two sample photos (embedded; "
                         "--pixels native)")
