"""The pruning searcher answers exactly what brute force answers, in every situation that
changes which leaves it may skip."""

import pytest
import torch
from acnkit_plugins.search_pruned import PrunedSearcher

from acnkit.neighbours import brute_force_knn
from acnkit.testing import clustered_codes


def _codes(kind: str, n: int, dim: int, seed: int = 0) -> torch.Tensor:
    if kind == "clustered":
        return clustered_codes(n, dim, clusters=max(5, n // 300), seed=seed)
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["clustered", "gaussian"])
@pytest.mark.parametrize("leaf_size", [7, 64, 5000])
def test_equals_brute_force_with_exclusions(kind, leaf_size):
    codes = _codes(kind, 3000, 12)
    searcher = PrunedSearcher(leaf_size=leaf_size)
    searcher.reset(codes)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        rows = torch.randperm(3000, generator=g)[:64]
        # Queries near stored rows (the training case) and far from all of them.
        queries = torch.cat([codes[rows[:48]], 6 * torch.randn(16, 12, generator=g)])
        exclude = torch.stack([rows, torch.randint(-1, 3000, (64,), generator=g)], 1)
        got = searcher.search(queries, 5, exclude=exclude)
        assert torch.equal(got, brute_force_knn(queries, codes, 5, exclude=exclude))


def test_pruning_skips_most_of_a_clustered_store():
    codes = _codes("clustered", 20000, 16)
    searcher = PrunedSearcher(leaf_size=64)
    searcher.reset(codes)
    seen = []
    original = searcher._passes

    def counting(q, qn, leaf_of, query_of, ban):
        seen.append(len(leaf_of))
        yield from original(q, qn, leaf_of, query_of, ban)

    searcher._passes = counting
    rows = torch.arange(0, 20000, 157)
    got = searcher.search(codes[rows], 5, exclude=rows)
    assert torch.equal(got, brute_force_knn(codes[rows], codes, 5, exclude=rows))
    leaves = searcher.leaf_rows.shape[0]
    # Far fewer (query, leaf) pairs scored than brute force's queries x leaves.
    assert sum(seen) < 0.1 * len(rows) * leaves


def test_rows_that_move_are_found_where_they_are_now():
    codes = _codes("clustered", 2000, 8)
    searcher = PrunedSearcher(leaf_size=32, refresh=1000)
    searcher.reset(codes)
    g = torch.Generator().manual_seed(2)
    for step in range(20):
        rows = torch.randperm(2000, generator=g)[:50]
        # Moved far from their leaf: only a grown radius keeps them reachable.
        codes[rows] = codes[torch.randperm(2000, generator=g)[:50]] + torch.randn(50, 8, generator=g)
        searcher.update(rows)
        got = searcher.search(codes[rows], 4, exclude=rows)
        assert torch.equal(got, brute_force_knn(codes[rows], codes, 4, exclude=rows)), step
    assert searcher.builds == 1


def test_banned_rows_fewer_eligible_than_k_and_rebuilds():
    codes = _codes("gaussian", 500, 6)
    searcher = PrunedSearcher(leaf_size=16, refresh=2)
    searcher.reset(codes)
    banned = torch.ones(500, dtype=torch.bool)
    banned[torch.tensor([4, 99, 300])] = False
    got = searcher.search(codes[:10], 5, exclude=torch.arange(10), banned=banned)
    assert torch.equal(got, brute_force_knn(codes[:10], codes, 5, torch.arange(10), banned))
    assert (got[:, 3:] == -1).all()
    for _ in range(3):
        searcher.update(torch.arange(5))
    assert searcher.builds == 2  # rebuilt after `refresh` updates
    banned = torch.rand(500, generator=torch.Generator().manual_seed(3)) < 0.7
    got = searcher.search(codes[:30], 5, exclude=torch.arange(30), banned=banned)
    assert torch.equal(got, brute_force_knn(codes[:30], codes, 5, torch.arange(30), banned))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="leaf_size"):
        PrunedSearcher(leaf_size=0)
    with pytest.raises(ValueError, match="refresh"):
        PrunedSearcher(refresh=0)
