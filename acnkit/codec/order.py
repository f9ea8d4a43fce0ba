"""Coding a data set's order (see :mod:`acnkit.evaluate` for the modes).

**ordered** files decode to the input array exactly, in order: ACN codes its images along
the greedy chain and the arrangement of those images in input order (log(N!/prod m_k!)
nats, m_k the copies of image k); **set** files decode to the same images in some order: the VAE pops the
order off the stack, bits back worth log(N!) nats minus the cost of telling equal images
apart.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections import Counter
from typing import Any

import numpy as np

from .coder import Codecs

MODES = ("ordered", "set")


def keys(images: np.ndarray) -> list[bytes]:
    """Each image's levels as bytes (uint8 images of any level count): equal images have
    equal keys, and keys sort the same way on both sides."""
    return [r.tobytes() for r in np.ascontiguousarray(images, dtype=np.uint8).reshape(
        len(images), -1)]


def same_images(a: np.ndarray, b: np.ndarray, mode: str) -> bool:
    """Whether ``b`` is what decoding ``a`` must give: equal arrays (ordered mode), or the
    same images in any order (set mode)."""
    if mode == "ordered":
        return bool(np.array_equal(a, b))
    return a.shape == b.shape and sorted(keys(a)) == sorted(keys(b))


def digest(images: np.ndarray, mode: str, context: bytes = b"") -> str:
    """SHA-256 of ``context`` (the file's header) and the images in order (ordered mode)
    or sorted (set mode)."""
    h = hashlib.sha256(context)
    if mode == "set":
        for r in sorted(keys(images)):
            h.update(r)
    else:  # the rows in order are the array's bytes: hashed where they lie, no copy
        h.update(np.ascontiguousarray(images, dtype=np.uint8).data.cast("B"))
    return h.hexdigest()


def log_distinct_orderings(images: np.ndarray) -> float:
    """log(N! / prod_k m_k!) nats: the orders of N images that can be told apart, when
    image k appears m_k times."""
    counts = Counter(keys(images)).values()
    return math.lgamma(len(images) + 1) - sum(math.lgamma(m + 1) for m in counts)


def push_arrangement(codecs: Codecs, ans: Any, input_keys: list[bytes]) -> None:
    """The input order of images decoded in another order (ACN's chain), for
    log(N! / prod_k m_k!) nats: equal images need not be told apart. The sender's side,
    given each input image's key in input order; pushed before the images, so that it is
    popped after them, when the receiver knows them (:func:`pop_arrangement`). For input
    position i the receiver pops a number r uniform below the images not yet placed
    (sorted by their bytes), takes an image of r's key, and pushes back which of the equal
    ones r was; the sender does the reverse, last position first."""
    left = sorted(input_keys)
    steps = []
    for key in input_keys:  # the receiver's states, forward
        first = bisect.bisect_left(left, key)
        same = bisect.bisect_right(left, key) - first
        steps.append((len(left), first, same))
        left.pop(first)
    for size, first, same in reversed(steps):
        j = int(codecs.uniform(same).pop(ans)[0])  # bits back: which of equal images
        codecs.uniform(size).push(ans, np.array(first + j))


def pop_arrangement(codecs: Codecs, ans: Any, decoded_keys: list[bytes]) -> np.ndarray:
    """The receiver's side of :func:`push_arrangement`: given the keys of the images in
    decoded order, which decoded slot goes to each input position."""
    slots = sorted(range(len(decoded_keys)), key=lambda i: decoded_keys[i])
    left = [decoded_keys[i] for i in slots]
    placed = np.empty(len(decoded_keys), dtype=np.int64)
    for i in range(len(decoded_keys)):
        r = int(codecs.uniform(len(left)).pop(ans)[0])
        first = bisect.bisect_left(left, left[r])
        same = bisect.bisect_right(left, left[r]) - first
        codecs.uniform(same).push(ans, np.array(r - first))
        placed[i] = slots.pop(first)
        left.pop(first)
    return placed


def lane_sizes(n: int, lanes: int) -> list[int]:
    """Images per lane: the coded order cut into ``lanes`` contiguous pieces whose sizes
    differ by at most one, the longer ones first (so a step's lanes are always the first
    ones)."""
    base, extra = divmod(n, lanes)
    return [base + (lane < extra) for lane in range(lanes)]


def lane_starts(sizes: list[int]) -> list[int]:
    """Where each lane's piece begins in the coded order."""
    return [0, *itertools.accumulate(sizes)][:-1]


class SetChooser:
    """The sender's side of set mode: each image a slot holds is chosen by a number popped
    uniformly below the count of images left (ranked by their bytes), from the stack of
    the slot's lane, so the order carries bits (log(N!) in all, less what telling equal
    images apart costs)."""

    def __init__(self, images: np.ndarray) -> None:
        image_keys = keys(images)
        self.left = sorted(range(len(images)), key=lambda i: image_keys[i])
        self.left_keys = [image_keys[i] for i in self.left]

    def choose(self, ans: Any, codecs: Codecs) -> int:
        r = int(codecs.uniform(len(self.left)).pop(ans)[0])
        key = self.left_keys[r]
        first = bisect.bisect_left(self.left_keys, key)
        same = bisect.bisect_right(self.left_keys, key) - first
        codecs.uniform(same).push(ans, np.array(r - first))  # which of equal images: the receiver can't tell
        self.left_keys.pop(r)
        return self.left.pop(r)


class SetRestorer:
    """The receiver's side of :class:`SetChooser`: given the images of the slots in the
    reverse of the sender's choosing, pushes the chosen numbers back."""

    def __init__(self) -> None:
        self.found: list[bytes] = []

    def restore(self, ans: Any, codecs: Codecs, image: np.ndarray) -> None:
        key = keys(image[None])[0]
        bisect.insort(self.found, key)
        first = bisect.bisect_left(self.found, key)
        same = bisect.bisect_right(self.found, key) - first
        r = first + int(codecs.uniform(same).pop(ans)[0])
        codecs.uniform(len(self.found)).push(ans, np.array(r))
