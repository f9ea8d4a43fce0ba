"""The images of a run: its data set read through the registry, checked, and split into
the training images and the held-out ones (the test set, or a validation slice)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import RunConfig
from ..errors import PluginError, UsageError
from ..interfaces import Dataset
from ..registry import Registry


@dataclass
class RunData:
    """Training and held-out images (on the run's device) with their labels (on the CPU).

    ``eval_split`` says what the held-out images are: ``"test"``, or ``"valid"`` when the
    run carved them from the end of the training set (``--valid-size``)."""

    dataset: Dataset
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    eval_split: str = "test"

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.image_shape)

    @property
    def dims(self) -> int:
        return self.dataset.dims

    @property
    def levels(self) -> int:
        return int(getattr(self.dataset, "levels", 2))

    def split(self, name: str) -> Tensor:
        """The images of ``name``: "train" or "test" (the held-out images)."""
        if name not in ("train", "test"):
            raise UsageError(f"split must be 'train' or 'test', got {name!r}")
        return self.train_x if name == "train" else self.test_x


def validate_dataset(data: Dataset, name: str) -> None:
    """What the engine relies on in a data set plugin's answer."""
    levels = getattr(data, "levels", 2)
    if not isinstance(levels, int) or not 2 <= levels <= 65536:
        raise PluginError(f"data set {name!r}: levels must be a whole number from 2 to "
                          f"65536, got {levels!r}")
    for split in ("train", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if len(x) == 0:
            raise UsageError(f"data set {name!r} has an empty {split} set")
        if len(x) != len(y):
            raise PluginError(f"data set {name!r}: {split} has {len(x)} images, {len(y)} labels")
        if tuple(x.shape[1:]) != tuple(data.image_shape):
            raise PluginError(f"data set {name!r}: {split} images have shape "
                              f"{tuple(x.shape[1:])}, not image_shape {data.image_shape}")
        if x.is_floating_point() or int(x.max()) >= levels or int(x.min()) < 0:
            raise PluginError(f"data set {name!r}: {split} images must be integer levels "
                              f"0 .. {levels - 1} (its levels), got {x.dtype} from "
                              f"{x.min().item()} to {x.max().item()}")


def read_dataset(config: RunConfig, registry: Registry) -> Dataset:
    """The run's data set, binarised with its data seed, checked."""
    options: dict = {"data_dir": config.data_dir, "seed": config.data_seed,
                     "pixels": config.pixels}
    if config.crop is not None:
        options["crop"] = config.crop
    if config.patches is not None:
        options["patches"] = config.patches
        options["augment"] = config.augment
    data = registry.create("dataset", config.data, **options,
                           given=config.given(data_dir="data_dir", seed="data_seed",
                                              pixels="pixels", crop="crop",
                                              patches="patches", augment="augment"))
    validate_dataset(data, config.data)
    return data


def split_data(config: RunConfig, data: Dataset, device: torch.device) -> RunData:
    """The run's images: ``--train-limit`` and ``--test-limit`` applied, and with
    ``--valid-size`` the last training images held out instead of the test set (so that
    hyper-parameters are never chosen on the test set)."""
    c = config
    train_x, train_y = data.train_x[: c.train_limit], data.train_y[: c.train_limit]
    test_x, test_y = data.test_x, data.test_y
    split = "test"
    if c.valid_size:
        if c.valid_size >= len(train_x):
            raise UsageError(f"--valid-size {c.valid_size} leaves no training images "
                             f"of {len(train_x)}")
        train_x, test_x = train_x[: -c.valid_size], train_x[-c.valid_size:]
        train_y, test_y = train_y[: -c.valid_size], train_y[-c.valid_size:]
        split = "valid"
    return RunData(data, train_x.to(device), train_y, test_x[: c.test_limit].to(device),
                   test_y[: c.test_limit], split)


def load_data(config: RunConfig, registry: Registry, device: torch.device,
              dataset: Dataset | None = None) -> RunData:
    """Read (unless ``dataset`` is given), check and split the run's data."""
    data = dataset if dataset is not None else read_dataset(config, registry)
    if dataset is not None:
        validate_dataset(data, config.data)
    return split_data(config, data, device)
