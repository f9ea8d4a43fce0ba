"""An example acnkit plugin: exact nearest neighbours in NumPy, registered as ``numpy``.

Select it with ``acnkit run --search numpy``.
"""

from __future__ import annotations

import numpy as np
import torch

import acnkit
from acnkit.interfaces import NeighbourSearcher


class NumpySearcher(NeighbourSearcher):
    exact = True

    def __init__(self) -> None:
        self.codes = None

    def reset(self, codes):
        self.codes = codes  # the live store: rows change in place

    def update(self, rows):
        pass  # nothing cached, nothing to refresh

    def search(self, queries, k, exclude=None, banned=None):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        if queries.dim() != 2 or queries.shape[1] != self.codes.shape[1]:
            raise ValueError(f"queries must be (B, {self.codes.shape[1]})")
        q = queries.detach().cpu().numpy().astype(np.float64)
        c = self.codes.detach().cpu().numpy().astype(np.float64)
        dist = (c * c).sum(1)[None, :] - 2 * q @ c.T
        if exclude is not None:
            ex = exclude.cpu().numpy().reshape(len(q), -1)
            rows, cols = np.nonzero(ex >= 0)
            dist[rows, ex[rows, cols]] = np.inf
        if banned is not None:
            dist[:, banned.cpu().numpy()] = np.inf
        kk = min(k, dist.shape[1])
        part = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        order = np.argsort(np.take_along_axis(dist, part, 1), axis=1)
        idx = np.take_along_axis(part, order, 1)
        idx = np.where(np.isinf(np.take_along_axis(dist, idx, 1)), -1, idx)
        if kk < k:
            idx = np.concatenate([idx, np.full((len(q), k - kk), -1)], 1)
        return torch.from_numpy(idx.astype(np.int64)).to(queries.device)


@acnkit.hookimpl
def register_searchers(register):
    register("numpy", NumpySearcher, description="exact search in NumPy (example plugin)")
