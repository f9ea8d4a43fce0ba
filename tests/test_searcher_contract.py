"""Every registered searcher against the contract in acnkit.testing."""

import pytest
from acnkit_plugins.search_torch import TorchSearcher

from acnkit.registry import get_registry
from acnkit.testing import CHECKS, SearcherContract

#: approximate searchers and the recall@5 they must reach with default settings
RECALL_FLOORS = {"annoy": 0.8, "faiss-ivf": 0.9}


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
