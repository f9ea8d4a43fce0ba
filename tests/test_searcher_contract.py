"""Every registered searcher against the contract in acnkit.testing."""

import pytest
import torch
from acnkit_plugins.search_torch import TorchSearcher

from acnkit.registry import get_registry
from acnkit.testing import CHECKS, SearcherContract

#: approximate searchers and the recall@5 they must reach with default settings
RECALL_FLOORS = {"annoy": 0.8, "faiss-ivf": 0.9, "random": 0.0}


def _names():
    return get_registry().names("searcher")


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", _names())
def test_registered_searcher_meets_contract(name, check):
    entry = get_registry().get("searcher", name)
    check(entry.factory, RECALL_FLOORS.get(name, 1.0))


class TestSubclassingWorks(SearcherContract):
    factory = staticmethod(TorchSearcher)


def test_contract_catches_a_searcher_that_returns_its_own_row():
    class Leaky(TorchSearcher):
        def search(self, queries, k, exclude=None, banned=None):
            return super().search(queries, k, None, banned)

    from acnkit.testing import check_self_exclusion
    with pytest.raises(AssertionError, match="own row"):
        check_self_exclusion(Leaky)


def test_random_searcher_answers_are_not_near_and_repeat_for_the_same_queries():
    from acnkit_plugins.search_random import RandomSearcher

    from acnkit.testing import brute_force_knn, clustered_codes

    codes = clustered_codes(2000, 8)
    idx = torch.arange(0, 2000, 10)
    first, again = RandomSearcher(), RandomSearcher()
    first.reset(codes)
    again.reset(codes)
    out = first.search(codes[idx], 5, exclude=idx)
    assert torch.equal(out, again.search(codes[idx], 5, exclude=idx))  # resumable
    assert not torch.equal(out, first.search(codes[idx] + 1e-3, 5, exclude=idx))
    ref = brute_force_knn(codes[idx], codes, 5, exclude=idx)
    recall = (out.unsqueeze(2) == ref.unsqueeze(1)).any(2).float().mean().item()
    assert recall < 0.05, f"random answers found the nearest rows {recall:.0%} of the time"


def test_benchmarks_leave_out_searchers_not_meant_to_be_near():
    reg = get_registry()
    assert "random" in reg.names("searcher")
    assert "random" not in reg.nearest_searchers() and "torch" in reg.nearest_searchers()


def test_contract_names_a_searcher_that_fails_bad_arguments_with_another_error():
    class Raw(TorchSearcher):
        def search(self, queries, k, exclude=None, banned=None):
            if k < 1 or queries.shape[1] != self.codes.shape[1]:
                raise RuntimeError("shape mismatch deep inside")
            return super().search(queries, k, exclude, banned)

    from acnkit.testing import check_bad_arguments
    with pytest.raises(AssertionError, match="raised RuntimeError for bad arguments .* must "
                                             "raise ValueError"):
        check_bad_arguments(Raw)


@pytest.mark.parametrize("name, call", [("torch", "update"), ("pruned", "update"),
                                        ("random", "search")])
def test_a_searcher_used_before_reset_says_so(name, call):
    searcher = get_registry().get("searcher", name).factory()
    with pytest.raises(ValueError, match=r"reset\(codes\) must hand over the store"):
        if call == "update":
            searcher.update(torch.tensor([0]))
        else:
            searcher.search(torch.zeros(1, 2), 1)
