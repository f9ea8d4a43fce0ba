"""``--nproc N``: start N copies of a command on this machine, as ``torchrun --standalone``
would, and end as one command does: one error line and the failing rank's exit code.

Rank 0 talks to the terminal; the other ranks' output goes to temporary files and is shown
only when one of them is the rank that failed (they print what rank 0 prints otherwise).
A rank that fails can leave the others waiting in a collective for good, so once one rank
has failed the rest get a few seconds to finish, then are stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

#: seconds the other ranks get to end by themselves after one rank has failed
GRACE_SECONDS = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(nproc: int, args: list[str]) -> int:
    """Run ``python -m acnkit *args`` in ``nproc`` processes of one process group;
    returns the exit code to end with."""
    port = free_port()
    procs: list[subprocess.Popen] = []
    logs: list[Any] = []
    for rank in range(nproc):
        env = {**os.environ, "WORLD_SIZE": str(nproc), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(nproc),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        out = None
        if rank > 0:
            out = tempfile.TemporaryFile(mode="w+b")
            logs.append(out)
        procs.append(subprocess.Popen([sys.executable, "-m", "acnkit", *args], env=env,
                                      stdout=out, stderr=out))

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        failed_at: float | None = None
        while any(p.poll() is None for p in procs):
            if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.05)
        codes = [p.wait() for p in procs]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if codes[0] != 0 and codes[0] > 0:  # rank 0 said what went wrong
        return codes[0]
    for rank, code in enumerate(codes[1:], start=1):
        if code != 0:
            log = logs[rank - 1]
            log.seek(0)
            text = log.read().decode(errors="replace").strip().splitlines()
            message = text[-1] if text else f"rank {rank} exited with code {code}"
            print(f"{message} (rank {rank})" if message.startswith("error:") else
                  f"error: rank {rank} of {nproc} failed: {message}", file=sys.stderr)
            return code if code > 0 else 1
    return codes[0] if codes[0] >= 0 else 1
