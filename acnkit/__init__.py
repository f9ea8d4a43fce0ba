"""acnkit: Associative Compression Networks and VAEs with pluggable components."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("acnkit")

from .config import RunConfig  # noqa: E402
from .engine import Trainer, train  # noqa: E402
from .registry import get_registry  # noqa: E402

__version__ = "0.1.0"
__all__ = ["RunConfig", "Trainer", "get_registry", "hookimpl", "train", "__version__"]
