"""Annoy (random projection trees) as a searcher: approximate, rebuilt every ``refresh``
batches; ``trees`` and ``search_k`` trade build and query time for recall."""

from __future__ import annotations

from typing import Any

import numpy as np

import acnkit
from acnkit.index_searcher import DEFAULT_REFRESH, IndexSearcher


class AnnoySearcher(IndexSearcher):
    def __init__(self, refresh: int = DEFAULT_REFRESH, trees: int = 10,
                 search_k: int = -1, seed: int = 0) -> None:
        super().__init__(refresh)
        if trees < 1:
            raise ValueError(f"trees must be >= 1, got {trees}")
        self.trees, self.search_k, self.seed = trees, search_k, seed
        self.index: Any = None  # the library's index, built by build()

    def build(self, codes: np.ndarray) -> None:
        from annoy import AnnoyIndex

        index = AnnoyIndex(codes.shape[1], "euclidean")
        index.set_seed(self.seed)
        for i, row in enumerate(codes):
            index.add_item(i, row)
        index.build(self.trees, n_jobs=1)
        self.index = index

    def query(self, queries: np.ndarray, k: int) -> np.ndarray:
        out = np.full((len(queries), k), -1, dtype=np.int64)
        for row, q in enumerate(queries):  # annoy answers one vector per call
            found = self.index.get_nns_by_vector(q, k, search_k=self.search_k)
            out[row, : len(found)] = found
        return out

    def settings(self) -> dict:
        return {"refresh": self.refresh, "trees": self.trees, "search_k": self.search_k}


@acnkit.hookimpl
def register_searchers(register):
    register("annoy", AnnoySearcher,
             description="Annoy trees (approximate), rebuilt every --refresh batches")
