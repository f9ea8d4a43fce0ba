"""A file's lanes: L independent bits-back chains, each on its own ANS stack, coded in
lockstep so that every network call serves all of them: step j codes the j-th image of
every lane in one batched call of the encoder, the prior and the decoder.

The coded order (ACN: the greedy chain; a VAE: the input order, or in set mode an order the
sender pops off the stacks) is cut into L contiguous pieces, one a lane
(:func:`~acnkit.codec.order.lane_sizes`); under ACN each piece's first image has the
zero-code prior, as the whole chain's first had. A lane costs its initial words, so L is
chosen to keep them under :data:`LANE_BUDGET` of the file.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import progress
from .image import ImageCoder
from .order import SetChooser, SetRestorer, lane_sizes, lane_starts

#: the lanes' initial words may take at most this share of a file (when L is not given)
LANE_BUDGET = 0.005
#: ... and there are at most this many lanes (a step's batch)
MAX_LANES = 1024
#: ... coding at most this many subpixels a step between them: what a step holds (a
#: stepping decoder's state, the level decisions) grows with it. A 4000 x 3000 photo's
#: 11,750 colour tiles of 32 x 32 took 682 lanes and 3.5 GB without it; Fashion-MNIST's
#: 10,000 images (303 lanes at most so far) are not held back
LANE_SUBPIXELS = 1 << 19


def lane_bits(seed_words: int, first_extra_bits: float = 0.0) -> float:
    """What a lane costs, about: its initial words (the first image's bits back come out
    of them, not out of data), its word count in the header, a word of rounding, and what
    its first image costs more for want of a neighbour (ACN: the zero-code prior)."""
    return 32 * (seed_words + 2) + max(first_extra_bits, 0.0)


def choose_lanes(n: int, file_bits: float, seed_words: int,
                 first_extra_bits: float = 0.0, subpixels: int = 1) -> int:
    """The most lanes whose fixed cost stays within :data:`LANE_BUDGET` of a file of
    about ``file_bits`` (at least one, at most one an image, at most
    :data:`LANE_SUBPIXELS` between them for images of ``subpixels``)."""
    fit = math.floor(LANE_BUDGET * file_bits / lane_bits(seed_words, first_extra_bits))
    return max(1, min(n, MAX_LANES, LANE_SUBPIXELS // max(1, subpixels), fit))


@dataclass
class Layout:
    """Which slot of the coded order each lane's j-th image is."""

    sizes: list[int]

    @classmethod
    def of(cls, n: int, lanes: int) -> Layout:
        return cls(lane_sizes(n, min(lanes, n)))

    @functools.cached_property
    def starts(self) -> list[int]:
        return lane_starts(self.sizes)

    @property
    def steps(self) -> int:
        return self.sizes[0]

    def active(self, step: int) -> int:
        """How many lanes (the first ones) have an image at ``step``."""
        return sum(size > step for size in self.sizes)

    def slots(self, step: int) -> list[int]:
        """The coded positions of step ``step``'s images, lane by lane: the dither's keys."""
        starts = self.starts
        return [starts[lane] + step for lane in range(self.active(step))]


def _contexts(coder: ImageCoder, previous: torch.Tensor | None, batch: int) -> Any:
    """The prior of a step's lanes: ACN's context is the code of the lane's image before
    (zeros for a lane's first), from the same batched encoder call on both sides."""
    model = coder.nets.model
    if not model.conditional:
        return coder.nets.prior(None, batch)
    if previous is None:
        previous = torch.zeros(batch, model.latent_dim, device=model.device)
    return coder.nets.prior(previous[:batch], batch)


def push_lanes(coder: ImageCoder, stacks: list[Any], images: np.ndarray, layout: Layout,
               order: np.ndarray | None, extents: np.ndarray | None = None) -> np.ndarray:
    """The sender: every image onto its lane's stack, last step first. ``order`` (coded
    position -> image) is the coded order; None in set mode, where the sender pops it off
    the stacks. ``extents`` (N, 3): each tile's real rows and columns and grey flag (ordered
    mode). Returns the coded order."""
    nets = coder.nets
    with progress.task("compress", len(images), "images") as shown:
        if order is None:  # set mode: the slots' images are chosen as the stacks grow
            order = np.empty(len(images), dtype=np.int64)
            chooser = SetChooser(images)
            for j in reversed(range(layout.steps)):
                b = layout.active(j)
                idx = [chooser.choose(stacks[lane], coder.codecs) for lane in range(b)]
                means, stds, _ = nets.posterior(images[idx])
                slots = layout.slots(j)
                coder.push(stacks[:b], images[idx], means, stds, nets.prior(None, b), slots)
                order[slots] = idx
                shown(b)
            return order
        # The posteriors of every step first: ACN's priors need the step before's codes.
        steps: list[tuple[np.ndarray, np.ndarray, np.ndarray, Any]] = []
        previous = None
        for j in range(layout.steps):
            rows = order[layout.slots(j)]
            means, stds, codes = nets.posterior(images[rows])
            steps.append((rows, means, stds, _contexts(coder, previous, len(rows))))
            previous = codes
        for j in reversed(range(layout.steps)):
            rows, means, stds, prior = steps[j]
            coder.push(stacks[: len(rows)], images[rows], means, stds, prior, layout.slots(j),
                       None if extents is None else extents[rows])
            shown(len(rows))
    return order


def pop_lanes(coder: ImageCoder, stacks: list[Any], layout: Layout, shape: tuple[int, ...],
              as_set: bool, tiled: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The receiver: every lane's images, first step first, in coded order, and (``tiled``)
    their real rows and columns; in set mode (``as_set``) the order's bits are pushed back
    after each step."""
    n = sum(layout.sizes)
    decoded = np.empty((n, *shape), dtype=np.uint8)
    extents = np.empty((n, 3), dtype=np.int64) if tiled else None
    restorer = SetRestorer() if as_set else None
    previous = None
    with progress.task("decompress", n, "images") as shown:
        for j in range(layout.steps):
            b, slots = layout.active(j), layout.slots(j)
            images, previous, found = coder.pop(stacks[:b], _contexts(coder, previous, b),
                                                shape, slots, tiled)
            decoded[slots] = images
            if extents is not None and found is not None:
                extents[slots] = found
            if restorer is not None:  # the reverse of the sender's choosing, lane by lane
                for lane in reversed(range(b)):
                    restorer.restore(stacks[lane], coder.codecs, images[lane])
            shown(b)
    return decoded, extents
