"""The faiss searcher (``pip install 'acnkit[faiss]'``): ``faiss-ivf``, an inverted-file
index (approximate, rebuilt every ``refresh`` batches). Faiss's exact brute force was a
searcher too until ``acnkit bench search --sizes`` showed it slower than the ``torch``
searcher at every size from 10 000 to 1 000 000 codes (docs/performance.md)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import acnkit
from acnkit.errors import UsageError
from acnkit.index_searcher import DEFAULT_REFRESH, IndexSearcher


def _faiss():
    try:
        import faiss
    except ImportError:
        raise UsageError("the faiss searchers need faiss: pip install 'acnkit[faiss]'") from None
    return faiss


class FaissIVFSearcher(IndexSearcher):
    """IndexIVFFlat: ``nlist`` cells (default 4 sqrt(N)), ``nprobe`` of them searched."""

    def __init__(self, refresh: int = DEFAULT_REFRESH, nlist: int | None = None,
                 nprobe: int = 16) -> None:
        super().__init__(refresh)
        if nprobe < 1 or (nlist is not None and nlist < 1):
            raise ValueError("nlist and nprobe must be >= 1")
        self.faiss, self.nlist, self.nprobe = _faiss(), nlist, nprobe
        self.index: Any = None  # the library's index, built by build()

    def build(self, codes: np.ndarray) -> None:
        n, d = codes.shape
        nlist = self.nlist or max(1, min(n // 39, int(4 * math.sqrt(n))))
        quantizer = self.faiss.IndexFlatL2(d)
        index = self.faiss.IndexIVFFlat(quantizer, d, nlist)
        index.train(codes)
        index.add(codes)
        index.nprobe = min(self.nprobe, nlist)
        self.index, self._quantizer = index, quantizer

    def query(self, queries: np.ndarray, k: int) -> np.ndarray:
        _, idx = self.index.search(queries, k)
        return idx

    def settings(self) -> dict:
        return {"refresh": self.refresh, "nlist": self.index.nlist if self.index else self.nlist,
                "nprobe": self.nprobe}


@acnkit.hookimpl
def register_searchers(register):
    register("faiss-ivf", FaissIVFSearcher,
             description="faiss IVF index (approximate), rebuilt every --refresh batches")
