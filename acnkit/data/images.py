"""Images read from files: a folder of PNG/JPEG/TIFF files, and the patches of the two
photos scikit-learn ships (a small real colour set that needs no download).

Every file's size is read from its header and checked before its pixels are decoded; 16-bit
grey files are scaled to 8 bits; a folder of mixed sizes needs a crop."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..bounded import MAX_INPUT_BYTES
from ..config import augments as augments
from ..errors import DataError
from .datafile import read_data_file

#: the image files a folder data set reads, by suffix
SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", ".pbm")
#: at most this many pixels an image, and this many images a folder
MAX_PIXELS, MAX_FILES = 1 << 24, 1 << 20
#: at most this many entries (files and folders of any kind) are looked at in a folder's
#: tree, so that --data-dir / ends in seconds with a line instead of walking the disk
MAX_ENTRIES = 1 << 22
#: at most this many bytes of 8-bit levels in all the images of a folder, however many
#: files hold them: past it the folder is refused before memory runs out
MAX_LEVEL_BYTES = 1 << 32


#: image modes of 16 bits a pixel, read as 8-bit levels (v * 255 / 65535, rounded)
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def sixteen_bit_grey(img: Any, path: Path) -> np.ndarray | None:
    """A 16-bit grey image's levels scaled to 8 bits (never clipped); None for any other
    mode. Values outside 0..65535 (a 32-bit image) are refused."""
    if img.mode not in SIXTEEN_BIT:
        return None
    wide = np.asarray(img).astype(np.int64)
    if wide.min() < 0 or wide.max() > 65535:
        raise DataError(f"{path} has {img.mode} pixels outside 0..65535, which acnkit "
                        f"cannot scale to 8 bits; convert it to an 8- or 16-bit image")
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def image_levels(img: Any, path: Path) -> np.ndarray:
    """(H, W) grey or (H, W, 3) colour 8-bit levels of an opened image."""
    grey = sixteen_bit_grey(img, path)
    if grey is not None:
        return grey
    if img.mode in ("1", "L", "P", "LA") and (img.mode != "P" or img.palette.mode == "L"):
        return np.asarray(img.convert("L"))
    if img.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"))
    raise DataError(f"{path} has {img.mode} pixels; give 8-bit grey or colour images (or "
                    f"16-bit grey)")


def read_levels(path: Path, crop: tuple[int, int] | None) -> np.ndarray:
    """One image file as 8-bit levels, (H, W) or (H, W, 3), cropped to its centre."""
    from PIL import Image, UnidentifiedImageError

    try:
        # The bytes are read first, from a regular file only: Pillow opening the path would
        # block for ever on a FIFO put in place of a file after the folder was listed.
        with Image.open(io.BytesIO(read_data_file(path, MAX_INPUT_BYTES))) as img:
            if img.width * img.height > MAX_PIXELS:
                raise DataError(f"{path} is {img.width}x{img.height} pixels, more than acnkit "
                                f"reads ({MAX_PIXELS}); crop or shrink it first")
            if crop is not None:
                h, w = crop
                if img.height < h or img.width < w:
                    raise DataError(f"{path} is {img.width}x{img.height} pixels, smaller than "
                                    f"--crop {h}x{w}")
                top, left = (img.height - h) // 2, (img.width - w) // 2
                img = img.crop((left, top, left + w, top + h))
            return image_levels(img, path)
    except Image.DecompressionBombError:
        raise DataError(f"{path} claims more pixels than an image can safely hold") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path} is not an image Pillow can read "
                        f"({type(exc).__name__})") from None


def image_paths(folder: Path, suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    """The files under ``folder`` named with one of ``suffixes``, sorted; the walk ends
    with a line past :data:`MAX_ENTRIES` entries or :data:`MAX_FILES` images."""
    files = []
    for seen, p in enumerate(folder.rglob("*"), 1):
        if seen > MAX_ENTRIES:
            raise DataError(f"{folder} holds more than {MAX_ENTRIES} files and folders; give "
                            f"a folder that holds the images alone")
        if p.suffix.lower() in suffixes and p.is_file():
            files.append(p)
            if len(files) > MAX_FILES:
                raise DataError(f"{folder} holds more than {MAX_FILES} images; give a "
                                f"smaller folder")
    return sorted(files)


def read_all(paths: list[Path], crop: tuple[int, int] | None) -> list[np.ndarray]:
    """Every image of ``paths`` as levels, refused as soon as they pass
    :data:`MAX_LEVEL_BYTES`."""
    images, held = [], 0
    for path in paths:
        images.append(read_levels(path, crop))
        held += images[-1].nbytes
        if held > MAX_LEVEL_BYTES:
            raise DataError(f"the images up to {path} hold more than {MAX_LEVEL_BYTES} bytes of "
                            f"pixels, more than acnkit reads of one folder; give fewer or "
                            f"smaller images (or --crop HxW)")
    return images


def stack(images: list[np.ndarray], paths: list[Path]) -> np.ndarray:
    """Images of one size as (N, C, H, W) uint8: colour if any is colour (grey ones then
    repeated over three channels), else grey. Mixed sizes are refused, naming two files."""
    first = images[0].shape[:2]
    for image, path in zip(images, paths, strict=True):
        if image.shape[:2] != first:
            raise DataError(f"{path} is {image.shape[1]}x{image.shape[0]} pixels and "
                            f"{paths[0]} {first[1]}x{first[0]}; give images of one size or "
                            f"pass --crop HxW")
    colour = any(image.ndim == 3 for image in images)
    if colour:
        images = [i if i.ndim == 3 else np.repeat(i[:, :, None], 3, 2) for i in images]
        return np.stack(images).transpose(0, 3, 1, 2).copy()
    return np.stack(images)[:, None]


def read_folder(folder: Path, crop: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray, np.ndarray]:
    """Train and test images (N, C, H, W) uint8 and labels of a folder: its ``train/`` and
    ``test/`` subfolders when it has both, else every tenth file (sorted) held out for
    testing. A label is the name of the first folder under the split (class folders), in
    sorted order; 0 for files directly in it."""
    splits, roots = split_paths(folder)
    classes = sorted({_label(p, roots[s]) for s, ps in splits.items() for p in ps})
    levels = read_all(splits["train"] + splits["test"], crop)  # one budget for both
    parts = {"train": levels[:len(splits["train"])], "test": levels[len(splits["train"]):]}
    out = []
    for split in ("train", "test"):
        paths = splits[split]
        images = stack(parts[split], paths)
        labels = np.array([classes.index(_label(p, roots[split])) for p in paths])
        out += [images, labels]
    train_x, train_y, test_x, test_y = out
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{folder}: the train images are {train_x.shape[1:]} and the test "
                        f"images {test_x.shape[1:]} (channels, height, width); give one kind")
    return train_x, train_y, test_x, test_y


def split_paths(folder: Path) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    """A folder's training and held-out image files, and the folder each split's labels are
    read under: its ``train/`` and ``test/`` subfolders when it has both, else every tenth
    file (sorted) held out; an empty split is refused."""
    if not folder.is_dir():
        raise DataError(f"--data-dir {folder} is not a folder; give a folder of image files")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        splits = {s: image_paths(folder / s) for s in ("train", "test")}
        roots = {s: folder / s for s in splits}
    else:
        paths = image_paths(folder)
        splits = {"train": [p for i, p in enumerate(paths) if i % 10 != 9],
                  "test": [p for i, p in enumerate(paths) if i % 10 == 9]}
        roots = {"train": folder, "test": folder}
    for split, paths in splits.items():
        if not paths:
            raise DataError(f"{roots[split]} holds no {split} images "
                            f"({', '.join(SUFFIXES)}); a folder needs at least 10 images, or "
                            f"train/ and test/ subfolders")
    return splits, roots


def _label(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else ""


def sample_patches(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The non-overlapping ``size`` x ``size`` patches of scikit-learn's two sample photos
    (china.jpg, flower.jpg: 427 x 640 RGB), (N, 3, size, size) uint8, labelled by photo."""
    from sklearn.datasets import load_sample_images

    patches, labels = [], []
    for label, photo in enumerate(load_sample_images().images):
        h, w = (photo.shape[0] // size) * size, (photo.shape[1] // size) * size
        grid = photo[:h, :w].reshape(h // size, size, w // size, size, 3)
        tiles = grid.transpose(0, 2, 4, 1, 3).reshape(-1, 3, size, size)
        patches.append(tiles)
        labels.append(np.full(len(tiles), label))
    return np.concatenate(patches).astype(np.uint8), np.concatenate(labels)


class Patches:
    """Training images drawn afresh each epoch: ``size`` (H, W) patches at random places of
    photos of any size, as many an epoch as the photos hold whole tiles, each flipped left
    to right at random (``augment`` holding "flip"), its channels put in a random order
    ("permute") and, for :data:`GREY_SHARE` of the colour patches, made grey ("grey": its
    luminance in all three channels, as Pillow converts RGB to L, which is how a colour
    model meets a grey photo); the same for a given seed and epoch, so a resumed run draws
    what it would have drawn."""

    def __init__(self, photos: list[np.ndarray], size: tuple[int, int], seed: int,
                 augment: tuple[str, ...] = ("flip",)) -> None:
        self.photos, self.size, self.seed, self.augment = photos, size, seed, augment
        h, w = size
        self.counts = [(p.shape[1] // h) * (p.shape[2] // w) for p in photos]

    def __call__(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        h, w = self.size
        out = np.empty((sum(self.counts), self.photos[0].shape[0], h, w), dtype=np.uint8)
        at = 0
        for photo, count in zip(self.photos, self.counts, strict=True):
            rows = rng.integers(0, photo.shape[1] - h + 1, count)
            cols = rng.integers(0, photo.shape[2] - w + 1, count)
            flips = (rng.random(count) < 0.5) & ("flip" in self.augment)
            channels = photo.shape[0]
            orders = [rng.permutation(channels) if "permute" in self.augment
                      else np.arange(channels) for _ in range(count)]
            # drawn only when asked, so the runs without it draw what they always drew
            greys = (rng.random(count) < GREY_SHARE if "grey" in self.augment and channels == 3
                     else np.zeros(count, dtype=bool))
            for r, c, flip, order, grey in zip(rows, cols, flips, orders, greys, strict=True):
                patch = photo[:, r: r + h, c: c + w]
                patch = patch[:, :, ::-1] if flip else patch
                # grey from the photo's own R, G and B; the order matters only to colour
                out[at] = luminance(patch)[None] if grey else patch[order]
                at += 1
        return out


#: the share of colour patches ``--augment grey`` makes grey
GREY_SHARE = 0.25


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 RGB as Pillow's ``convert("L")`` makes it grey (ITU-R 601-2 luma,
    in Pillow's fixed point): L = (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    r, g, b = (rgb[i].astype(np.uint32) for i in range(3))
    return ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16).astype(np.uint8)


def tiles_of(photos: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The whole (non-overlapping, edge remainders left out) ``size`` tiles of photos, in
    raster order: the held-out images of a patch-trained run, the same every epoch."""
    h, w = size
    parts = []
    for p in photos:
        rows, cols = p.shape[1] // h, p.shape[2] // w
        grid = p[:, : rows * h, : cols * w].reshape(p.shape[0], rows, h, cols, w)
        parts.append(grid.transpose(1, 3, 0, 2, 4).reshape(rows * cols, p.shape[0], h, w))
    return np.concatenate(parts)


def read_photos(folder: Path, size: tuple[int, int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The training and held-out photos of a folder (split as :func:`read_folder` splits),
    each (C, H, W) uint8 of its own size, colour for all when any is colour (a grey one's
    levels in all three channels); a photo smaller than ``size`` is refused."""
    splits, _ = split_paths(folder)
    levels = read_all(splits["train"] + splits["test"], None)
    colour = any(image.ndim == 3 for image in levels)
    photos = []
    for image, path in zip(levels, splits["train"] + splits["test"], strict=True):
        if image.shape[0] < size[0] or image.shape[1] < size[1]:
            raise DataError(f"{path} is {image.shape[1]}x{image.shape[0]} pixels, smaller than "
                            f"--patches {size[0]}x{size[1]}")
        chw = image.transpose(2, 0, 1) if image.ndim == 3 else image[None]
        photos.append(np.repeat(chw, 3, 0) if colour and chw.shape[0] == 1 else chw)
    n = len(splits["train"])
    return photos[:n], photos[n:]
