"""Exact nearest neighbours on the current code store, batched, on any torch device."""

from __future__ import annotations

from torch import Tensor

import acnkit
from acnkit.interfaces import NeighbourSearcher
from acnkit.neighbours import exact_knn, squared_norms


class TorchSearcher(NeighbourSearcher):
    """Brute force over the live store: answers are always exact and never stale.

    Squared norms of the store are cached and refreshed only for rows that changed; the
    scratch buffers of the search are allocated once and reused.
    """

    exact = True

    def __init__(self) -> None:
        self.codes: Tensor | None = None
        self.sq_norms: Tensor | None = None
        self.workspace: dict = {}  # scratch buffers reused by every search

    def reset(self, codes: Tensor) -> None:
        self.codes = codes
        self.sq_norms = squared_norms(codes)

    def update(self, rows: Tensor) -> None:
        fresh = self.codes[rows]
        self.sq_norms[rows] = (fresh * fresh).sum(1)

    def search(self, queries, k, exclude=None, banned=None):
        _, idx = exact_knn(queries, self.codes, k, exclude, banned, self.sq_norms,
                           self.workspace)
        return idx


@acnkit.hookimpl
def register_searchers(register):
    register("torch", TorchSearcher, description="exact batched search on the live store")
