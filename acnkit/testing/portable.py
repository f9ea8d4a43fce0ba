"""``check_portable``: a run's files written here decode bit-exactly on other machines.

Other machines are simulated: each decoding runs in a subprocess whose torch, oneDNN and
MKL are held to narrower kernels (AVX2; SSE4 with torch's portable "default" kernels), with
1 or 2 threads and acnkit's fused search kernel off, and one file is also written under
SSE4 and read back here. A component with no exact form fails the check by name (its files
would be bound to this machine). Run as ``python -m acnkit.testing.portable`` it is the
subprocess's side: ``decode RUN FILE...`` prints each file's SHA-256 of the decoded array,
``encode RUN IMAGES.npy OUT MODE`` writes a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

#: the simulated machines: (name, environment), the widest kernels being this process's
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
SSE4 = {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
ENVIRONMENTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("AVX2, 1 thread", {**AVX2, "OMP_NUM_THREADS": "1", "ACNKIT_THREADS": "1"}),
    ("AVX2, 2 threads, no fused search", {**AVX2, "OMP_NUM_THREADS": "2",
                                          "ACNKIT_THREADS": "2", "ACNKIT_FUSED_KNN": "0"}),
    ("SSE4, 1 thread, no fused search", {**SSE4, "OMP_NUM_THREADS": "1",
                                         "ACNKIT_THREADS": "1", "ACNKIT_FUSED_KNN": "0"}),
    ("SSE4, 2 threads", {**SSE4, "OMP_NUM_THREADS": "2", "ACNKIT_THREADS": "2"}),
)
#: at most this many seconds a subprocess
TIMEOUT = 600


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()
                          + str((array.dtype.str, array.shape)).encode()).hexdigest()


def _subprocess(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "acnkit.testing.portable", *args],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=TIMEOUT)
    if done.returncode != 0:
        raise AssertionError(f"python -m acnkit.testing.portable {args[0]} failed under "
                             f"{env}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def check_portable(runs: dict[str, np.ndarray],
                   modes: Iterable[str] = ("ordered", "set"), lanes: int | None = None,
                   environments: Iterable[tuple[str, dict[str, str]]] = ENVIRONMENTS,
                   both_ways: bool = True) -> None:
    """For each run folder of ``runs`` and its images (N, C, H, W levels): compress the
    images here in each of ``modes``, decode every file in one subprocess an environment
    of ``environments`` and compare each decoded array with what this process decodes;
    with ``both_ways``, also write each run's first file under the last environment and
    decode it here. Raises AssertionError naming the component with no exact form, or the
    file and environment that did not decode."""
    from ..codec import compress, decompress
    from ..exact import ARITHMETIC
    from ..trained import load_run

    environments = list(environments)
    with tempfile.TemporaryDirectory(prefix="acnkit-portable-") as tmp:
        pairs, expected, models = [], {}, {}
        for i, (run_dir, images) in enumerate(runs.items()):
            model = models[run_dir] = load_run(run_dir, "cpu", thread_count=1).model
            for mode in modes:
                notes: list[str] = []
                coded = compress(model, images, mode, lanes=lanes, plain_if_smaller=False,
                                 note=notes.append)
                if coded.header["arithmetic"] != ARITHMETIC:
                    raise AssertionError(f"{run_dir}: its file is bound to this machine: "
                                         f"{' '.join(notes)}")
                path = Path(tmp, f"{i}-{mode}.acnz")
                path.write_bytes(coded.data)
                pairs.append([str(run_dir), str(path)])
                expected[str(path)] = _digest(decompress(model, coded.data))
        for name, env in environments:
            got = json.loads(_subprocess(["decode", json.dumps(pairs)], env))
            for (run_dir, file), digest in zip(pairs, got, strict=True):
                if digest != expected[file]:
                    raise AssertionError(f"{run_dir}: its {Path(file).stem} file written "
                                         f"here decoded to other images under {name}")
        if not both_ways:
            return
        name, env = environments[-1]
        jobs = []
        for i, (run_dir, images) in enumerate(runs.items()):
            source, target = Path(tmp, f"{i}.npy"), Path(tmp, f"{i}-there.acnz")
            np.save(source, images)
            jobs.append([str(run_dir), str(source), str(target), list(modes)[0]])
        _subprocess(["encode", json.dumps(jobs)], env)
        for (run_dir, _, there, mode), images in zip(jobs, runs.values(), strict=True):
            back = decompress(models[run_dir], Path(there).read_bytes(), there)
            if mode == "ordered" and not np.array_equal(back, images):
                raise AssertionError(f"{run_dir}: a file written under {name} decoded here "
                                     f"to other images")


def main(argv: list[str]) -> None:
    from ..codec import compress, decompress
    from ..trained import load_run

    command, jobs = argv[0], json.loads(argv[1])
    models: dict[str, Any] = {}

    def model(run_dir: str) -> Any:
        if run_dir not in models:
            models[run_dir] = load_run(run_dir, "cpu").model
        return models[run_dir]

    if command == "decode":
        print(json.dumps([_digest(decompress(model(r), Path(f).read_bytes(), f))
                          for r, f in jobs]))
    elif command == "encode":
        for run_dir, source, target, mode in jobs:
            coded = compress(model(run_dir), np.load(source), mode, plain_if_smaller=False)
            Path(target).write_bytes(coded.data)
    else:  # pragma: no cover - only check_portable calls it
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
