"""Errors that the CLI turns into one line on stderr and an exit code, never a traceback."""

from __future__ import annotations


class AcnkitError(Exception):
    """A failure the user can fix; ``exit_code`` is 1 (runtime) unless a subclass says 2."""

    exit_code = 1


class UsageError(AcnkitError):
    """Bad options or bad input: the user must change what they asked for (exit code 2)."""

    exit_code = 2


class PluginError(AcnkitError):
    """A plugin failed to load, registered a clashing name, or broke its contract."""


class DataError(UsageError):
    """A data set could not be found or read."""


class CheckpointError(AcnkitError):
    """A checkpoint is missing, corrupt, unsafe or does not fit the run."""


class NumericalError(AcnkitError):
    """The loss or its gradients became NaN or infinite."""


class CodecError(AcnkitError):
    """A file cannot be written or decoded: corrupt, truncated, or another model's."""


class Interrupted(AcnkitError):
    """A run was stopped by a signal after saving what it had (exit code 130)."""

    exit_code = 130

    def __init__(self, message: str, out: object = None, epoch: int = 0) -> None:
        super().__init__(message)
        self.out, self.epoch = out, epoch


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator's failure (torch raises RuntimeError for it)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and ("alloc" in text or "out of memory" in text))
