"""Subpixels of L levels coded by a search over their levels.

A subpixel's level is found by cutting the interval [lo, hi) of levels it may still take
into R parts (R the search's radix) until one level is left: at each cut the sender tells
the receiver which part holds the level, a decision over the R parts with P(part j) =
(F(e_j+1) - F(e_j)) / (F(hi) - F(lo)) at the parts' edges e_j = lo + j (hi - lo) // R,
F being the loss's CDF (:meth:`acnkit.interfaces.Loss.cdf`). The decisions' probabilities
multiply to the level's, so the cost is the model's own up to the coder's 24-bit rounding;
constriction's leaky models keep every part possible, so a level the model finds
impossible still codes (at about 24 bits a decision).

The radix trades CDF values against coder calls. Halving (R = 2, Bernoulli decisions)
asks F at one edge a cut, 8 edges a subpixel of 256 levels where a table over the levels
takes 256 masses: the choice when a whole image's subpixels are decided in one call a
lane. Sixteen parts (constriction's Categorical) take two decisions a subpixel of 256
levels instead of eight, and 30 edges: the choice when every subpixel is its own call on
each lane's stack (an autoregressive decoder, pixel by pixel).

Both sides run the same search: the sender knows the levels and records its decisions,
the receiver pops them; the CDF is asked at the same edges in the same calls on both
sides, so its floats agree in every bit. An interval of one level needs no decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import CodecError
from .coder import constriction

#: F at edges (..., m) (an int64 array) of the subpixels a search is over: float64, alike
CDF = Callable[[np.ndarray], np.ndarray]
#: one cut's decisions: (cut, active, the coder model's parameters (Search.params), the
#: inner edges (..., R - 1)) -> the parts taken (int64; read where active only)
Decide = Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class Search:
    """The search over ``levels`` levels in ``radix`` parts a cut, and its coder model."""

    def __init__(self, levels: int, radix: int, exact: bool = False) -> None:
        if radix < 2:
            raise ValueError(f"a search cuts into at least 2 parts, not {radix}")
        self.levels, self.radix, self.exact = levels, radix, exact
        model = constriction().stream.model
        self.model = model.Bernoulli(perfect=False) if radix == 2 else \
            model.Categorical(perfect=False)
        self.cuts, width = 0, levels
        while width > 1:  # the widest part after a cut: ceil(width / radix)
            width, self.cuts = -(-width // radix), self.cuts + 1

    def params(self, f_lo: np.ndarray, f_inner: np.ndarray, f_hi: np.ndarray) -> np.ndarray:
        """The coder model's parameters for the decisions of one cut, from F at the
        interval's ends (...) and at its inner edges (..., R - 1): P(part 1) for halves (a
        Bernoulli), the parts' probabilities (..., R) otherwise (a Categorical). An
        interval the CDF gives no mass is decided evenly (both sides compute the same
        floats, so any fixed rule decodes)."""
        if self.radix == 2:
            mass = f_hi - f_lo
            p = np.full(mass.shape, 0.5)
            np.divide(f_hi - f_inner[..., 0], mass, out=p, where=mass > 0)
            return np.clip(p, 0.0, 1.0, out=p)
        f_edges = np.concatenate([f_lo[..., None], f_inner, f_hi[..., None]], -1)
        mass = np.maximum(np.diff(f_edges, axis=-1), 0.0)
        # exact: the interval's mass from its ends, one subtraction, where numpy's sum
        # of the parts would be in an order numpy may change (the coder normalises the
        # parts by their own sum, in its fixed order, either way)
        total = (f_hi - f_lo)[..., None] if self.exact else mass.sum(-1, keepdims=True)
        p = np.full(mass.shape, 1.0 / self.radix)
        np.divide(mass, total, out=p, where=total > 0)
        return p

    def run(self, shape: tuple[int, ...], cdf: CDF, decide: Decide,
            sizes: np.ndarray | None = None,
            ends: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The search for subpixels of ``shape``, its decisions made by ``decide``: the
        levels found (int64); ``sizes``: each symbol's own level count (shape ``shape``,
        each at least 1) instead of :attr:`levels` (a latent's window), cut until every
        interval is one level; ``ends``: F at the interval's ends, where they are not 0
        and 1 (a block of a window)."""
        if sizes is None and ends is None and self.radix ** self.cuts == self.levels:
            return self._run_even(shape, cdf, decide)
        r = self.radix
        lo = np.zeros(shape, dtype=np.int64)
        hi = np.full(shape, self.levels, dtype=np.int64) if sizes is None \
            else sizes.astype(np.int64)
        f_lo, f_hi = (np.zeros(shape), np.ones(shape)) if ends is None else \
            (ends[0].astype(np.float64), ends[1].astype(np.float64))
        parts = np.arange(1, r)
        cut = 0
        while True:
            width = hi - lo
            active = width > 1
            if not active.any():
                return lo
            inner = lo[..., None] + (parts * width[..., None]) // r
            f_inner = _checked(cdf(inner))
            part = decide(cut, active, self.params(f_lo, f_inner, f_hi), inner)
            below, above = self._part_ends(f_inner, part)
            np.copyto(f_lo, below, where=active & (part > 0))
            np.copyto(f_hi, above, where=active & (part < r - 1))
            new_lo = lo + (part * width) // r
            np.copyto(hi, lo + ((part + 1) * width) // r, where=active)
            np.copyto(lo, new_lo, where=active)
            cut += 1

    def _run_even(self, shape: tuple[int, ...], cdf: CDF, decide: Decide) -> np.ndarray:
        """:meth:`run` where the levels are a power of the radix (256 levels in halves or
        sixteenths): every part of a cut is as wide as the others, every subpixel decides
        at every cut, so the same search takes far fewer array operations."""
        r = self.radix
        lo = np.zeros(shape, dtype=np.int64)
        f_lo, f_hi = np.zeros(shape), np.ones(shape)
        active = np.ones(shape, dtype=bool)
        step = self.levels
        for cut in range(self.cuts):
            step //= r
            inner = lo[..., None] + np.arange(step, r * step, step)
            f_inner = _checked(cdf(inner))
            part = decide(cut, active, self.params(f_lo, f_inner, f_hi), inner)
            below, above = self._part_ends(f_inner, part)
            if r == 2:  # f_lo moves up where the upper half was taken, f_hi down elsewhere
                taken = part.astype(bool)
                np.copyto(f_lo, below, where=taken)
                np.copyto(f_hi, above, where=~taken)
            else:
                f_lo, f_hi = np.where(part > 0, below, f_lo), np.where(part < r - 1, above, f_hi)
            lo += part * step
        return lo

    def _part_ends(self, f_inner: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F at the lower and upper inner edges of the part taken (read where the part has
        such an edge only: the first part's lower end and the last's upper end are the
        interval's own)."""
        if self.radix == 2:  # one inner edge: both
            return f_inner[..., 0], f_inner[..., 0]
        r = self.radix
        below = np.take_along_axis(f_inner, np.maximum(part - 1, 0)[..., None], -1)[..., 0]
        above = np.take_along_axis(f_inner, np.minimum(part, r - 2)[..., None], -1)[..., 0]
        return below, above


def _checked(f: np.ndarray) -> np.ndarray:
    if not np.isfinite(f).all():
        raise CodecError("the loss gave a CDF that is not finite numbers; the images "
                         "cannot be coded with this model (test the loss with "
                         "acnkit.testing.check_loss)")
    return f


class Decisions:
    """The sender's side of searches over known levels: each search's decisions recorded,
    then pushed a lane (the first axis) at a time, in the order the receiver pops them
    (search by search, cut by cut, subpixel by subpixel)."""

    def __init__(self, search: Search) -> None:
        self.search = search
        self._active: list[np.ndarray] = []
        self._part: list[np.ndarray] = []
        self._params: list[np.ndarray] = []

    def known(self, levels: np.ndarray) -> Decide:
        """The decisions of a search for ``levels`` (lanes first), recorded."""

        def decide(cut: int, active: np.ndarray, params: np.ndarray,
                   inner: np.ndarray) -> np.ndarray:
            lanes = len(active)
            # the part whose edges hold the level: as many as there are inner edges at or
            # below it (an empty part's two equal edges both count, passing over it)
            part = (inner <= levels[..., None]).sum(-1)
            self._active.append(active.reshape(lanes, -1))
            self._part.append(part.reshape(lanes, -1))
            self._params.append(params.reshape(lanes, -1, *params.shape[active.ndim:]))
            return part

        return decide

    def push(self, stacks: list[Any]) -> None:
        """Every lane's recorded decisions onto its stack (lane b: ``stacks[b]``), last
        first, so that they pop in order."""
        if not self._active:
            return
        model = self.search.model
        active = np.concatenate(self._active, 1)
        part = np.concatenate(self._part, 1).astype(np.int32)
        params = np.concatenate(self._params, 1)
        if active.all():  # a power of the radix: every subpixel decides at every cut
            for ans, parts, rows in zip(stacks, part, params, strict=True):
                ans.encode_reverse(parts, model, np.ascontiguousarray(rows))
            return
        for lane, ans in enumerate(stacks):
            on = active[lane]
            ans.encode_reverse(np.ascontiguousarray(part[lane, on]), model,
                               np.ascontiguousarray(params[lane, on]))


def popped(search: Search, stacks: list[Any]) -> Decide:
    """The receiver's decisions: lane b's from ``stacks[b]``."""
    model = search.model

    def decide(cut: int, active: np.ndarray, params: np.ndarray,
               inner: np.ndarray) -> np.ndarray:
        lanes = len(active)
        flat_active = active.reshape(lanes, -1)
        flat_params = params.reshape(lanes, -1, *params.shape[active.ndim:])
        if flat_active.all():  # a power of the radix: every subpixel decides at every cut
            return np.stack([ans.decode(model, np.ascontiguousarray(rows))
                             for ans, rows in zip(stacks, flat_params, strict=True)]
                            ).astype(np.int64).reshape(active.shape)
        part = np.zeros(flat_active.shape, dtype=np.int64)
        for lane, ans in enumerate(stacks):
            on = flat_active[lane]
            if on.any():
                part[lane, on] = ans.decode(model, np.ascontiguousarray(flat_params[lane, on]))
        return part.reshape(active.shape)

    return decide
