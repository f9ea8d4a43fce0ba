"""The latents of a portable file: each coded by a search over its grid points with the
normal CDF of :mod:`acnkit.exact` (the Gaussian models of the coder itself take their
platform's erf), a step's lanes searched together."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import exact
from .coder import DITHER, Codecs, Grid, Lanes, redither
from .levels import Decisions, Search, popped


class ExactCodecs(Codecs):
    """The codecs of a portable file: every latent coded by a search over its grid points
    (:class:`~acnkit.codec.levels.Search`; sixteenths for a prior, sixteenths and then
    halves for a posterior) with the normal CDF of
    :mod:`acnkit.exact`, so its probabilities are the same on every machine (the Gaussian
    models of the coder itself use their platform's erf). A step's lanes are searched
    together: one CDF call a cut for all of them.

    A posterior is popped from its window (mean +- WINDOW std, as :meth:`Codecs._windows`)
    after the dither, as in :meth:`Codecs.posteriors`; a prior over the whole grid. A
    mixture prior's CDF is the weighted sum of its components' (its exact -log p(z), no
    component coded)."""

    def __init__(self, grid: Grid) -> None:
        super().__init__(grid)
        # sizes are given per symbol. A prior is searched in sixteenths (the receiver pops
        # what the sender pushed, so an empty part, where an interval is narrower than 16,
        # is never popped); a posterior in sixteenths of powers of 16 and then halves: the
        # sender pops it from bits that code something else, and a part it popped must be
        # the one the receiver finds again from z, so no part may be empty
        self.search = Search(1 << 20, 16, exact=True)
        self.halves = Search(1 << 20, 2, exact=True)

    def _cdf(self, first: np.ndarray, weights: Any, means: Any, stds: Any) -> Any:
        """F at edge e of the symbols whose level 0 is grid point ``first`` (B, d): the
        mass below grid point first + e, i.e. below (first + e - 1/2) 2^-bits; a mixture's
        components along the last axis of ``weights``, ``means`` and ``stds`` (B, d, M)."""
        step = self.grid.step
        base = torch.from_numpy(first.astype(np.int64))

        def cdf(edges: np.ndarray) -> np.ndarray:
            at = base[..., None] + torch.from_numpy(edges)
            t = ((at.to(torch.float64) - 0.5) * step)[..., None]  # exact: integers, 2^-b
            f = exact.functions.normal_cdf((t - means[:, :, None]) / stds[:, :, None])
            if f.shape[-1] == 1:  # one Gaussian: its own CDF
                return f[..., 0].numpy()
            with exact.portable():
                total = (f * weights[:, :, None]).sum(-1)
            return total.numpy()

        return cdf

    def _lanes(self, search: Any, first: np.ndarray, sizes: np.ndarray, weights: Any,
               means: Any, stds: Any) -> Lanes:
        """Symbols first + s, s below ``sizes`` (B, d), found by ``search`` with the
        mixture's CDF."""
        cdf = self._cdf(first, weights, means, stds)

        def pop(stacks: list[Any]) -> np.ndarray:
            found = search.run(sizes.shape, cdf, popped(search, stacks), sizes)
            return (first + found).astype(np.int32)

        def push(stacks: list[Any], symbols: np.ndarray) -> None:
            decisions = Decisions(search)
            search.run(sizes.shape, cdf, decisions.known(symbols.astype(np.int64) - first), sizes)
            decisions.push(stacks)

        return Lanes(push, pop)

    def posterior_lanes(self, means: np.ndarray, stds: np.ndarray, steps: list[int]) -> Lanes:
        """Each posterior's window of 2^m points searched in two parts: the block of 2^b
        points (b = m mod 4) in sixteenths (16^j blocks: no sixteenth is ever empty), then
        the point within the block in halves, F at the block's ends carried over."""
        lo, size = self._windows(means, stds)
        fine = np.left_shift(1, (np.frexp(size)[1] - 1) % 4)  # 2^b
        coarse = size // fine  # a power of 16
        dims = means.shape[1]
        shifts = [self._shifts(step, dims) for step in steps]
        dither = self._uniform(DITHER)
        one = torch.ones((*means.shape, 1), dtype=torch.float64)
        cdf = self._cdf(lo, one, torch.from_numpy(means)[..., None],
                        torch.from_numpy(stds)[..., None])

        def coarse_cdf(edges: np.ndarray) -> np.ndarray:
            return cdf(edges * fine[..., None])

        def within(block: np.ndarray) -> tuple[Any, tuple[np.ndarray, np.ndarray]]:
            """The CDF inside each block, and F at its ends (0 and 1 at the window's)."""
            start = block * fine
            f = cdf(np.stack([start, start + fine], -1))
            ends = (np.where(start == 0, 0.0, f[..., 0]),
                    np.where(start + fine == size, 1.0, f[..., 1]))
            return (lambda edges: cdf(start[..., None] + edges)), ends

        def pop(stacks: list[Any]) -> np.ndarray:
            for ans, shift in zip(stacks, shifts, strict=True):
                redither(ans, dither, shift)
            block = self.search.run(size.shape, coarse_cdf, popped(self.search, stacks), coarse)
            inner, ends = within(block)
            point = self.halves.run(size.shape, inner, popped(self.halves, stacks), fine, ends)
            return (lo + block * fine + point).astype(np.int32)

        def push(stacks: list[Any], symbols: np.ndarray) -> None:
            offset = symbols.astype(np.int64) - lo
            block = offset // fine
            inner, ends = within(block)
            blocks, points = Decisions(self.search), Decisions(self.halves)
            self.search.run(size.shape, coarse_cdf, blocks.known(block), coarse)
            self.halves.run(size.shape, inner, points.known(offset - block * fine), fine, ends)
            points.push(stacks)  # popped last, pushed first
            blocks.push(stacks)
            for ans, shift in zip(stacks, shifts, strict=True):
                redither(ans, dither, -shift)

        return Lanes(push, pop)

    def prior_lanes(self, prior: Any) -> Lanes:
        with exact.portable():
            if hasattr(prior, "mean"):
                means, stds = prior.mean[..., None], prior.log_std.exp()[..., None]
                weights = torch.ones_like(means)
            else:
                means, stds = prior.means, prior.log_stds.exp()
                weights = torch.softmax(prior.logits, -1)
            means, stds, weights = (t.to(torch.float64).cpu() for t in (means, stds, weights))
        shape = means.shape[:2]
        first = np.full(shape, self.grid.lo, dtype=np.int64)
        sizes = np.full(shape, self.grid.hi - self.grid.lo + 1, dtype=np.int64)
        return self._lanes(self.search, first, sizes, weights, means, stds)
