"""Subpixels of L levels coded by a binary search over their levels.

A subpixel's level is found by halving the interval [lo, hi) of levels it may still take,
starting from [0, L): at each step the sender tells the receiver whether the level lies at
or above the midpoint, a Bernoulli decision with P(right) = (F(hi) - F(mid)) / (F(hi) -
F(lo)), F being the loss's CDF (:meth:`acnkit.interfaces.Loss.cdf`). The decisions'
probabilities multiply to the level's probability, so the cost is the model's own up to
the coder's 24-bit rounding; constriction's leaky Bernoulli keeps every branch possible, so
a level the model finds impossible still codes (at about 24 bits a decision). A step asks
F at one edge a subpixel, where a table over the levels costs L masses a subpixel: for 256
levels, 8 CDF values (F(lo) and F(hi) are known from earlier steps).

Both sides run the same walk: the sender knows the levels and records its decisions, the
receiver pops them; the CDF is asked at the same edges in the same calls on both sides,
so its floats agree in every bit. An interval of one level needs no decision (levels that
are not a power of two end some walks a step early).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import CodecError

#: F at the given midpoints (an int64 array) of the subpixels a walk is over: float64
CDF = Callable[[np.ndarray], np.ndarray]
#: one step's decisions: (step, active, P(right), midpoints) -> right (bool; read where
#: active only)
Decide = Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def steps(levels: int) -> int:
    """How many halvings find one of ``levels`` levels (at most)."""
    return max(1, (levels - 1).bit_length())


def right_probability(f_lo: np.ndarray, f_mid: np.ndarray, f_hi: np.ndarray) -> np.ndarray:
    """P(level >= mid | lo <= level < hi); an interval the CDF gives no mass decides evenly
    (both sides compute the same floats, so any fixed rule decodes)."""
    mass = f_hi - f_lo
    p = np.full(mass.shape, 0.5)
    np.divide(f_hi - f_mid, mass, out=p, where=mass > 0)
    return np.clip(p, 0.0, 1.0, out=p)


def walk(levels: int, shape: tuple[int, ...], cdf: CDF, decide: Decide) -> np.ndarray:
    """The binary search over ``levels`` levels of subpixels of ``shape``, its decisions
    made by ``decide``: the levels found (int64)."""
    lo = np.zeros(shape, dtype=np.int64)
    hi = np.full(shape, levels, dtype=np.int64)
    f_lo, f_hi = np.zeros(shape), np.ones(shape)
    for step in range(steps(levels)):
        active = hi - lo > 1
        mid = (lo + hi) // 2
        f_mid = cdf(mid)
        if not np.isfinite(f_mid).all():
            raise CodecError("the loss gave a CDF that is not finite numbers; the images "
                             "cannot be coded with this model (test the loss with "
                             "acnkit.testing.check_loss)")
        right = decide(step, active, right_probability(f_lo, f_mid, f_hi), mid)
        up = active & right
        down = active & ~up
        np.copyto(lo, mid, where=up)
        np.copyto(f_lo, f_mid, where=up)
        np.copyto(hi, mid, where=down)
        np.copyto(f_hi, f_mid, where=down)
    return lo


class Decisions:
    """The sender's side of walks over known levels: each walk's decisions recorded, then
    pushed a lane (the first axis) at a time, in the order the receiver pops them (walk by
    walk, step by step, subpixel by subpixel)."""

    def __init__(self) -> None:
        self._active: list[np.ndarray] = []
        self._right: list[np.ndarray] = []
        self._p: list[np.ndarray] = []

    def known(self, levels: np.ndarray) -> Decide:
        """The decisions of a walk over ``levels`` (lanes first), recorded."""
        def decide(step: int, active: np.ndarray, p: np.ndarray, mid: np.ndarray) -> np.ndarray:
            right = levels >= mid
            lanes = len(active)
            self._active.append(active.reshape(lanes, -1))
            self._right.append(right.reshape(lanes, -1))
            self._p.append(p.reshape(lanes, -1))
            return right
        return decide

    def push(self, stacks: list[Any], bernoulli: Any) -> None:
        """Every lane's recorded decisions onto its stack (lane b: ``stacks[b]``), last
        first, so that they pop in order."""
        if not self._active:
            return
        active = np.concatenate(self._active, 1)
        right = np.concatenate(self._right, 1).astype(np.int32)
        p = np.concatenate(self._p, 1)
        if active.all():  # levels a power of two: every subpixel decides every step
            for ans, bits, probs in zip(stacks, right, p, strict=True):
                ans.encode_reverse(bits, bernoulli, probs)
            return
        for lane, ans in enumerate(stacks):
            on = active[lane]
            ans.encode_reverse(np.ascontiguousarray(right[lane, on]), bernoulli,
                               np.ascontiguousarray(p[lane, on]))


def popped(stacks: list[Any], bernoulli: Any) -> Decide:
    """The receiver's decisions: lane b's from ``stacks[b]``."""
    def decide(step: int, active: np.ndarray, p: np.ndarray, mid: np.ndarray) -> np.ndarray:
        lanes = len(active)
        flat_active, flat_p = active.reshape(lanes, -1), p.reshape(lanes, -1)
        if flat_active.all():  # levels a power of two: every subpixel decides every step
            return np.stack([ans.decode(bernoulli, row) for ans, row in zip(stacks, flat_p,
                                                                           strict=True)]
                            ).astype(bool).reshape(active.shape)
        right = np.zeros(flat_active.shape, dtype=bool)
        for lane, ans in enumerate(stacks):
            on = flat_active[lane]
            if on.any():
                right[lane, on] = ans.decode(bernoulli, np.ascontiguousarray(flat_p[lane, on]))
        return right.reshape(active.shape)
    return decide
