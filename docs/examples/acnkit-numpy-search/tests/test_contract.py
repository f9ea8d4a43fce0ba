"""Run acnkit's searcher contract against this plugin: `python -m pytest tests`."""

from acnkit_numpy_search import NumpySearcher

from acnkit.testing import SearcherContract


class TestNumpySearcher(SearcherContract):
    factory = staticmethod(NumpySearcher)
    recall_floor = 1.0  # exact search
