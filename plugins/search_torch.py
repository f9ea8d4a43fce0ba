"""Exact nearest neighbours on the current code store, batched, on any torch device."""

from __future__ import annotations

from torch import Tensor

import acnkit
from acnkit.interfaces import NeighbourSearcher
from acnkit.neighbours import (
    TransposedStore,
    exact_knn,
    fused_knn,
    fused_usable,
    squared_norms,
)


class TorchSearcher(NeighbourSearcher):
    """Brute force over the live store: answers are always exact and never stale.

    On a CPU with acnkit's compiled kernel (``acnkit/_fused_knn.c``, built at install) it
    searches a transposed copy of the store without writing any query-by-row matrix;
    elsewhere (a GPU, or no compiler at install) it runs the chunked torch kernel. Either
    way squared norms are cached and refreshed only for the rows that changed, and scratch
    buffers are reused.
    """

    exact = True

    def __init__(self, fused: bool = True) -> None:
        self.codes: Tensor | None = None
        self.sq_norms: Tensor | None = None
        self.transposed: TransposedStore | None = None
        self.fused = fused
        self.workspace: dict = {}  # scratch buffers reused by every search

    def reset(self, codes: Tensor) -> None:
        self.codes = codes
        if self.fused and fused_usable(codes):
            self.transposed, self.sq_norms = TransposedStore(codes), None
        else:
            self.transposed, self.sq_norms = None, squared_norms(codes)

    def update(self, rows: Tensor) -> None:
        if self.transposed is not None:
            self.transposed.update(self.store, rows)
            return
        fresh = self.store[rows]
        if self.sq_norms is not None:  # reset made them where it made no transposed copy
            self.sq_norms[rows] = (fresh * fresh).sum(1)

    def search(self, queries, k, exclude=None, banned=None):
        if self.transposed is not None:
            _, idx = fused_knn(queries, self.codes, self.transposed, k, exclude, banned,
                               self.workspace)
        else:
            _, idx = exact_knn(queries, self.codes, k, exclude, banned, self.sq_norms,
                               self.workspace)
        return idx

    def settings(self) -> dict:
        return {"kernel": "fused" if self.transposed is not None else "torch"}


@acnkit.hookimpl
def register_searchers(register):
    register("torch", TorchSearcher, description="exact batched search on the live store "
             "(compiled fused kernel on CPU when built)")
