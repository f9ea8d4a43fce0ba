"""The signals that stop a command: Ctrl-C (SIGINT), SIGTERM (a service manager, ``kill``)
and SIGHUP (a closed terminal) all end a command the same way, through the exception that
Ctrl-C raises, so that every ``finally`` removes what it had half-written; the exit code
is 128 plus the signal's number, as a shell reports a process killed by it."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: the signals acnkit handles, each as Ctrl-C
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program was, as Ctrl-C raises KeyboardInterrupt
    (code that lets an interruption through lets this through)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(exc: BaseException) -> int:
    """The exit code of a command stopped by ``exc``: 130 for Ctrl-C, 143 for SIGTERM, 129
    for SIGHUP."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def name(signum: int) -> str:
    return signal.Signals(signum).name


def _raise(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def raise_on_stop() -> None:
    """From now on SIGTERM and SIGHUP raise :class:`Stopped` (Ctrl-C raises
    KeyboardInterrupt as always). A SIGHUP that the shell already ignores (nohup) stays
    ignored."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _raise)


@contextmanager
def handled(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for every signal of :data:`STOPPING` (those not ignored) while the block
    runs; the previous handlers after it."""
    previous = {s: signal.signal(s, handler) for s in STOPPING
                if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
