"""Coding a data set's order (see :mod:`acnkit.evaluate` for the modes).

**ordered** files decode to the input array exactly, in order: ACN codes its images along
the greedy chain and pushes the permutation from chain order back to input order
(log(N!) nats); **set** files decode to the same images in some order: the VAE pops the
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

from .coder import Codec, Codecs

MODES = ("ordered", "set")


def keys(images: np.ndarray) -> list[bytes]:
    """Each image's pixels packed 8 to a byte: equal images have equal keys, and keys sort."""
    return [r.tobytes() for r in np.packbits(images.reshape(len(images), -1), axis=1)]


def same_images(a: np.ndarray, b: np.ndarray, mode: str) -> bool:
    """Whether ``b`` is what decoding ``a`` must give: equal arrays (ordered mode), or the
    same images in any order (set mode)."""
    if mode == "ordered":
        return bool(np.array_equal(a, b))
    return a.shape == b.shape and sorted(keys(a)) == sorted(keys(b))


def digest(images: np.ndarray, mode: str, context: bytes = b"") -> str:
    """SHA-256 of ``context`` (the file's header) and the images in order (ordered mode)
    or sorted (set mode)."""
    rows = keys(images)
    if mode == "set":
        rows.sort()
    h = hashlib.sha256(context)
    for r in rows:
        h.update(r)
    return h.hexdigest()


def log_distinct_orderings(images: np.ndarray) -> float:
    """log(N! / prod_k m_k!) nats: the orders of N images that can be told apart, when
    image k appears m_k times."""
    counts = Counter(keys(images)).values()
    return math.lgamma(len(images) + 1) - sum(math.lgamma(m + 1) for m in counts)


def ranks_of(order: np.ndarray) -> np.ndarray:
    """For each position t, the rank of order[t] among the indices not placed before it."""
    left = list(range(len(order)))
    ranks = np.empty(len(order), dtype=np.int32)
    for t, i in enumerate(order.tolist()):
        r = bisect.bisect_left(left, i)
        ranks[t] = r
        left.pop(r)
    return ranks


def order_from_ranks(ranks: np.ndarray) -> np.ndarray:
    left = list(range(len(ranks)))
    return np.array([left.pop(int(r)) for r in ranks], dtype=np.int64)


def permutation_codec(codecs: Codecs, n: int) -> Codec:
    """The chain order of ``n`` > 1 images as the ranks of its first n - 1 indices (the
    last is the one left): push it after the images, pop it before them."""
    sizes = np.arange(n, 1, -1, dtype=np.int32)
    codec = codecs.uniforms(sizes)

    def push(ans: Any, order: np.ndarray) -> None:
        codec.push(ans, ranks_of(order)[:-1])

    def pop(ans: Any) -> np.ndarray:
        return order_from_ranks(np.append(codec.pop(ans), 0))

    return Codec(push, pop)


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
