"""Progress and results on the terminal: a rich progress bar with ETA on a terminal, plain
lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .engine import Callbacks

err_console = Console(stderr=True, highlight=False)


def epoch_line(label: str, m: dict[str, Any], epochs: int) -> str:
    return (f"{label}epoch {m['epoch']}/{epochs}  "
            f"train {m['train_nats']:.2f} (recon {m['train_recon']:.2f} + kl {m['train_kl']:.2f})"
            f"  {m.get('eval_split', 'test')} {m['test_nats']:.2f}"
            f" (recon {m['test_recon']:.2f} + kl {m['test_kl']:.2f};"
            f" ordered {m['test_nats_ordered']:.2f}, set {m['test_nats_set']:.2f})"
            f"  {m['epoch_seconds']:.1f}s (search {m['search_seconds']:.1f}s)")


class RunDisplay:
    """Context manager giving the engine's callbacks for one run."""

    def __init__(self, epochs: int, label: str = "", quiet: bool = False) -> None:
        self.epochs, self.label, self.quiet = epochs, label, quiet
        self.live = err_console.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task = None

    def __enter__(self) -> Callbacks:
        if self.live:
            self.progress = Progress(
                TextColumn(f"{self.label}[bold]epoch {{task.fields[epoch]}}/{self.epochs}"),
                BarColumn(), MofNCompleteColumn(), TextColumn("batches"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=err_console, transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=None, epoch=1)
        return Callbacks(on_batch=self._batch, on_epoch=self._epoch)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _batch(self, epoch: int, batch: int, batches: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=batch, total=batches, epoch=epoch)

    def _epoch(self, metrics: dict[str, Any]) -> None:
        if self.quiet:
            return
        line = epoch_line(self.label, metrics, self.epochs)
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            print(line, file=sys.stderr, flush=True)
