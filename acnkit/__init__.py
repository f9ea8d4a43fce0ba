"""acnkit: Associative Compression Networks and VAEs with pluggable components.

The public API: what a script, a notebook or a plugin imports from ``acnkit`` itself."""

from __future__ import annotations

from .config import RunConfig
from .distributions import DiagGaussian, LatentDistribution, MixtureDiagGaussian
from .engine import Trainer, train
from .errors import (
    AcnkitError,
    CheckpointError,
    CodecError,
    DataError,
    NumericalError,
    PluginError,
    UsageError,
)
from .hookspecs import hookimpl
from .index_searcher import IndexSearcher
from .interfaces import Dataset, Decoder, Encoder, Loss, NeighbourSearcher, Prior
from .model import Model
from .registry import get_registry
from .trained import Run, load_run
from .version import __version__

__all__ = [
    "AcnkitError", "CheckpointError", "CodecError", "DataError", "Dataset", "Decoder",
    "DiagGaussian", "Encoder", "IndexSearcher", "LatentDistribution", "Loss",
    "MixtureDiagGaussian", "Model", "NeighbourSearcher", "NumericalError", "PluginError",
    "Prior", "Run", "RunConfig", "Trainer", "UsageError", "__version__", "get_registry",
    "hookimpl", "load_run", "train",
]
