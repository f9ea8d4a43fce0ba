"""Exact search that skips the parts of the store which cannot hold a neighbour.

The store is clustered with k-means into leaves of at most ``leaf_size`` rows, kept in a
leaf-major copy (one contiguous block per leaf). A leaf with centre c and radius r holds no
row nearer to q than |q - c| - r (triangle inequality), so once some K eligible rows within
distance u of q are known, every leaf with |q - c| - r >= u is skipped. A search runs in two
rounds of the same kernel: first each query against the leaf whose centre is nearest (that
gives u), then against the leaves the bound cannot rule out. The kernel takes (query, leaf)
pairs leaf by leaf: each leaf's block is multiplied by all the queries that need it in one
batched product, the leaves grouped by how many queries need them (powers of two) so that
little is padded; no B x N matrix and no Python loop over leaves exist.

Answers equal brute force on the live store at every step. Changed rows are written into the
copy and may only grow their leaf's radius, which loosens the bound but never breaks it; the
leaves are rebuilt at ``reset`` and every ``refresh`` batches (k-means warm-started from the
previous centres after a refresh). What it saves depends on how clustered the codes are: see
docs/performance.md.
"""

from __future__ import annotations

import torch
from torch import Tensor

import acnkit
from acnkit.interfaces import NeighbourSearcher
from acnkit.neighbours import check_search_args, scratch

DEFAULT_REFRESH = 50
#: most leaves a query visits to find its first k eligible rows before the pruned round
ROUND1_LEAVES = 4
#: assigning rows costs N x clusters x d: beyond this many, clusters are cut into slabs
MAX_CLUSTERS = 2048
#: rows per cluster that k-means fits its centres on
KMEANS_SAMPLE = 32
#: costs of reading a leaf in place and of copying one out, in (query, leaf) scorings
READ, COPY = 2, 6
#: rows per leaf: small leaves bound tightly but cost more (query, leaf) pairs
DEFAULT_LEAF = 128
KMEANS_ITERS = 4
#: float32 relative slack on squared distances, so that rounding never prunes a true neighbour
SLACK = 1e-4


class PrunedSearcher(NeighbourSearcher):
    exact = True

    def __init__(self, refresh: int = DEFAULT_REFRESH, leaf_size: int = DEFAULT_LEAF,
                 seed: int = 0) -> None:
        if refresh < 1:
            raise ValueError(f"refresh must be >= 1 batches, got {refresh}")
        if leaf_size < 1:
            raise ValueError(f"leaf_size must be >= 1 rows, got {leaf_size}")
        self.refresh, self.leaf_size, self.seed = refresh, leaf_size, seed
        self.codes: Tensor | None = None
        self.centres: Tensor | None = None
        self.max_norm = 0.0
        self.since_build = 0
        self.builds = 0
        self.workspace: dict = {}  # scratch buffers reused by every search

    def settings(self) -> dict:
        return {"refresh": self.refresh, "leaf_size": self.leaf_size}

    # -- index -------------------------------------------------------------------------------

    def reset(self, codes: Tensor) -> None:
        self.codes = codes
        self.centres = None
        self._build()

    def update(self, rows: Tensor) -> None:
        self.since_build += 1
        if self.since_build >= self.refresh:
            self._build()
            return
        fresh = self.store[rows]
        at = self.position[rows]
        flat = self.leaf_codes.view(-1, fresh.shape[1])
        flat[at] = fresh
        norms = (fresh * fresh).sum(1)
        self.leaf_norms.view(-1)[at] = norms
        self.max_norm = max(self.max_norm, float(norms.max()))
        leaf = at // self.leaf_rows.shape[1]
        reach = (fresh - self.leaf_centres[leaf]).norm(dim=1)
        self.radius.scatter_reduce_(0, leaf, reach * (1 + SLACK), "amax")

    def _kmeans(self, x: Tensor, clusters: int) -> tuple[Tensor, Tensor]:
        """The centres, and the cluster of each row. Centres are fitted by a few Lloyd
        iterations on a sample of KMEANS_SAMPLE rows per cluster (warm-started after the
        first build: the store moves little between builds); then every row is assigned
        once."""
        g = torch.Generator().manual_seed(self.seed + self.builds)
        sample = x
        if x.shape[0] > KMEANS_SAMPLE * clusters:
            sample = x[torch.randperm(x.shape[0], generator=g)[: KMEANS_SAMPLE * clusters].to(x.device)]
        if self.centres is None or self.centres.shape[0] != clusters:
            pick = torch.randperm(sample.shape[0], generator=g)[:clusters].to(x.device)
            self.centres = sample[pick].clone()
        for _ in range(KMEANS_ITERS):
            c = self.centres
            near = _nearest(sample, c)
            sums = torch.zeros_like(c).index_add_(0, near, sample)
            count = torch.bincount(near, minlength=clusters).unsqueeze(1)
            self.centres = torch.where(count > 0, sums / count.clamp(min=1), c)
        return self.centres, _nearest(x, self.centres)

    def _build(self) -> None:
        x = self.store.detach()
        n, d = x.shape
        s = min(self.leaf_size, n)
        centres, cluster = self._kmeans(x, max(1, min(n // s, MAX_CLUSTERS)))
        # A cluster larger than a leaf is cut into slabs along its widest coordinate: slabs
        # are tighter balls than random parts, and of even sizes (a leaf of a few rows would
        # give its queries fewer than k candidates in the first round).
        clusters = centres.shape[0]
        sizes = torch.bincount(cluster, minlength=clusters)
        spread = x.new_zeros((clusters, d)).index_add_(0, cluster, (x - centres[cluster]) ** 2)
        key = x.gather(1, spread.argmax(1)[cluster].unsqueeze(1)).squeeze(1)
        order = torch.argsort(key)
        order = order[torch.argsort(cluster[order], stable=True)]
        per = (sizes + s - 1) // s
        first_leaf = torch.cumsum(per, 0) - per
        start = torch.cumsum(sizes, 0) - sizes
        sorted_cluster = cluster[order]
        rank = torch.arange(n, device=x.device) - start[sorted_cluster]
        size = sizes[sorted_cluster]
        part = rank * per[sorted_cluster] // size
        leaf = first_leaf[sorted_cluster] + part
        # Position of each row inside its slab: rank minus the slab's first rank.
        slab_start = (part * size + per[sorted_cluster] - 1) // per[sorted_cluster]
        leaves = int(per.sum())
        position = torch.empty(n, dtype=torch.long, device=x.device)
        position[order] = leaf * s + rank - slab_start
        self.position = position
        self.leaf_rows = torch.full((leaves * s,), -1, dtype=torch.long, device=x.device)
        self.leaf_rows[position] = torch.arange(n, device=x.device)
        self.leaf_rows = self.leaf_rows.view(leaves, s)
        self.leaf_codes = x.new_zeros((leaves, s, d))
        self.leaf_codes.view(-1, d)[position] = x
        # Padding slots have infinite norm, hence infinite distance to every query.
        self.leaf_norms = x.new_full((leaves, s), float("inf"))
        self.leaf_norms.view(-1)[position] = (x * x).sum(1)
        owner = position // s
        count = torch.bincount(owner, minlength=leaves).unsqueeze(1)
        self.leaf_centres = x.new_zeros((leaves, d)).index_add_(0, owner, x) / count
        reach = (x - self.leaf_centres[owner]).norm(dim=1)
        self.radius = x.new_zeros(leaves).scatter_reduce_(0, owner, reach * (1 + SLACK), "amax")
        self.centre_norms = (self.leaf_centres ** 2).sum(1)
        self.max_norm = float(self.leaf_norms.view(-1)[position].max())
        self.since_build = 0
        self.builds += 1

    # -- search ------------------------------------------------------------------------------

    def search(self, queries, k, exclude=None, banned=None):
        check_search_args(queries, self.codes, k)
        b = queries.shape[0]
        if exclude is not None and exclude.dim() == 1:
            exclude = exclude.unsqueeze(1)
        q = queries.detach()
        qn = (q * q).sum(1)
        # Row B is a padding query: zero vector with infinite norm, infinitely far from all.
        q_ext = torch.cat([q, q.new_zeros((1, q.shape[1]))])
        qn_ext = torch.cat([qn, qn.new_full((1,), float("inf"))])
        slack = SLACK * (qn + self.max_norm)
        centre_sq = torch.addmm(self.centre_norms.unsqueeze(0), q, self.leaf_centres.T, alpha=-2)
        centre_sq += qn.unsqueeze(1)
        # Lower bound on the distance to any row of each leaf, rounded down by the slack.
        lower = ((centre_sq - slack.unsqueeze(1)).clamp(min=0).sqrt() - self.radius).clamp(min=0)
        lower = lower.square()
        ban = None if banned is None else banned[self.leaf_rows.clamp(min=0)]

        # Round 1: the leaf with the nearest centre gives each query an upper bound u on its
        # k-th distance (the next nearest too, for a query whose leaf holds < k eligible rows).
        kk = min(k + (0 if exclude is None else exclude.shape[1]), self.leaf_rows.shape[1])
        tried = torch.zeros_like(centre_sq, dtype=torch.bool)
        best = q.new_full((b, k), float("inf"))
        pending = torch.arange(b, device=q.device)
        found = []
        for _ in range(ROUND1_LEAVES):
            home = centre_sq[pending].masked_fill(tried[pending], float("inf")).argmin(1)
            tried[pending, home] = True
            for who, leaves, dist in self._passes(q_ext, qn_ext, home, pending, ban):
                top_d, top_at = torch.topk(dist, kk, dim=2, largest=False)
                real = who < b
                rows = self.leaf_rows if leaves is None else self.leaf_rows[leaves]
                top_r = rows.unsqueeze(1).expand(-1, who.shape[1], -1).gather(2, top_at)
                cq = who[real].unsqueeze(1).expand(-1, kk).reshape(-1)
                cd, cr = top_d[real].reshape(-1), top_r[real].reshape(-1)
                if exclude is not None:
                    cd = cd.masked_fill(_excluded(cq, cr, exclude), float("inf"))
                found.append((cq, cd, cr))
                # Each query met one leaf in this pass, so its kk candidates sit together.
                fresh = q.new_full((b, kk), float("inf"))
                fresh[cq.view(-1, kk)[:, 0]] = cd.view(-1, kk)
                best = torch.cat([best, fresh], 1).topk(k, dim=1, largest=False).values
            pending = torch.nonzero(torch.isinf(best[:, k - 1])).squeeze(1)
            if not len(pending) or bool(tried[pending].all()):
                break
        bound = best[:, k - 1] + slack
        # Round 2: every other leaf that the triangle inequality cannot rule out.
        need = lower < bound.unsqueeze(1)
        need &= ~tried
        leaf_of, query_of = torch.nonzero(need.T, as_tuple=True)
        if len(leaf_of):
            bound_ext = torch.cat([bound, bound.new_full((1,), -1.0)])
            for who, leaves, dist in self._passes(q_ext, qn_ext, leaf_of, query_of, ban):
                hit = torch.nonzero(dist <= bound_ext[who].unsqueeze(2), as_tuple=True)
                rows = self.leaf_rows if leaves is None else self.leaf_rows[leaves]
                found.append((who[hit[0], hit[1]], dist[hit], rows[hit[0], hit[2]]))
        cq = torch.cat([f[0].reshape(-1) for f in found])
        cd = torch.cat([f[1].reshape(-1) for f in found])
        cr = torch.cat([f[2].reshape(-1) for f in found])
        keep = (cd <= bound[cq]) & torch.isfinite(cd)
        cq, cr = cq[keep], cr[keep]
        if exclude is not None:
            kept = ~_excluded(cq, cr, exclude)
            cq, cr = cq[kept], cr[kept]
        return self._best(q, cq, cr, b, k)

    def _distances(self, q_ext: Tensor, qn_ext: Tensor, who: Tensor, leaves: Tensor | None,
                   ban: Tensor | None) -> Tensor:
        """Squared distances (leaves, width, leaf_size) from the queries ``who`` (index B: the
        padding query) to the rows of ``leaves`` (None: every leaf, read in place)."""
        if leaves is None:
            block, norms = self.leaf_codes, self.leaf_norms
        else:
            # Copied into buffers kept between calls: fresh megabytes each call cost page faults.
            block = scratch(self.workspace, "block", (len(leaves),) + self.leaf_codes.shape[1:],
                            q_ext)
            torch.index_select(self.leaf_codes, 0, leaves, out=block)
            norms = self.leaf_norms[leaves]
        dist = scratch(self.workspace, "dist", (who.shape[0], who.shape[1], block.shape[1]), q_ext)
        torch.bmm(q_ext[who], block.transpose(1, 2), out=dist)
        dist.mul_(-2).add_(norms.unsqueeze(1)).add_(qn_ext[who].unsqueeze(2))
        if ban is not None:
            dist.masked_fill_((ban if leaves is None else ban[leaves]).unsqueeze(1), float("inf"))
        return dist

    def _passes(self, q_ext: Tensor, qn_ext: Tensor, leaf_of: Tensor, query_of: Tensor,
                ban: Tensor | None):
        """Distances for (leaf, query) pairs, as (who, leaves, distances) blocks.

        The first block, when worth it, reads every leaf once, in place, with room for
        ``width`` queries each (``who`` pads with the index B; ``leaves`` is None); the
        leaves that more queries need are copied out for the rest.
        """
        n_leaves, b, dev = self.leaf_rows.shape[0], q_ext.shape[0] - 1, q_ext.device
        order = torch.argsort(leaf_of, stable=True)
        leaf_of, query_of = leaf_of[order], query_of[order]
        demand = torch.bincount(leaf_of, minlength=n_leaves)
        slot = _ranks(leaf_of, demand)
        width = self._width(demand)
        if width:
            first = slot < width
            who = torch.full((n_leaves, width), b, dtype=torch.long, device=dev)
            who[leaf_of[first], slot[first]] = query_of[first]
            yield who, None, self._distances(q_ext, qn_ext, who, None, ban)
            leaf_of, query_of, slot = leaf_of[~first], query_of[~first], slot[~first] - width
        # The rest, leaf blocks copied out, grouped by how many queries need them (powers of
        # two) so that little is padded.
        left = torch.bincount(leaf_of, minlength=n_leaves)
        tier = torch.ceil(torch.log2(left.clamp(min=1).float())).long()
        pair_tier = tier[leaf_of]
        for t in torch.unique(pair_tier).tolist():
            mine = pair_tier == t
            leaves, local = torch.unique(leaf_of[mine], return_inverse=True)
            who = torch.full((len(leaves), 1 << t), b, dtype=torch.long, device=dev)
            who[local, slot[mine]] = query_of[mine]
            yield who, leaves, self._distances(q_ext, qn_ext, who, leaves, ban)

    @staticmethod
    def _width(demand: Tensor) -> int:
        """Query slots per leaf in the in-place pass (0: none), the power of two that
        minimises the estimated work: every leaf read in place with ``width`` slots, plus the
        leaves that need more copied out and done again. Units: scoring one query against
        one leaf; reading a leaf costs about READ of them, copying one out COPY."""
        needed = demand[demand > 0]
        best, best_cost = 0, float(len(needed) * COPY + needed.sum())
        for w in (1, 2, 4, 8, 16, 32, 64, 128):
            over = needed[needed > w]
            cost = demand.shape[0] * (w + READ) + float(len(over) * COPY + (over - w).sum())
            if cost < best_cost:
                best, best_cost = w, cost
            if not len(over):
                break
        return best

    def _best(self, q: Tensor, cq: Tensor, cr: Tensor, b: int, k: int) -> Tensor:
        """The k nearest candidates of each query, re-scored exactly (no cancellation)."""
        exact = ((self.store[cr] - q[cq]) ** 2).sum(1)
        order = torch.argsort(exact)
        order = order[torch.argsort(cq[order], stable=True)]
        cq, cr = cq[order], cr[order]
        rank = _ranks(cq, torch.bincount(cq, minlength=b))
        ok = rank < k
        out = torch.full((b, k), -1, dtype=torch.long, device=q.device)
        out[cq[ok], rank[ok]] = cr[ok]
        return out


def _ranks(keys: Tensor, counts: Tensor) -> Tensor:
    """Position of each entry among the entries of its key, for ``keys`` sorted ascending
    and ``counts`` the number of entries per key."""
    return torch.arange(len(keys), device=keys.device) - (torch.cumsum(counts, 0) - counts)[keys]


def _excluded(cq: Tensor, cr: Tensor, exclude: Tensor) -> Tensor:
    """Whether candidate row ``cr`` is on query ``cq``'s exclusion list."""
    return (exclude[cq] == cr.unsqueeze(1)).any(1)


def _nearest(x: Tensor, centres: Tensor) -> Tensor:
    """Index of the nearest centre of each row, in chunks of rows (no N x C matrix)."""
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    chunk = max(1, (1 << 20) // centres.shape[0])
    c_norms = (centres * centres).sum(1).unsqueeze(0)
    for start in range(0, x.shape[0], chunk):
        part = x[start: start + chunk]
        out[start: start + chunk] = torch.addmm(c_norms, part, centres.T, alpha=-2).argmin(1)
    return out


@acnkit.hookimpl
def register_searchers(register):
    register("pruned", PrunedSearcher,
             description="exact search skipping k-means leaves ruled out by the triangle inequality")

