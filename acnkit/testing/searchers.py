"""The searcher contract: checks each taking a zero-argument factory, run in turn by
``run_contract`` or as the test methods of ``SearcherContract``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..interfaces import NeighbourSearcher
from ..neighbours import brute_force_knn

Factory = Callable[[], NeighbourSearcher]


def clustered_codes(n: int, dim: int, clusters: int = 50, seed: int = 0) -> Tensor:
    """Synthetic codes in Gaussian clusters, the shape ACN's code stores take."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g) * 2.0
    which = torch.randint(0, clusters, (n,), generator=g)
    return centres[which] + 0.5 * torch.randn(n, dim, generator=g)


def _fresh(factory: Factory, codes: Tensor) -> NeighbourSearcher:
    searcher = factory()
    searcher.reset(codes)
    return searcher


def check_shapes(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(500, 8)
    out = _fresh(factory, codes).search(codes[:17].clone(), 4)
    assert isinstance(out, Tensor), f"search returned {type(out).__name__}, not a Tensor"
    assert out.shape == (17, 4), f"search returned shape {tuple(out.shape)}, expected (17, 4)"
    assert out.dtype == torch.long, f"search returned {out.dtype}, expected torch.long"
    assert ((out >= 0) & (out < 500)).all(), "indices outside the store"
    for row in out.tolist():
        assert len(set(row)) == len(row), f"a neighbour listed twice: {row}"


def check_self_exclusion(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(800, 8)
    idx = torch.arange(0, 800, 7)
    out = _fresh(factory, codes).search(codes[idx].clone(), 5, exclude=idx)
    assert not (out == idx.unsqueeze(1)).any(), "a query's own row came back as its neighbour"
    assert (out >= 0).all()


def check_exclusion_lists(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(600, 6)
    q = codes[:20].clone()
    nearest = brute_force_knn(q, codes, 3)
    exclude = torch.cat([nearest, torch.full((20, 1), -1)], 1)
    out = _fresh(factory, codes).search(q, 3, exclude=exclude)
    assert not (out.unsqueeze(2) == nearest.unsqueeze(1)).any(), "an excluded row came back"
    assert (out >= 0).all(), "enough eligible rows, yet -1 returned"


def check_banned_rows_and_widening(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(1000, 8)
    banned = torch.ones(1000, dtype=torch.bool)
    allowed = torch.tensor([3, 150, 480, 777, 901, 999, 42])
    banned[allowed] = False
    q = codes[500:510].clone()
    out = _fresh(factory, codes).search(q, 5, banned=banned)
    assert torch.isin(out, allowed).all(), "a banned row came back"
    # With 7 eligible rows spread over the store, every query must still find 5 of them
    # (an exact searcher: the nearest 5).
    assert (out >= 0).all(), "fewer than k eligible rows found: the search did not widen"
    if recall_floor >= 1.0:
        ref = brute_force_knn(q, codes, 5, banned=banned)
        assert torch.equal(out.sort(1).values, ref.sort(1).values), "not the nearest eligible rows"


def check_padding_when_too_few(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(300, 4)
    banned = torch.ones(300, dtype=torch.bool)
    banned[[10, 20]] = False
    out = _fresh(factory, codes).search(codes[:3].clone(), 4, banned=banned)
    assert out.shape == (3, 4)
    assert (out[:, 2:] == -1).all(), "slots beyond the eligible rows must be -1"
    assert (out[:, :2].sort(1).values == torch.tensor([10, 20])).all()


def check_recall(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(5000, 16)
    idx = torch.arange(0, 5000, 25)
    q = codes[idx].clone()
    searcher = _fresh(factory, codes)
    out = searcher.search(q, 5, exclude=idx)
    if not getattr(searcher, "nearest", True):
        # Not meant to be near: its answers must at least not all be the nearest ones.
        assert (out >= 0).all() and len(set(out.flatten().tolist())) > 5, "answers not spread"
        return
    ref = brute_force_knn(q, codes, 5, exclude=idx)
    recall = (out.unsqueeze(2) == ref.unsqueeze(1)).any(2).float().mean().item()
    assert recall >= recall_floor, f"recall@5 {recall:.3f} below the floor {recall_floor}"


def check_rows_change(factory: Factory, recall_floor: float = 1.0) -> None:
    """Rows overwritten in the store are found at their new place: at once by an exact
    searcher (after ``update``), by any searcher after the next ``reset``."""
    codes = clustered_codes(2000, 8)
    searcher = _fresh(factory, codes)
    target = torch.full((8,), 40.0)  # far from every cluster
    rows = torch.tensor([5, 1500])
    codes[rows] = target + torch.tensor([[0.01], [0.02]])
    searcher.update(rows)
    if not getattr(searcher, "exact", True):
        searcher.reset(codes)
    if not getattr(searcher, "nearest", True):
        return  # answers that are not meant to be near cannot show where a row moved
    out = searcher.search(target.unsqueeze(0), 2)
    assert sorted(out[0].tolist()) == [5, 1500], f"moved rows not found: {out[0].tolist()}"


def check_bad_arguments(factory: Factory, recall_floor: float = 1.0) -> None:
    codes = clustered_codes(100, 4)
    searcher = _fresh(factory, codes)
    for queries, k in ((codes[:2], 0), (torch.zeros(2, 5), 2)):
        try:
            searcher.search(queries, k)
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001 - the contract's words, not the plugin's
            raise AssertionError(f"search raised {type(exc).__name__} for bad arguments k={k} "
                                 f"shape={tuple(queries.shape)}; it must raise ValueError "
                                 f"(acnkit.neighbours.check_search_args does)") from exc
        raise AssertionError(f"search accepted bad arguments k={k} "
                             f"shape={tuple(queries.shape)}; it must raise ValueError")


CHECKS = [check_shapes, check_self_exclusion, check_exclusion_lists,
          check_banned_rows_and_widening, check_padding_when_too_few, check_recall,
          check_rows_change, check_bad_arguments]


def run_contract(factory: Factory, recall_floor: float = 1.0) -> None:
    for check in CHECKS:
        check(factory, recall_floor)


class SearcherContract:
    """Subclass as ``Test...`` with ``factory`` (and ``recall_floor``) to get one test per check."""

    factory: Factory
    recall_floor: float = 1.0


def _make_test(check: Callable) -> Callable:
    def test(self: SearcherContract) -> None:
        check(type(self).factory, self.recall_floor)
    test.__name__ = "test_" + check.__name__.removeprefix("check_")
    test.__doc__ = check.__doc__
    return test


for _check in CHECKS:
    setattr(SearcherContract, "test_" + _check.__name__.removeprefix("check_"), _make_test(_check))
