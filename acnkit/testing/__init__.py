"""Conformance kits: the contract each kind of component must meet, as reusable checks.

Every built-in passes them (tests/test_contracts.py runs each registered plugin through its
kit); third-party authors run them from their own test-suites::

    from acnkit.testing import SearcherContract, check_prior
    from my_plugin import MySearcher, MyPrior

    class TestMySearcher(SearcherContract):
        factory = staticmethod(MySearcher)
        recall_floor = 0.9          # exact searchers: leave at 1.0

    def test_my_prior():
        check_prior(MyPrior)        # called as MyPrior(latent_dim)

Searchers: each ``check_*`` of ``CHECKS`` takes a zero-argument factory and raises
AssertionError on a breach; ``run_contract(factory)`` runs them in turn. The other kinds
have one function each, called with the factory as acnkit calls it: ``check_encoder``,
``check_decoder``, ``check_prior``, ``check_loss``, ``check_dataset`` (and
``check_prior_codable`` for what ``acnkit compress`` needs of a prior), and
``check_portable`` for a whole run: its files decode bit-exactly on other machines.
"""

from ..neighbours import brute_force_knn
from .datasets import check_dataset
from .losses import check_loss
from .networks import (
    check_causal,
    check_decoder,
    check_encoder,
    check_stepped,
    check_stepping,
)
from .portable import check_portable
from .priors import check_prior, check_prior_codable
from .searchers import (
    CHECKS,
    SearcherContract,
    check_bad_arguments,
    check_banned_rows_and_widening,
    check_exclusion_lists,
    check_padding_when_too_few,
    check_recall,
    check_rows_change,
    check_self_exclusion,
    check_shapes,
    clustered_codes,
    run_contract,
)

__all__ = [
    "CHECKS", "SearcherContract", "brute_force_knn", "check_bad_arguments",
    "check_banned_rows_and_widening", "check_causal", "check_dataset", "check_decoder",
    "check_encoder", "check_exclusion_lists", "check_loss", "check_padding_when_too_few",
    "check_portable", "check_prior", "check_prior_codable", "check_recall", "check_rows_change",
    "check_self_exclusion", "check_shapes", "check_stepped", "check_stepping", "clustered_codes",
    "run_contract",
]
