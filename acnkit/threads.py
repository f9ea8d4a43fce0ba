"""How many threads torch computes with: chosen from the machine, unless asked.

torch's default (one thread per core, spinning at every barrier) loses badly as soon as
another process takes a core: README's comparison took 21.0 s beside one busy process
against 10.3 s quiet with it (docs/performance.md). So acnkit asks for:

1. ``--threads N`` (or ``threads`` in a config), then ``ACNKIT_THREADS=N``;
2. torch's own count when ``OMP_NUM_THREADS`` is set (the user chose it);
3. otherwise the cores that no other process is running on now: all of them on a quiet
   machine, one beside as many busy processes as cores. "Now" is the kernel's count of
   runnable tasks (/proc/loadavg), the least of a few readings 10 ms apart, so that a
   passing process does not count and a busy one does at once (the load averages lag by
   a minute).
"""

from __future__ import annotations

import os
import time

import torch

from .errors import UsageError

ENV = "ACNKIT_THREADS"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def choose(asked: int | None) -> tuple[int, str]:
    """The thread count for a command, and why."""
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
    free = max(1, cores() - busy_now())
    return free, f"{free} of {cores()} cores free"


def busy_now(readings: int = 5) -> int:
    """Other processes running now: runnable tasks less this one, the least of a few
    readings (0 where the kernel does not say)."""
    counts = []
    for i in range(readings):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(running - 1)
        if i < readings - 1:
            time.sleep(0.01)
    return max(0, min(counts))


def apply(asked: int | None) -> tuple[int, str]:
    """Set torch's thread count as :func:`choose` says; returns the count and why."""
    count, why = choose(asked)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count, why
