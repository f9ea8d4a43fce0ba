"""Exact batched K-nearest-neighbour search, and how a neighbour is picked from the candidates.

The kernel walks the store in chunks so that no B x N distance matrix larger than one chunk
exists, keeping a running top-K; squared norms of the store are passed in so that a caller
that caches them (the ``torch`` searcher) pays for them once per changed row, not per query.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: bytes of float32 distances computed at once; bounds the extra memory of a search
CHUNK_BYTES = 1 << 23


def chunk_rows(batch: int) -> int:
    return max(1024, CHUNK_BYTES // (4 * max(batch, 1)))


def _mask_excluded(dist: Tensor, exclude: Tensor, start: int) -> None:
    local = exclude - start
    inside = (local >= 0) & (local < dist.shape[1]) & (exclude >= 0)
    if inside.any():
        rows = torch.arange(dist.shape[0], device=dist.device).unsqueeze(1).expand_as(local)
        dist[rows[inside], local[inside]] = float("inf")


def exact_knn(
    queries: Tensor,
    codes: Tensor,
    k: int,
    exclude: Tensor | None = None,
    banned: Tensor | None = None,
    sq_norms: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Squared distances and indices (B, k) of the ``k`` nearest eligible rows, nearest first.

    Ineligible slots (fewer than ``k`` eligible rows) have distance inf and index -1.
    Distances omit the query's own squared norm, which does not change the ranking.
    """
    b, n = queries.shape[0], codes.shape[0]
    if sq_norms is None:
        sq_norms = (codes * codes).sum(1)
    if exclude is not None and exclude.dim() == 1:
        exclude = exclude.unsqueeze(1)
    step = chunk_rows(b)
    best_d = best_i = None
    buf = torch.empty(b, min(step, n), device=queries.device, dtype=queries.dtype)
    for start in range(0, n, step):
        stop = min(start + step, n)
        dist = buf[:, : stop - start]
        torch.addmm(sq_norms[start:stop].unsqueeze(0), queries, codes[start:stop].T,
                    beta=1, alpha=-2, out=dist)
        if exclude is not None:
            _mask_excluded(dist, exclude, start)
        if banned is not None:
            dist.masked_fill_(banned[start:stop].unsqueeze(0), float("inf"))
        d, i = torch.topk(dist, min(k, stop - start), dim=1, largest=False, sorted=False)
        i = i + start
        if best_d is not None:
            d, i = torch.cat([best_d, d], 1), torch.cat([best_i, i], 1)
            if d.shape[1] > k:
                d, pos = torch.topk(d, k, dim=1, largest=False, sorted=False)
                i = i.gather(1, pos)
        best_d, best_i = d, i
    best_d, order = torch.sort(best_d, dim=1)
    best_i = best_i.gather(1, order)
    if best_d.shape[1] < k:  # the store holds fewer than k rows
        pad = k - best_d.shape[1]
        best_d = torch.cat([best_d, best_d.new_full((b, pad), float("inf"))], 1)
        best_i = torch.cat([best_i, best_i.new_full((b, pad), -1)], 1)
    best_i = best_i.masked_fill(torch.isinf(best_d), -1)
    return best_d, best_i


def brute_force_knn(
    queries: Tensor, codes: Tensor, k: int, exclude: Tensor | None = None,
    banned: Tensor | None = None,
) -> Tensor:
    """Reference answer from the full distance matrix (tests and recall measurements)."""
    dist = torch.cdist(queries.double(), codes.double()) ** 2
    if exclude is not None:
        ex = exclude.unsqueeze(1) if exclude.dim() == 1 else exclude
        for col in ex.T:
            ok = col >= 0
            dist[torch.nonzero(ok).squeeze(1), col[ok]] = float("inf")
    if banned is not None:
        dist[:, banned] = float("inf")
    d, i = torch.topk(dist, min(k, codes.shape[0]), dim=1, largest=False)
    return i.masked_fill(torch.isinf(d), -1)


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
