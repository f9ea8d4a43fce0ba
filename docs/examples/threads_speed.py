"""README's comparison (``acnkit compare --data digits --epochs 10``) timed on the quiet
machine and beside busy processes, with acnkit's thread choice and with torch's default
(every core), all in one run: the target is beside-one-busy within 1.3x of quiet, and
acnkit's choice no slower than torch's default when quiet.

    python docs/examples/threads_speed.py [--busy 1] [--epochs 10] [--repeat 2]

Run it on an otherwise idle machine: the "busy" processes are ``yes > /dev/null``, started
and stopped by the script."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def compare_seconds(epochs: int, torch_default: bool) -> float:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("ACNKIT_THREADS", None)
    if torch_default:  # every core, as torch starts
        env["ACNKIT_THREADS"] = str(len(os.sched_getaffinity(0)))
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "acnkit", "compare", "--data", "digits",
                        "--epochs", str(epochs), "--out", out, "--overwrite", "--quiet"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    times: dict[tuple[str, str], float] = {}
    for load in ("quiet", "busy"):
        hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
                for _ in range(args.busy if load == "busy" else 0)]
        try:
            for choice in ("acnkit", "torch default"):
                times[load, choice] = min(compare_seconds(args.epochs, choice != "acnkit")
                                          for _ in range(args.repeat))
        finally:
            for hog in hogs:
                hog.kill()
    for (load, choice), seconds in times.items():
        print(f"{load:6s} {choice:14s} {seconds:6.1f} s")
    print(f"acnkit, busy / quiet: {times['busy', 'acnkit'] / times['quiet', 'acnkit']:.2f} "
          f"(target 1.3 at most); quiet, acnkit / torch default: "
          f"{times['quiet', 'acnkit'] / times['quiet', 'torch default']:.2f} (target 1.0 at most)")


if __name__ == "__main__":
    main()
