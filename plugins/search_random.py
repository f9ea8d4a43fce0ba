"""A searcher that answers with random rows: the ablation that tells "a conditional prior
helps" from "a *near* neighbour helps".

``acnkit run --prior acn --search random`` trains the ACN prior on the code of a training
datum drawn uniformly at random (never the datum's own row, never a banned row): the prior
sees a code, but not a near one. Evaluation is unchanged: the greedy chain and the
nearest-training figure use exact search whatever the training searcher was.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

import acnkit
from acnkit.interfaces import NeighbourSearcher


class RandomSearcher(NeighbourSearcher):
    """``k`` distinct eligible rows per query, uniformly at random.

    The draw is seeded by the queries' bytes (and ``seed``), not by a counter: a run resumed
    from a checkpoint asks the same questions and gets the same answers, without the
    searcher having any state to save.
    """

    exact = False
    nearest = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.codes: Tensor | None = None

    def reset(self, codes: Tensor) -> None:
        self.codes = codes

    def update(self, rows: Tensor) -> None:
        pass  # answers never depend on the stored values

    def search(self, queries, k, exclude=None, banned=None):
        codes = self.store
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if queries.dim() != 2 or queries.shape[1] != codes.shape[1]:
            raise ValueError(f"queries must be (B, {codes.shape[1]}), got "
                             f"{tuple(queries.shape)}")
        n, b = codes.shape[0], queries.shape[0]
        digest = hashlib.blake2b(queries.detach().cpu().numpy().tobytes(), digest_size=8,
                                 key=self.seed.to_bytes(8, "little", signed=True)).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
        scores = torch.rand(b, n, generator=gen)
        if banned is not None:
            scores[:, banned.cpu()] = float("inf")
        if exclude is not None:
            ex = exclude.cpu().reshape(b, -1)
            valid = ex >= 0
            rows = torch.arange(b).unsqueeze(1).expand_as(ex)
            scores[rows[valid], ex[valid]] = float("inf")
        take = min(k, n)
        vals, idx = scores.topk(take, dim=1, largest=False)
        idx[vals == float("inf")] = -1
        if take < k:
            idx = torch.cat([idx, torch.full((b, k - take), -1, dtype=torch.long)], 1)
        return idx.to(queries.device)

    def settings(self) -> dict:
        return {"seed": self.seed, "answers": "random rows (ablation)"}


@acnkit.hookimpl
def register_searchers(register):
    register("random", RandomSearcher,
             description="random eligible rows, not near ones: the ablation of ACN's neighbour")
