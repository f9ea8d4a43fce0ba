"""Exact batched K-nearest-neighbour search (the pick among the candidates lives in
:mod:`acnkit.memory`).

The kernel walks the store in cache-sized chunks so that no B x N distance matrix exists.
Selecting the K smallest of every row with ``topk`` costs more than the matrix product
itself on a CPU, so each chunk is first reduced with ``amin`` over groups of store rows (group
t of a chunk of w rows holds its rows t, t + w/G, t + 2w/G, ...: a reduction across
contiguous slices, which vectorises). The K nearest rows always lie in the K groups with the
smallest minima (a row outside them has K group minima, each a distinct row, at most as
far), so one ``topk`` over the group minima and an exact scoring of those K groups' rows
finish the search; the exact scoring also avoids the cancellation in |c|^2 - 2 q.c.
Squared norms of the store are passed in so that a caller that caches them (the ``torch``
searcher) pays for them once per changed row, not per query.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from typing import Any

import torch
from torch import Tensor

#: bytes of float32 distances computed at once: small enough to stay in the CPU's cache
CHUNK_BYTES = 1 << 21
#: smallest number of rows reduced to one minimum
MIN_GROUP = 16


def group_size(batch: int, n: int, dim: int) -> int:
    """Rows per group: the group minima (B x N/G floats, held twice: chunk-major as computed,
    query-major for topk) stay within a tenth of the store (or 8 MiB) so that search at 1M
    codes needs little memory beside the store."""
    budget = max(1 << 22, n * dim * 4 // 20)
    return max(MIN_GROUP, -(-batch * n * 4 // budget))


def chunk_rows(batch: int, group: int = MIN_GROUP) -> int:
    rows = max(group * 64, CHUNK_BYTES // (4 * max(batch, 1)))
    return rows - rows % group


def squared_norms(codes: Tensor, chunk: int = 1 << 12) -> Tensor:
    """Row-wise squared norms, in chunks so that no temporary as large as the store exists."""
    out = torch.empty(codes.shape[0], device=codes.device, dtype=codes.dtype)
    for start in range(0, codes.shape[0], chunk):
        part = codes[start: start + chunk]
        torch.sum(part * part, dim=1, out=out[start: start + chunk])
    return out


def scratch(workspace: dict | None, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A buffer of ``shape``, reused from ``workspace`` across calls when one is given (a
    fresh multi-megabyte allocation per batch costs page faults every step)."""
    size = 1
    for s in shape:
        size *= s
    if workspace is None:
        return torch.empty(shape, device=like.device, dtype=like.dtype)
    buf = workspace.get(name)
    if buf is None or buf.numel() < size or buf.device != like.device or buf.dtype != like.dtype:
        buf = workspace[name] = torch.empty(size, device=like.device, dtype=like.dtype)
    return buf[:size].view(shape)


def _exact_distances(queries: Tensor, codes: Tensor, cand: Tensor,
                     workspace: dict | None = None) -> Tensor:
    """|q - c|^2 for each query's candidate rows, a few queries at a time so that the gathered
    candidates never take more than one chunk of memory."""
    b, c = cand.shape
    d = codes.shape[1]
    step = max(1, CHUNK_BYTES // (4 * max(c, 1) * d * 2))
    out = torch.empty((b, c), device=queries.device, dtype=queries.dtype)
    for i in range(0, b, step):
        rows = cand[i: i + step]
        diff = scratch(workspace, "candidates", (rows.shape[0], c, d), codes)
        torch.index_select(codes, 0, rows.reshape(-1), out=diff.view(-1, d))
        diff.sub_(queries[i: i + step].unsqueeze(1))
        torch.sum(diff.mul_(diff), dim=2, out=out[i: i + step])
    return out


def check_search_args(queries: Tensor, codes: Tensor, k: int) -> None:
    """The argument checks every searcher makes (raise ValueError, as the contract requires)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")
    if queries.dim() != 2 or queries.shape[1] != codes.shape[1]:
        raise ValueError(f"queries must have shape (B, {codes.shape[1]}), got {tuple(queries.shape)}")


def exact_knn(
    queries: Tensor,
    codes: Tensor,
    k: int,
    exclude: Tensor | None = None,
    banned: Tensor | None = None,
    sq_norms: Tensor | None = None,
    workspace: dict | None = None,
) -> tuple[Tensor, Tensor]:
    """Squared distances and indices (B, k) of the ``k`` nearest eligible rows, nearest first.

    Ineligible slots (fewer than ``k`` eligible rows) have distance inf and index -1.
    ``workspace``: a dict the caller keeps between calls, to reuse the scratch buffers.
    """
    check_search_args(queries, codes, k)
    b, n = queries.shape[0], codes.shape[0]
    if sq_norms is None:
        sq_norms = squared_norms(codes)
    if exclude is not None and exclude.dim() == 1:
        exclude = exclude.unsqueeze(1)
    g = min(group_size(b, n, codes.shape[1]), n)
    # Excluded rows are not masked in the chunks (that costs a scatter per chunk): each can
    # spoil the minimum of one group only, so E exclusions per query are met by taking E
    # more groups and dropping the excluded rows when the chosen groups are scored.
    extra = 0 if exclude is None else exclude.shape[1]
    step = chunk_rows(b, g)
    widths = [min(step, n - s) for s in range(0, n, step)]
    widths = [-(-w // g) * g for w in widths]  # the last chunk is padded with inf
    mins = _group_minima(queries, codes, sq_norms, banned, g, step, widths, workspace)
    cand, valid = _rows_of_best_groups(mins, k + extra, g, step, widths, n, workspace)
    if exclude is not None:
        valid &= ~(cand.unsqueeze(2) == exclude.unsqueeze(1)).any(2)
    if banned is not None:
        valid &= ~banned[cand]
    d = _exact_distances(queries, codes, cand, workspace).masked_fill(~valid, float("inf"))
    kk = min(k, d.shape[1])
    best_d, pos = torch.topk(d, kk, dim=1, largest=False, sorted=True)
    best_i = cand.gather(1, pos)
    if kk < k:  # the store holds fewer than k rows
        best_d = torch.cat([best_d, best_d.new_full((b, k - kk), float("inf"))], 1)
        best_i = torch.cat([best_i, best_i.new_full((b, k - kk), -1)], 1)
    best_i = best_i.masked_fill(torch.isinf(best_d), -1)
    return best_d, best_i


def _group_minima(queries: Tensor, codes: Tensor, sq_norms: Tensor, banned: Tensor | None,
                  g: int, step: int, widths: list[int], workspace: dict | None) -> Tensor:
    """Each query's smallest distance in every group of store rows (groups, B)."""
    b, n = queries.shape[0], codes.shape[0]
    # Chunks are computed as (rows, B), store rows first: at small d the product is bound
    # by writing its output, which this orientation does about 1.5x faster than (B, rows).
    buf = scratch(workspace, "distances", (max(widths), b), queries)
    mins = scratch(workspace, "minima", (sum(widths) // g, b), queries)
    q_t = queries.T
    col = 0
    for start, width in zip(range(0, n, step), widths, strict=True):
        stop = min(start + step, n)
        dist = buf[: stop - start]
        torch.addmm(sq_norms[start:stop].unsqueeze(1), codes[start:stop], q_t,
                    beta=1, alpha=-2, out=dist)
        if width > stop - start:
            buf[stop - start: width] = float("inf")
        if banned is not None:
            dist.masked_fill_(banned[start:stop].unsqueeze(1), float("inf"))
        torch.amin(buf[:width].view(g, width // g, b), dim=0, out=mins[col: col + width // g])
        col += width // g
    return mins


def _rows_of_best_groups(mins: Tensor, groups: int, g: int, step: int, widths: list[int],
                         n: int, workspace: dict | None) -> tuple[Tensor, Tensor]:
    """The store rows (B, groups * g) of each query's ``groups`` groups with the smallest
    minima, and which of them are real rows (not the padding of the last chunk)."""
    b, dev = mins.shape[1], mins.device
    # topk runs along contiguous rows: on the strided transpose it is twice as slow.
    by_query = scratch(workspace, "by_query", (b, mins.shape[0]), mins)
    by_query.copy_(mins.T)
    _, best = torch.topk(by_query, min(groups, mins.shape[0]), dim=1, largest=False,
                         sorted=False)
    # Rows of the chosen groups: group j of chunk c holds rows c*step + j%s + t*s, s = width/g.
    per_chunk = step // g
    chunk = best // per_chunk
    stride = torch.tensor(widths, device=dev)[chunk] // g
    first = chunk * step + best % per_chunk
    cand = (first.unsqueeze(2) + stride.unsqueeze(2) * torch.arange(g, device=dev)).view(b, -1)
    valid = cand < n
    return cand.clamp(max=n - 1), valid


# ------------------------------------------------------------------ the fused CPU kernel

#: widest code, and most candidates per query, the compiled kernel takes (its per-query
#: weights and lists live on the stack); beyond them the torch kernel answers
FUSED_MAX_DIM = FUSED_MAX_CANDIDATES = 64
#: candidates the kernel keeps beyond k (and the exclusions), re-scored exactly after: its
#: scores |c|^2 - 2 q.c lose digits to cancellation, the re-scoring does not
FUSED_SLACK = 2
_LANES = 64  # the transposed store is padded to a multiple of the rows the kernel takes at a time

_fused: Any = None


def fused_kernel() -> Any:
    """The compiled kernel (acnkit/_fused_knn.c) through ctypes, or None where it was not
    built or this CPU lacks AVX-512; ``ACNKIT_FUSED_KNN=0`` turns it off."""
    global _fused
    if _fused is None:
        _fused = False
        spec = importlib.util.find_spec("acnkit._fused_knn")
        if spec is not None and spec.origin and os.environ.get("ACNKIT_FUSED_KNN", "1") != "0":
            lib = ctypes.CDLL(spec.origin)
            if not lib.acnkit_fused_available():
                return None
            fn = lib.acnkit_fused_knn
            p, i64 = ctypes.c_void_p, ctypes.c_int64
            fn.argtypes = [p, p, i64, i64, i64, p, i64, i64, i64, p, i64, p, p, p]
            fn.restype = None
            _fused = fn
    return _fused or None


class TransposedStore:
    """The store as the fused kernel reads it: d x n_pad (rows padded to the vector width,
    padding scored +inf), with squared norms; kept in step with the live store row by row."""

    def __init__(self, codes: Tensor) -> None:
        n, d = codes.shape
        self.n, self.d = n, d
        self.ld = -(-n // _LANES) * _LANES
        self.ct = torch.zeros((d, self.ld), dtype=torch.float32)
        self.norms = torch.full((self.ld,), float("inf"), dtype=torch.float32)
        self.ct[:, :n] = codes.T
        self.norms[:n] = squared_norms(codes)

    def update(self, codes: Tensor, rows: Tensor) -> None:
        fresh = codes[rows]
        self.ct[:, rows] = fresh.T
        self.norms[rows] = (fresh * fresh).sum(1)


def fused_usable(codes: Tensor) -> bool:
    return (fused_kernel() is not None and codes.device.type == "cpu"
            and codes.dtype == torch.float32 and codes.shape[1] <= FUSED_MAX_DIM)


def fused_knn(queries: Tensor, codes: Tensor, store: TransposedStore, k: int,
              exclude: Tensor | None = None, banned: Tensor | None = None,
              workspace: dict | None = None) -> tuple[Tensor, Tensor]:
    """:func:`exact_knn` by the compiled kernel: the K + slack best rows of each query by
    score, found without writing any query-by-row matrix, then re-scored exactly."""
    check_search_args(queries, codes, k)
    b, n = queries.shape[0], codes.shape[0]
    q = queries.detach().contiguous().float()
    ex = None
    if exclude is not None:
        ex = (exclude.unsqueeze(1) if exclude.dim() == 1 else exclude).to(torch.int64)
        ex = ex.contiguous()
    ban = None if banned is None else banned.to(torch.uint8).contiguous()
    extra = 0 if ex is None else ex.shape[1]
    kk = min(n, k + extra + FUSED_SLACK)
    if k + extra + FUSED_SLACK > FUSED_MAX_CANDIDATES:
        return exact_knn(queries, codes, k, exclude, banned, store.norms[:n], workspace)
    scores = torch.empty((b, kk), dtype=torch.float32)
    cand = torch.empty((b, kk), dtype=torch.int64)
    # The kernel shares the queries among the threads of torch's own OpenMP runtime: extra
    # threads of ours would compete with its workers, which spin after every parallel op.
    fused_kernel()(store.ct.data_ptr(), store.norms.data_ptr(), n, store.ld, store.d,
                   q.data_ptr(), 0, b, kk, 0 if ex is None else ex.data_ptr(), extra,
                   0 if ban is None else ban.data_ptr(), scores.data_ptr(), cand.data_ptr())
    if b and int(cand[0, 0]) == -2:  # the kernel could not allocate its buffers
        return exact_knn(queries, codes, k, exclude, banned, store.norms[:n], workspace)
    valid = cand >= 0
    d = _exact_distances(q, codes, cand.clamp(min=0), workspace)
    d = d.masked_fill(~valid, float("inf"))
    kq = min(k, kk)
    best_d, pos = torch.topk(d, kq, dim=1, largest=False, sorted=True)
    best_i = cand.gather(1, pos)
    if kq < k:
        best_d = torch.cat([best_d, best_d.new_full((b, k - kq), float("inf"))], 1)
        best_i = torch.cat([best_i, best_i.new_full((b, k - kq), -1)], 1)
    return best_d, best_i.masked_fill(torch.isinf(best_d), -1)


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
