"""The kit of data sets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def check_dataset(factory: Callable[..., Any], **kwargs: Any) -> None:
    """A data set ``factory(data_dir=None, seed=0, **kwargs)`` gives a
    :class:`~acnkit.interfaces.Dataset`: images of integer levels below its ``levels``
    (0/1 when binarised) of shape (N, *image_shape) for train and test (uint8 up to 256
    levels), one integer label per image, non-empty splits; the same ``seed`` gives the
    same images (test figures are comparable across runs); a ``resample`` gives each
    epoch's training images of the same number and shape, the same for the same epoch,
    other for another."""
    from ..interfaces import Dataset

    kwargs.setdefault("data_dir", None)
    first, again = factory(seed=0, **kwargs), factory(seed=0, **kwargs)
    assert isinstance(first, Dataset), f"the factory gave a {type(first).__name__}"
    for split in ("train", "test"):
        x, y = getattr(first, f"{split}_x"), getattr(first, f"{split}_y")
        assert len(x) > 0, f"empty {split} set"
        levels = int(getattr(first, "levels", 2))
        assert x.dtype == torch.uint8 or levels > 256 and not x.is_floating_point(), (
            f"{split} images are {x.dtype}, not torch.uint8")
        assert tuple(x.shape[1:]) == tuple(first.image_shape), (
            f"{split} images have shape {tuple(x.shape[1:])}, not {first.image_shape}")
        assert int(x.min()) >= 0 and int(x.max()) < levels, (
            f"{split} images hold values other than its {levels} levels "
            f"{'0/1' if levels == 2 else f'0 .. {levels - 1}'}")
        assert len(y) == len(x) and not torch.is_floating_point(y), (
            f"{split} needs one integer label per image")
        assert torch.equal(x, getattr(again, f"{split}_x")), (
            f"{split} images differ between two loads with the same seed")
    draw = getattr(first, "resample", None)
    if draw is not None:
        one, again_one, two = draw(1), draw(1), draw(2)
        for x in (one, two):
            assert tuple(x.shape) == tuple(first.train_x.shape) and x.dtype == first.train_x.dtype, (
                f"resample gave images {tuple(x.shape)} {x.dtype}, not the training images' "
                f"{tuple(first.train_x.shape)} {first.train_x.dtype}")
        assert torch.equal(one, again_one), "resample gave other images for the same epoch"
        assert not torch.equal(one, two), "resample gave the same images for another epoch"
