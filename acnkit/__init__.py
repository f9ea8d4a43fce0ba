"""acnkit: Associative Compression Networks and VAEs with pluggable components.

The public API: what a script, a notebook or a plugin imports from ``acnkit`` itself. Names
are imported on first use, so that ``acnkit --help`` and ``from acnkit import hookimpl`` do
not import torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it
_WHERE: dict[str, str] = {
    "RunConfig": "config",
    "DiagGaussian": "distributions", "LatentDistribution": "distributions",
    "MixtureDiagGaussian": "distributions",
    "Trainer": "engine", "train": "engine",
    "AcnkitError": "errors", "CheckpointError": "errors", "CodecError": "errors",
    "DataError": "errors", "NumericalError": "errors", "PluginError": "errors",
    "UsageError": "errors",
    "hookimpl": "hookspecs",
    "IndexSearcher": "index_searcher",
    "Dataset": "interfaces", "Decoder": "interfaces", "Encoder": "interfaces",
    "Loss": "interfaces", "NeighbourSearcher": "interfaces", "Prior": "interfaces",
    "Model": "model",
    "get_registry": "registry",
    "Run": "trained", "load_run": "trained",
    "__version__": "version",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'acnkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and editors see
    from .config import RunConfig as RunConfig
    from .distributions import DiagGaussian as DiagGaussian
    from .distributions import LatentDistribution as LatentDistribution
    from .distributions import MixtureDiagGaussian as MixtureDiagGaussian
    from .engine import Trainer as Trainer
    from .engine import train as train
    from .errors import AcnkitError as AcnkitError
    from .errors import CheckpointError as CheckpointError
    from .errors import CodecError as CodecError
    from .errors import DataError as DataError
    from .errors import NumericalError as NumericalError
    from .errors import PluginError as PluginError
    from .errors import UsageError as UsageError
    from .hookspecs import hookimpl as hookimpl
    from .index_searcher import IndexSearcher as IndexSearcher
    from .interfaces import Dataset as Dataset
    from .interfaces import Decoder as Decoder
    from .interfaces import Encoder as Encoder
    from .interfaces import Loss as Loss
    from .interfaces import NeighbourSearcher as NeighbourSearcher
    from .interfaces import Prior as Prior
    from .model import Model as Model
    from .registry import get_registry as get_registry
    from .trained import Run as Run
    from .trained import load_run as load_run
    from .version import __version__ as __version__
