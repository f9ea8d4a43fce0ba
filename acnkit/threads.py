"""How many threads torch computes with: chosen from the work and the machine, unless asked.

torch's default (one thread per core, spinning at every barrier) loses badly as soon as
another process takes a core, and small nets gain nothing from a second thread even on a
quiet machine (docs/performance.md). So acnkit asks for:

1. ``--threads N`` (or ``threads`` in a config), then ``ACNKIT_THREADS=N``;
2. torch's own count when ``OMP_NUM_THREADS`` is set (the user chose it);
3. one thread for nets of MLPs only;
4. otherwise (conv nets, a PixelCNN) the cores no other process is using, by the load
   average: all of them on a quiet machine, one beside as many busy processes as cores.
"""

from __future__ import annotations

import os

import torch

from .errors import UsageError

ENV = "ACNKIT_THREADS"
#: encoders and decoders small enough that one thread is as fast as two
SMALL_NETS = ("mlp",)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def choose(asked: int | None, encoder: str, decoder: str) -> tuple[int, str]:
    """The thread count for a run of these nets, and why."""
    if asked is None and os.environ.get(ENV):
        raw = os.environ[ENV]
        if not raw.isdigit() or int(raw) < 1:
            raise UsageError(f"{ENV}={raw!r} must be a whole number >= 1")
        return int(raw), ENV
    if asked is not None:
        if asked < 1:
            raise UsageError(f"--threads must be >= 1, got {asked}")
        return asked, "--threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    if encoder in SMALL_NETS and decoder in SMALL_NETS:
        return 1, "small nets"
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # pragma: no cover - no load average
        busy = 0
    free = max(1, cores() - busy)
    return free, f"{free} of {cores()} cores free"


def apply(asked: int | None, encoder: str, decoder: str) -> tuple[int, str]:
    """Set torch's thread count as :func:`choose` says; returns the count and why."""
    count, why = choose(asked, encoder, decoder)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count, why
