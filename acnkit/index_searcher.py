"""Shared machinery for searchers built on an index of the code store (sklearn, annoy, ...).

The index is rebuilt from the store on ``reset`` (the engine calls it at the start of every
epoch) and then every ``refresh`` batches, so it can lag the store by up to ``refresh``
batches: a code that moved since the last rebuild is found where it *was*. Candidates are
then re-ranked by their exact distance to the *live* store, so the K returned are the true
nearest among the candidates. Excluded or banned rows are filtered out; when fewer than K
eligible candidates remain the query is widened (4x more candidates each time), and as a last
resort answered exactly on the live store (uniqueness mode at the end of an epoch).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .interfaces import NeighbourSearcher
from .neighbours import check_search_args, exact_knn

DEFAULT_REFRESH = 50


class IndexSearcher(NeighbourSearcher):
    """Base class of a searcher on an index (public API: ``acnkit.IndexSearcher``).

    A subclass implements two methods on float32 NumPy arrays, and nothing else:

    - ``build(codes)``: index an (N, d) snapshot of the store;
    - ``query(queries, k)``: int64 row numbers of (approximately) nearest indexed rows,
      nearest first, shaped (B, m) with m <= k: an index that holds fewer than k rows may
      return fewer columns, or pad with -1 (both are taken; the answer to acnkit is
      always (B, k), -1 padded).

    This class does the rest of the :class:`~acnkit.interfaces.NeighbourSearcher` contract:
    rebuilds on ``reset`` and every ``refresh`` batches (``builds`` counts them; ``refresh``
    is the ``--refresh`` option, so keep it in the subclass's signature), exact re-ranking
    of the candidates on the live store, exclusion and banned rows, widening the query when
    too few candidates are eligible, an exact answer as the last resort, and -1 padding.
    ``settings()`` should add the subclass's own options to ``{"refresh": ...}``.
    """

    exact: ClassVar[bool] = False

    def __init__(self, refresh: int = DEFAULT_REFRESH) -> None:
        if refresh < 1:
            raise ValueError(f"refresh must be >= 1 batches, got {refresh}")
        self.refresh = refresh
        self.codes: Tensor | None = None
        self.since_build = 0
        self.builds = 0

    @abstractmethod
    def build(self, codes: np.ndarray) -> None:
        """Index a float32 (N, d) snapshot of the store."""

    @abstractmethod
    def query(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Indices (B, k) of (approximately) nearest indexed rows; -1 where fewer exist."""

    def reset(self, codes: Tensor) -> None:
        self.codes = codes
        self._rebuild()

    def update(self, rows: Tensor) -> None:
        self.since_build += 1
        if self.since_build >= self.refresh:
            self._rebuild()

    def _rebuild(self) -> None:
        self.build(np.ascontiguousarray(self.store.detach().cpu().numpy(), dtype=np.float32))
        self.since_build = 0
        self.builds += 1

    def settings(self) -> dict:
        return {"refresh": self.refresh}

    def search(self, queries, k, exclude=None, banned=None):
        check_search_args(queries, self.codes, k)
        n = self.codes.shape[0]
        b = queries.shape[0]
        if exclude is not None and exclude.dim() == 1:
            exclude = exclude.unsqueeze(1)
        extra = 0 if exclude is None else exclude.shape[1]
        q = np.ascontiguousarray(queries.detach().cpu().numpy(), dtype=np.float32)
        out = torch.full((b, k), -1, dtype=torch.long)
        todo = torch.arange(b)
        want = min(n, k + extra)
        while len(todo):
            cand = torch.from_numpy(np.asarray(self.query(q[todo.numpy()], want), dtype=np.int64))
            ok = cand >= 0
            safe = cand.clamp(min=0)
            if exclude is not None:
                ex = exclude[todo].cpu()
                ok &= ~(safe.unsqueeze(2) == ex.unsqueeze(1)).any(2)
            if banned is not None:
                ok &= ~banned.cpu()[safe]
            # Re-rank by exact distance to the live codes: the index may be stale.
            live = self.codes[safe.to(self.codes.device)].cpu()
            dist = ((live - queries[todo].detach().cpu().unsqueeze(1)) ** 2).sum(2)
            dist = dist.masked_fill(~ok, float("inf"))
            dist, order = torch.sort(dist, dim=1)
            best = safe.gather(1, order)[:, :k].masked_fill(torch.isinf(dist[:, :k]), -1)
            enough = (best >= 0).sum(1) >= min(k, n)
            out[todo[enough]] = best[enough]
            todo = todo[~enough]
            if want >= n and len(todo):
                # Every indexed row was asked for: the rest is exact on the live store.
                rows = todo.to(queries.device)
                _, idx = exact_knn(queries[rows], self.codes, k,
                                   None if exclude is None else exclude[rows], banned)
                out[todo] = idx.cpu()
                break
            want = min(n, want * 4)
        return out.to(queries.device)
