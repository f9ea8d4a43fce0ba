"""acnkit: Associative Compression Networks and VAEs with pluggable components.

The public API: what a script, a notebook or a plugin imports from ``acnkit`` itself."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("acnkit")

from .config import RunConfig  # noqa: E402
from .distributions import DiagGaussian, LatentDistribution, MixtureDiagGaussian  # noqa: E402
from .engine import Trainer, train  # noqa: E402
from .errors import (  # noqa: E402
    AcnkitError,
    CheckpointError,
    DataError,
    NumericalError,
    PluginError,
    UsageError,
)
from .index_searcher import IndexSearcher  # noqa: E402
from .interfaces import Dataset, Decoder, Encoder, Loss, NeighbourSearcher, Prior  # noqa: E402
from .registry import get_registry  # noqa: E402
from .runs import Run, load_run  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "AcnkitError", "CheckpointError", "DataError", "Dataset", "Decoder", "DiagGaussian",
    "Encoder", "IndexSearcher", "LatentDistribution", "Loss", "MixtureDiagGaussian",
    "NeighbourSearcher", "NumericalError", "PluginError", "Prior", "Run", "RunConfig",
    "Trainer", "UsageError", "__version__", "get_registry", "hookimpl", "load_run", "train",
]
