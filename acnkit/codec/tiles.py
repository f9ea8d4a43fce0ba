"""Images of any size as tiles of a model's image size: cut in raster order, the tiles at
the right and bottom edges partial (their real rows and columns are the *extent*; the
rest is zeros, which the coder skips: only real pixels cost bits), and put back together.

A whole image of H' x W' pixels for a model of H x W images gives ceil(H'/H) x
ceil(W'/W) tiles; tile (i, j) holds rows i H .. and columns j W .. of the image.
"""

from __future__ import annotations

import math

import numpy as np


def tile_count(size: tuple[int, int], tile: tuple[int, int]) -> int:
    """The tiles of an image of ``size`` (height, width) for tiles of ``tile``."""
    return math.ceil(size[0] / tile[0]) * math.ceil(size[1] / tile[1])


def extents(size: tuple[int, int], tile: tuple[int, int]) -> np.ndarray:
    """Each tile's real rows and columns (n, 2), in raster order."""
    rows = [min(tile[0], size[0] - r) for r in range(0, size[0], tile[0])]
    cols = [min(tile[1], size[1] - c) for c in range(0, size[1], tile[1])]
    return np.array([(r, c) for r in rows for c in cols], dtype=np.int64).reshape(-1, 2)


def cut(image: np.ndarray, tile: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The tiles (n, C, *tile) of ``image`` (C, H', W'), zeros past its edges, and their
    extents (n, 2)."""
    c, h, w = image.shape
    th, tw = tile
    rows, cols = math.ceil(h / th), math.ceil(w / tw)
    padded = np.zeros((c, rows * th, cols * tw), dtype=image.dtype)
    padded[:, :h, :w] = image
    tiles = padded.reshape(c, rows, th, cols, tw).transpose(1, 3, 0, 2, 4)
    return np.ascontiguousarray(tiles.reshape(rows * cols, c, th, tw)), extents((h, w), tile)


def cut_all(images: list[np.ndarray], tile: tuple[int, int]
            ) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """The tiles of every image, one after another, their extents, and each image's
    (height, width)."""
    parts = [cut(image, tile) for image in images]
    return (np.concatenate([t for t, _ in parts]), np.concatenate([e for _, e in parts]),
            [[int(image.shape[1]), int(image.shape[2])] for image in images])


def join(tiles: np.ndarray, sizes: list[list[int]]) -> list[np.ndarray]:
    """The whole images (C, H', W') of ``sizes`` from their tiles (as :func:`cut_all`
    made them)."""
    _, c, th, tw = tiles.shape
    out, at = [], 0
    for h, w in sizes:
        rows, cols = math.ceil(h / th), math.ceil(w / tw)
        n = rows * cols
        grid = tiles[at: at + n].reshape(rows, cols, c, th, tw).transpose(2, 0, 3, 1, 4)
        out.append(np.ascontiguousarray(grid.reshape(c, rows * th, cols * tw)[:, :h, :w]))
        at += n
    return out
