"""The associative memory: the code store and everything that finds, picks and orders codes.

Training, evaluation, daydreaming and the codec all go through this module:

- :class:`AssociativeMemory` holds one code per training datum (initialised N(0, 1)), the
  searcher over it, the per-epoch uniqueness mask and the random picking of one of the K
  nearest stored codes (never the datum's own row) as the prior's context;
- :func:`nearest_codes` finds each query's nearest code in a fixed set (evaluation's
  "nearest training code", which a receiver could not find without being told its index);
- :func:`greedy_chain` orders a set of codes by stepping to the nearest unvisited one: the
  order in which ACN codes a data set, each datum's prior conditioned on the code before it;
- :func:`chain_context` turns an order into each datum's prior context.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor

from . import progress
from .distributed import DistContext
from .errors import PluginError
from .interfaces import NeighbourSearcher
from .neighbours import exact_knn

#: rounds of re-searching in uniqueness mode before a datum falls back to a used code
UNIQUE_ROUNDS = 8
#: queries per exact search when a whole set is searched: the kernel's candidate groups
#: grow with the batch, and 256 was fastest at 10,000 codes (128: 2x, 1024: 2.2x slower)
QUERY_BATCH = 256


# ---------------------------------------------------------------- the pick rule
def pick_random(candidates: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One candidate per row, uniformly among the valid (>= 0) ones; -1 where none is valid."""
    count = (candidates >= 0).sum(1)
    # Random numbers come from the CPU generator so that runs replay on any device.
    u = torch.rand(count.shape, generator=generator).to(candidates.device)
    col = (u * count).long().clamp(max=candidates.shape[1] - 1)
    picked = candidates.gather(1, col.unsqueeze(1)).squeeze(1)
    return picked.masked_fill(count == 0, -1)


def pick_unique(candidates: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Like :func:`pick_random`, but no two rows of the batch get the same candidate.

    A row whose every candidate went to an earlier row gets -1; the engine searches again
    for it with those rows banned. The loop is over one batch, never over the data set.
    """
    b, kk = candidates.shape
    keys = torch.rand((b, kk), generator=generator).to(candidates.device)
    keys.masked_fill_(candidates < 0, 2.0)
    order = torch.argsort(keys, dim=1)
    shuffled = candidates.gather(1, order).tolist()
    taken: set[int] = set()
    out = []
    for row in shuffled:
        choice = -1
        for c in row:
            if c >= 0 and c not in taken:
                choice = c
                taken.add(c)
                break
        out.append(choice)
    return torch.tensor(out, dtype=torch.long, device=candidates.device)


class AssociativeMemory:
    """The code store of the training set and the neighbour look-ups the ACN prior needs.

    ``neighbour_context(idx, codes)`` is the one call a training step makes: it searches the
    K nearest stored codes of each fresh code (its own row ``idx`` excluded), picks one
    uniformly at random (or, with ``unique``, one not yet used this epoch) and returns the
    picked codes. ``write(idx, codes)`` then overwrites the batch's rows with the fresh codes.
    """

    def __init__(self, n: int, dim: int, searcher: NeighbourSearcher, k: int, *,
                 unique: bool = False, seed: int = 0, picks: torch.Generator | None = None,
                 device: torch.device | str = "cpu", dist: DistContext | None = None,
                 name: str = "searcher") -> None:
        # The same initial store on every rank: its own generator, not a rank's.
        init = torch.Generator().manual_seed(seed)
        self.store = torch.randn(n, dim, generator=init).to(device)
        self.used = torch.zeros(n, dtype=torch.bool, device=device)
        self.searcher, self.k, self.unique = searcher, k, unique
        self.picks = picks or torch.Generator().manual_seed(seed)
        self.dist = dist or DistContext()
        self.name = name  # how errors name the searcher plugin
        self.search_seconds = 0.0
        self.unique_fallbacks = 0

    def __len__(self) -> int:
        return self.store.shape[0]

    def start_epoch(self) -> None:
        """Forget which codes were used, zero the counters and hand the store to the searcher."""
        self.used.zero_()
        self.search_seconds, self.unique_fallbacks = 0.0, 0
        self.searcher.reset(self.store)

    def load(self, store: Tensor) -> None:
        self.store.copy_(store.to(self.store.device))
        self.searcher.reset(self.store)

    def write(self, idx: Tensor, codes: Tensor) -> None:
        """Overwrite the rows ``idx`` with fresh ``codes`` (every rank's, when distributed)."""
        every_idx, every_code = self.dist.all_gather(idx), self.dist.all_gather(codes)
        self.store[every_idx] = every_code
        self.searcher.update(every_idx)

    def neighbour_context(self, idx: Tensor, codes: Tensor) -> Tensor:
        """The prior's context for the data ``idx`` whose fresh codes are ``codes``: the
        stored code of one of its K nearest rows, never its own."""
        return self.store[self.pick(idx, codes)]

    def pick(self, idx: Tensor, codes: Tensor) -> Tensor:
        """Row of the store chosen as each datum's neighbour."""
        t0 = time.perf_counter()
        if self.unique:
            chosen = self._pick_unique(idx, codes)
        else:
            chosen = pick_random(self.search(codes, idx), self.picks)
        self.search_seconds += time.perf_counter() - t0
        return chosen

    def search(self, codes: Tensor, idx: Tensor, banned: Tensor | None = None) -> Tensor:
        """The K nearest eligible rows of each code (its own row ``idx`` excluded), checked."""
        cands = self.searcher.search(codes, self.k, exclude=idx, banned=banned)
        self._check_candidates(cands, idx)
        return cands

    def _pick_unique(self, idx: Tensor, codes: Tensor) -> Tensor:
        """Neighbours never used before in this epoch, and distinct within the batch."""
        chosen = torch.full_like(idx, -1)
        pending = torch.arange(len(idx), device=idx.device)
        # Each round bans what earlier rows took, so a row that lost every candidate to
        # another row gets new ones; a handful of rounds settles a batch.
        for _ in range(UNIQUE_ROUNDS):
            picked = pick_unique(self.search(codes[pending], idx[pending], self.used),
                                 self.picks)
            ok = picked >= 0
            chosen[pending[ok]] = picked[ok]
            self.used[picked[ok]] = True
            pending = pending[~ok]
            if len(pending) == 0:
                return chosen
        # Nothing unused is left but these rows' own codes: reuse a code and count it.
        self.unique_fallbacks += len(pending)
        chosen[pending] = pick_random(self.search(codes[pending], idx[pending]), self.picks)
        return chosen

    def _check_candidates(self, cands: Tensor, idx: Tensor) -> None:
        if not isinstance(cands, Tensor) or cands.shape != (len(idx), self.k):
            shape = tuple(cands.shape) if isinstance(cands, Tensor) else type(cands).__name__
            raise PluginError(f"{self.name} returned {shape}, expected ({len(idx)}, {self.k})")
        if cands.dtype != torch.long:
            raise PluginError(f"{self.name} returned dtype {cands.dtype}, expected torch.long")
        own = cands == idx.unsqueeze(1)
        outside = (cands < -1) | (cands >= len(self.store))
        if (own | outside).any():  # one reduction on the hot path; diagnose only on failure
            if outside.any():
                raise PluginError(f"{self.name} returned indices outside the store of "
                                  f"{len(self.store)}")
            raise PluginError(f"{self.name} returned a query's own row as its neighbour")
        if (cands[:, 0] < 0).any():
            # Every query has K < N eligible rows; a row with none would read store[-1].
            raise PluginError(f"{self.name} returned no valid candidate (-1) for a query "
                              f"although the store has eligible rows")


@torch.no_grad()
def nearest_codes(queries: Tensor, codes: Tensor, batch: int | None = None, k: int = 1) -> Tensor:
    """Index of the nearest row of ``codes`` for each query (exact, deterministic); with
    ``k`` > 1 the indices (N, k) of the k nearest, nearest first."""
    batch = batch or QUERY_BATCH
    found = torch.cat([exact_knn(queries[i: i + batch], codes, k)[1]
                       for i in range(0, len(queries), batch)])
    return found[:, 0] if k == 1 else found


@torch.no_grad()
def greedy_chain(codes: Tensor, start: int = 0, candidates: int = 16,
                 stats: dict | None = None) -> Tensor:
    """An order of all rows of ``codes``: begin at ``start`` and step each time to the
    nearest row not yet visited (Euclidean; ties to the lower index).

    Each row's ``candidates`` nearest rows are found in one batched exact search (again
    among the unvisited rows whenever half of them are gone); the walk takes the first
    unvisited row of the current row's list and scans all unvisited rows only when the
    whole list is used up, so a chain over 10,000 codes takes about a second
    (``acnkit bench chain``). ``stats``, if given, receives the number of full scans.
    """
    n = codes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    if not 0 <= start < n:
        raise ValueError(f"start {start} is outside the {n} codes")
    walk = _ChainWalk(codes, candidates)
    order = np.empty(n, dtype=np.int64)
    cur = start
    with progress.task("chain", n, "codes") as step:
        for t in range(n):
            order[t] = cur
            walk.visited[cur] = True
            if t == n - 1:
                break
            cur = walk.next_row(cur, left=n - t - 1)
            if t % 256 == 255:
                step(256)
        step(n - step.done)
    if stats is not None:
        stats["full_scans"] = walk.scans
    return torch.from_numpy(order)


class _ChainWalk:
    """The state of one greedy walk: which rows are visited, the unvisited ones (compacted
    lazily: rows visited since stay, masked) and each row's list of candidates."""

    def __init__(self, codes: Tensor, candidates: int) -> None:
        self.x = codes.detach().to("cpu", torch.float64)
        self.pts = self.x.numpy()
        n = len(self.pts)
        self.candidates = candidates
        self.visited = np.zeros(n, dtype=bool)
        self.remaining = np.arange(n)
        self.rem_pts, self.rem_sq = self.pts, np.einsum("ij,ij->i", self.pts, self.pts)
        self.lists = _sorted_neighbour_lists(self.x, min(candidates, n - 1))
        self.listed = n  # rows unvisited when the lists were last built
        self.scans = 0

    def compact(self) -> None:
        self.remaining = self.remaining[~self.visited[self.remaining]]
        self.rem_pts = self.pts[self.remaining]
        self.rem_sq = np.einsum("ij,ij->i", self.rem_pts, self.rem_pts)

    def relist(self, left: int) -> None:
        """List the unvisited rows' neighbours among themselves again."""
        self.compact()
        near_lists = _sorted_neighbour_lists(self.x[self.remaining],
                                             min(self.candidates, left - 1))
        for row, near in zip(self.remaining.tolist(), near_lists, strict=True):
            self.lists[row] = self.remaining[near].tolist()
        self.listed = left

    def next_row(self, cur: int, left: int) -> int:
        """The unvisited row nearest to ``cur`` (``left`` rows are unvisited)."""
        if 2 * left <= self.listed:  # half the listed rows are gone: scans would follow
            self.relist(left)
        for j in self.lists[cur]:
            if not self.visited[j]:
                return j
        self.scans += 1  # every listed neighbour was visited: scan the unvisited rows
        if 2 * left < len(self.remaining):
            self.compact()
        d = self.rem_sq - 2 * (self.rem_pts @ self.pts[cur])
        d[self.visited[self.remaining]] = np.inf
        return int(self.remaining[np.argmin(d)])  # argmin: first of equal distances


def _sorted_neighbour_lists(x: Tensor, m: int) -> list[list[int]]:
    """Each row's ``m`` nearest other rows, nearest first, ties to the lower index, ranked
    by the same float64 distances as the full scan of :func:`greedy_chain`."""
    if m < 1:
        return [[] for _ in range(len(x))]
    # A few spare float32 candidates, so that re-ranking in float64 cannot lose a row that
    # float32 rounding put just outside the list.
    spare = min(m + 4, len(x) - 1)
    xf, own = x.float(), torch.arange(len(x))
    step = QUERY_BATCH
    cand = torch.cat([exact_knn(xf[i: i + step], xf, spare, exclude=own[i: i + step])[1]
                      for i in range(0, len(x), step)]).numpy()
    pts = x.numpy()
    diff = pts[np.maximum(cand, 0)] - pts[:, None, :]
    d = np.einsum("ijk,ijk->ij", diff, diff)
    d[cand < 0] = np.inf
    rank = np.lexsort((cand, d), axis=1)[:, :m]  # by distance, then by index
    return np.take_along_axis(cand, rank, 1).tolist()


def chain_context(codes: Tensor, order: Tensor) -> Tensor:
    """Each datum's prior context along ``order``: the code of the datum coded just before
    it, zeros for the first. Row i of the result belongs to datum i (not to position i)."""
    context = torch.zeros_like(codes)
    if len(order) > 1:
        context[order[1:]] = codes[order[:-1]]
    return context


def log_orderings(n: int) -> float:
    """log(n!) in nats: the cost of sending the order of n distinct items, and what a coder
    that may choose the order (the data as a set) saves by bits-back coding of it."""
    return math.lgamma(n + 1)
