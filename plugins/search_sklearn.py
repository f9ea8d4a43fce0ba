"""scikit-learn's NearestNeighbors as a searcher: exact on the indexed snapshot of the store,
queried once per batch, rebuilt every ``refresh`` batches."""

from __future__ import annotations

from typing import Any

import numpy as np

import acnkit
from acnkit.index_searcher import DEFAULT_REFRESH, IndexSearcher


class SklearnSearcher(IndexSearcher):
    def __init__(self, refresh: int = DEFAULT_REFRESH, algorithm: str = "auto",
                 n_jobs: int | None = None) -> None:
        super().__init__(refresh)
        self.algorithm, self.n_jobs = algorithm, n_jobs
        self.index: Any = None  # the library's index, built by build()
        self.size = 0

    def build(self, codes: np.ndarray) -> None:
        from sklearn.neighbors import NearestNeighbors

        self.index = NearestNeighbors(algorithm=self.algorithm, n_jobs=self.n_jobs).fit(codes)
        self.size = len(codes)

    def query(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.index.kneighbors(queries, n_neighbors=min(k, self.size),
                                     return_distance=False)

    def settings(self) -> dict:
        return {"refresh": self.refresh, "algorithm": self.algorithm}


@acnkit.hookimpl
def register_searchers(register):
    register("sklearn", SklearnSearcher,
             description="sklearn NearestNeighbors, batched, rebuilt every --refresh batches")
