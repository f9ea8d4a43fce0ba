"""The coder primitives: each codec a pair ``push(ans, symbols)`` / ``pop(ans) -> symbols``
on a constriction ``AnsCoder`` (a stack: what is pushed last is popped first).

Latents live on a grid of step 2^-b (:class:`Grid`), so every latent model is a quantised
Gaussian over integers. A mixture is coded by pushing the component too, with bits back
from the components' posterior given z: -log p(z) in all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import CodecError

#: latents are coded within this many standard deviations of every mean
SPAN = 8.0
#: at most this many grid points per latent dimension
MAX_GRID = 1 << 16
#: a posterior is popped from its mean +- this many standard deviations only: a quantised
#: Gaussian gives every grid point some mass, and an absurd z popped from that floor would
#: cost thousands of bits
WINDOW = 8.0
#: the dither's alphabet: 16 bits a latent dimension
DITHER = 1 << 16
#: seed of the dither's pseudo-random stream (shared by sender and receiver)
DITHER_SEED = 20261202


def redither(ans: Any, dither: Any, shift: np.ndarray) -> None:
    """The ``len(shift)`` dither words on top of ``ans`` replaced by themselves plus
    ``shift`` (mod :data:`DITHER`): ``+shift`` before a posterior's pop, ``-shift`` after
    its push, so the bits it pops back are the image's own shifted by its key."""
    words = (ans.decode(dither, len(shift)).astype(np.int64) + shift) % DITHER
    ans.encode_reverse(words.astype(np.int32), dither)


def constriction() -> Any:
    try:
        import constriction
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise CodecError("the codec needs the constriction package: "
                         "python -m pip install constriction") from None
    return constriction


def new_stack(words: np.ndarray) -> Any:
    """An ANS stack holding ``words`` (a copy: the caller's array stays as it is)."""
    return constriction().stream.stack.AnsCoder(words.copy())


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the networks in one thread: a split of a product over threads can change the
    order of its sums, and the receiver may run with another thread count. numpy's BLAS
    too (the exact arithmetic's products, whose sums are exact in any order): a second
    BLAS thread halved the speed of decoding beside a training on the other core, and
    gained little on an idle machine (docs/performance.md)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Grid:
    bits: int  # step 2^-bits
    lo: int
    hi: int

    @property
    def step(self) -> float:
        return 2.0 ** -self.bits

    def values(self, symbols: np.ndarray) -> np.ndarray:
        return symbols.astype(np.float64) * self.step


def choose_grid(means: np.ndarray, stds: np.ndarray) -> Grid:
    """A grid fine enough for the smallest standard deviation (a step of at most a quarter
    of it, so quantising costs little) and wide enough for every mean +- SPAN deviations."""
    lo = min(-SPAN, float((means - SPAN * stds).min()))
    hi = max(SPAN, float((means + SPAN * stds).max()))
    smallest = max(float(stds.min()), 1e-6)
    bits = max(0, math.ceil(math.log2(4.0 / smallest)))
    while bits > 0 and (hi - lo) * 2.0**bits > MAX_GRID:
        bits -= 1
    return Grid(bits, math.floor(lo * 2.0**bits), math.ceil(hi * 2.0**bits))


@dataclass(frozen=True)
class Codec:
    """A way to put symbols on the stack and take them off again."""

    push: Callable[[Any, np.ndarray], None]
    pop: Callable[[Any], np.ndarray]


@dataclass(frozen=True)
class Lanes:
    """A codec of a step's lanes at once: row b of the symbols (B, d) on ``stacks[b]``."""

    push: Callable[[list[Any], np.ndarray], None]
    pop: Callable[[list[Any]], np.ndarray]

    @classmethod
    def of(cls, codecs: list[Codec]) -> Lanes:
        """Lane b coded by ``codecs[b]`` on its own."""
        def push(stacks: list[Any], symbols: np.ndarray) -> None:
            for ans, codec, row in zip(stacks, codecs, symbols, strict=True):
                codec.push(ans, row)

        def pop(stacks: list[Any]) -> np.ndarray:
            return np.stack([codec.pop(ans) for ans, codec in zip(stacks, codecs, strict=True)])

        return cls(push, pop)


def responsibilities(z: np.ndarray, weights: np.ndarray, means: np.ndarray,
                     stds: np.ndarray) -> np.ndarray:
    """P(component | z) per dimension (d, M), from the densities at the grid point."""
    log = np.log(np.maximum(weights, 1e-300)) - np.log(stds) \
        - 0.5 * ((z[:, None] - means) / stds) ** 2
    log -= log.max(1, keepdims=True)
    p = np.exp(log)
    return np.ascontiguousarray(p / p.sum(1, keepdims=True))


class Codecs:
    """The codecs of one file: constriction's model families, built once for its grid."""

    def __init__(self, grid: Grid) -> None:
        model = constriction().stream.model
        self.grid = grid
        self._gauss = model.QuantizedGaussian(grid.lo, grid.hi)
        self._quantized = model.QuantizedGaussian
        self._categorical = model.Categorical(perfect=False)
        self._uniform = model.Uniform
        self._dither_blocks: dict[tuple[int, int], np.ndarray] = {}
        self._window_models: dict[int, Any] = {}

    def _scaled(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.grid.step
        return np.ascontiguousarray(mean / s), np.ascontiguousarray(np.maximum(std, 1e-9) / s)

    def posterior_lanes(self, means: np.ndarray, stds: np.ndarray, steps: list[int]) -> Lanes:
        """:meth:`posteriors` of a step's lanes as one codec."""
        return Lanes.of(self.posteriors(means, stds, steps))

    def prior_lanes(self, prior: Any) -> Lanes:
        """The codec of each row of a batched latent prior (a DiagGaussian or a
        MixtureDiagGaussian, their numbers read off once), as one codec."""
        if hasattr(prior, "mean"):
            means = prior.mean.double().cpu().numpy()
            stds = prior.log_std.exp().double().cpu().numpy()
            return Lanes.of([self.gaussian(m, s) for m, s in zip(means, stds, strict=True)])
        weights = torch.softmax(prior.logits.double(), -1).cpu().numpy()
        means = prior.means.double().cpu().numpy()
        stds = prior.log_stds.exp().double().cpu().numpy()
        return Lanes.of([self.mixture(np.ascontiguousarray(w), m, s)
                         for w, m, s in zip(weights, means, stds, strict=True)])

    def posteriors(self, means: np.ndarray, stds: np.ndarray, steps: list[int]) -> list[Codec]:
        """The codecs of a batch of posteriors q(z|x) = N(means[b], stds[b]^2) (B, d), the
        image of row b at ``steps[b]`` of the decoding order.

        Each dimension's grid points come from a window around its mean (:meth:`_windows`),
        and each pop is dithered: the bits a posterior pop reads were pushed last (the next
        image's latent, under the prior), and where q is close to p they would read back
        the previous image's quantile, walking z into q's tails on data unlike the training
        data. Before the pop, 16 bits a dimension are popped and pushed back shifted by
        pseudo-random R_j of the image's step (known to both sides), so z reads scrambled
        bits at no net cost; the push undoes it in reverse. The dimensions are coded a
        window size at a time (one constriction model per size), a few coder calls an image
        instead of three a dimension."""
        lo, size = self._windows(means, stds)
        # each row's dimensions sorted by window size: a size's dimensions are then one slice
        order = np.argsort(size, axis=1, kind="stable")
        size = np.take_along_axis(size, order, 1)
        lo = np.take_along_axis(lo, order, 1)
        loc, scale = self._scaled(np.take_along_axis(means, order, 1),
                                  np.take_along_axis(stds, order, 1))
        loc -= lo
        dither = self._uniform(DITHER)
        codecs = []
        for b in range(len(means)):
            ends = [*np.flatnonzero(size[b, 1:] != size[b, :-1]).tolist(), size.shape[1] - 1]
            groups, first = [], 0
            for last in ends:
                part = slice(first, last + 1)
                groups.append((self._window_model(int(size[b, last])), loc[b, part],
                               scale[b, part], lo[b, part]))
                first = last + 1
            shift = self._shifts(steps[b], size.shape[1])
            codecs.append(self._posterior(groups, order[b], shift, dither))
        return codecs

    @staticmethod
    def _posterior(groups: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]],
                   order: np.ndarray, shift: np.ndarray, dither: Any) -> Codec:
        """One image's posterior codec: ``groups`` of (window model, means, stds, first
        grid points) in the order of ``order`` (the dimensions sorted by window size)."""
        dims = len(order)

        def pop(ans: Any) -> np.ndarray:
            redither(ans, dither, shift)
            symbols = np.empty(dims, dtype=np.int32)
            symbols[order] = np.concatenate([ans.decode(model, mean, std) + start
                                             for model, mean, std, start in groups])
            return symbols

        def push(ans: Any, symbols: np.ndarray) -> None:
            sorted_symbols, last = symbols[order], dims
            for model, mean, std, start in reversed(groups):
                first = last - len(mean)
                ans.encode_reverse((sorted_symbols[first:last] - start).astype(np.int32),
                                   model, mean, std)
                last = first
            redither(ans, dither, -shift)

        return Codec(push, pop)

    def _window_model(self, size: int) -> Any:
        """A quantised Gaussian over a window of ``size`` grid points (0 .. size - 1)."""
        model = self._window_models.get(size)
        if model is None:
            model = self._window_models[size] = self._quantized(0, size - 1)
        return model

    def _shifts(self, step: int, dims: int) -> np.ndarray:
        """The dither's R_j for the image at ``step``: drawn a block of 1,024 steps at a
        time from a generator keyed by the block (the same on both sides)."""
        block = self._dither_blocks.get((step // 1024, dims))
        if block is None:
            block = np.random.default_rng([DITHER_SEED, step // 1024]).integers(
                0, DITHER, size=(1024, dims))
            self._dither_blocks[(step // 1024, dims)] = block
        return block[step % 1024]

    def _windows(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each dimension's window: its first grid point and its size, the largest power of
        two (at least 2) of points within mean +- WINDOW std, centred there. A power of two
        so that an image's dimensions share a few window models; never wider than mean +-
        WINDOW std, so the grid's floor probability stays far from any pop."""
        s = self.grid.step
        lo = np.clip(np.floor((mean - WINDOW * std) / s), self.grid.lo, self.grid.hi - 1)
        hi = np.clip(np.ceil((mean + WINDOW * std) / s), lo + 1, self.grid.hi)
        points = (hi - lo + 1).astype(np.int64)
        # points = m 2^e with m in [0.5, 1): 2^(e - 1) is the largest power of two in it
        size = np.left_shift(1, np.frexp(points)[1].astype(np.int64) - 1)
        return lo.astype(np.int64) + (points - size) // 2, size

    def gaussian(self, mean: np.ndarray, std: np.ndarray) -> Codec:
        """Grid points of N(mean, std^2) per dimension."""
        params = self._scaled(mean, std)
        return Codec(lambda ans, symbols: ans.encode_reverse(symbols, self._gauss, *params),
                     lambda ans: ans.decode(self._gauss, *params))

    def mixture(self, weights: np.ndarray, means: np.ndarray, stds: np.ndarray) -> Codec:
        """Grid points of a per-dimension mixture of Gaussians (d, M): the component is
        popped from its posterior given z (bits back), then z and the component pushed."""
        rows = np.arange(len(weights))

        def push(ans: Any, symbols: np.ndarray) -> None:
            resp = responsibilities(self.grid.values(symbols), weights, means, stds)
            comp = ans.decode(self._categorical, resp)
            self.gaussian(means[rows, comp], stds[rows, comp]).push(ans, symbols)
            ans.encode_reverse(comp, self._categorical, weights)

        def pop(ans: Any) -> np.ndarray:
            comp = ans.decode(self._categorical, weights)
            symbols = self.gaussian(means[rows, comp], stds[rows, comp]).pop(ans)
            resp = responsibilities(self.grid.values(symbols), weights, means, stds)
            ans.encode_reverse(comp, self._categorical, resp)
            return symbols

        return Codec(push, pop)

    def uniform(self, n: int) -> Codec:
        """One whole number below ``n`` (nothing at all when n is 1)."""
        if n <= 1:
            return Codec(lambda ans, value: None, lambda ans: np.zeros(1, dtype=np.int32))
        return Codec(lambda ans, value: ans.encode_reverse(np.array([value], dtype=np.int32),
                                                           self._uniform(n)),
                     lambda ans: np.atleast_1d(ans.decode(self._uniform(n))))

    def uniforms(self, sizes: np.ndarray) -> Codec:
        """Whole numbers each below its own size (``sizes``, int32, all > 1)."""
        family = self._uniform()
        return Codec(lambda ans, values: ans.encode_reverse(values, family, sizes),
                     lambda ans: ans.decode(family, sizes))

