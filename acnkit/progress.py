"""Progress of long work, shown the same way whoever calls it (the CLI, ``train()`` in a
notebook, a plugin's command).

Library code wraps a loop in :func:`task` and advances it; how that shows is decided here
once per process: a rich bar (done/total, rate, elapsed, ETA and live fields such as the
running objective) when stderr is a terminal, a plain line on stderr at most every
:data:`PLAIN_EVERY` seconds otherwise (logs, CI, pipes), nothing at all under :func:`quiet`
(``--quiet``, ``--json``) or on a rank other than 0.

    with progress.task("eval", total=len(x), unit="images") as step:
        for batch in batches:
            ...
            step(len(batch), nats=lambda: running_mean)   # callables are read only when shown
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

#: seconds between two plain progress lines (``ACNKIT_PROGRESS_EVERY`` overrides it)
PLAIN_EVERY = 10.0
#: seconds between two readings of a task's live fields on a terminal (a reading may wait
#: for the accelerator, so it is not done every batch)
FIELDS_EVERY = 0.5


@dataclass
class Callbacks:
    """What a training loop tells a display beyond its batches; every one is optional."""

    on_epoch: Callable[[dict], None] | None = None


@dataclass
class _Board:
    quiet: int = 0
    prefix: str = ""
    bars: Progress | None = None
    open_tasks: int = 0
    last_line: float = field(default_factory=time.perf_counter)  # the first line: 10 s in


_board = _Board()
err_console = Console(stderr=True, highlight=False)


def plain_every() -> float:
    try:
        return float(os.environ.get("ACNKIT_PROGRESS_EVERY", PLAIN_EVERY))
    except ValueError:
        return PLAIN_EVERY


@contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """No progress and no :func:`echo` lines inside (``--quiet``, ``--json``)."""
    _board.quiet += int(on)
    try:
        yield
    finally:
        _board.quiet -= int(on)


@contextmanager
def prefix(text: str) -> Iterator[None]:
    """Put ``text`` before the description of every task inside (``compare``'s prior)."""
    before, _board.prefix = _board.prefix, _board.prefix + text
    try:
        yield
    finally:
        _board.prefix = before


def echo(line: str) -> None:
    """A line of results on stderr, above any bar that is showing."""
    if _board.quiet:
        return
    if _board.bars is not None:
        _board.bars.console.print(line, markup=False, soft_wrap=True)
    else:
        print(line, file=sys.stderr, flush=True)


class Step:
    """Advances one task: ``step(n, **fields)``; a field may be a callable, read only when
    the task is about to be shown."""

    def __init__(self, description: str, total: int | None, unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self.start = self.last_fields = time.perf_counter()
        self.fields: dict[str, Any] = {}
        self.task: TaskID | None = None

    def __call__(self, advance: int = 1, **fields: Any) -> None:
        self.done += advance
        self.fields.update(fields)
        now = time.perf_counter()
        if _board.bars is not None and self.task is not None:
            update: dict[str, Any] = {"completed": self.done}
            if now - self.last_fields >= FIELDS_EVERY:
                self.last_fields = now
                update["info"] = self.info()
            _board.bars.update(self.task, **update)
        elif now - _board.last_line >= plain_every():
            _board.last_line = now
            print(self.line(now), file=sys.stderr, flush=True)

    def info(self) -> str:
        values = {k: v() if callable(v) else v for k, v in self.fields.items()}
        return "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in values.items())

    def line(self, now: float) -> str:
        """The plain progress line: done/total, percentage, rate, ETA, fields."""
        seconds = max(now - self.start, 1e-9)
        rate = self.done / seconds
        parts = [f"{self.description}: {self.done}" + (f"/{self.total}" if self.total else "")
                 + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:.1f} {self.unit}/s" if rate >= 1 else
                     f"{1 / rate if rate else float('inf'):.1f} s per {self.unit.rstrip('s')}")
        if self.total and rate > 0:
            parts.append(f"eta {(self.total - self.done) / rate:.0f} s")
        info = self.info()
        return ", ".join(parts) + (f", {info}" if info else "")


class _RateColumn(ProgressColumn):
    """Items per second in the task's own unit (images/s, batches/s)."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} {task.fields['unit']}/s" if speed else "")


def _new_bars() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"), _RateColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err_console, transient=True,
    )


@contextmanager
def task(description: str, total: int | None = None, unit: str = "items",
         show: bool = True) -> Iterator[Step]:
    """A unit of long work (an epoch, an evaluation pass, a file coded image by image).
    ``show=False`` (a rank other than 0) counts without showing."""
    if not show or _board.quiet:
        yield _Silent(_board.prefix + description, total, unit)
        return
    step = Step(_board.prefix + description, total, unit)
    if err_console.is_terminal:
        if _board.bars is None:
            _board.bars = _new_bars()
            _board.bars.start()
        _board.open_tasks += 1
        step.task = _board.bars.add_task(step.description, total=total, unit=unit, info="")
    try:
        yield step
    finally:
        if step.task is not None and _board.bars is not None:
            _board.bars.remove_task(step.task)
            _board.open_tasks -= 1
            if _board.open_tasks == 0:
                _board.bars.stop()
                _board.bars = None


class _Silent(Step):
    """Counts, never shows (quiet, or a rank other than 0)."""

    def __call__(self, advance: int = 1, **fields: Any) -> None:
        self.done += advance
