"""``check_portable``: a run's files written here decode bit-exactly on other machines.

Other machines are simulated: each decoding runs in a subprocess whose torch, oneDNN and
MKL are held to narrower kernels (AVX2; SSE4 with torch's portable "default" kernels), with
1 or 2 threads and acnkit's fused search kernel off, and files are also written under
SSE4 and read back with the widest kernels. A component with no exact form fails the
check by name (its files would be bound to the machine). The coding itself runs in
``python -m acnkit.codec.crosscheck`` subprocesses, the widest kernels' too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

#: numpy's dispatch targets above AVX2 and above SSE4 (numpy 2's names; a name this numpy
#: does not know is ignored), which NPY_DISABLE_CPU_FEATURES turns off
_NUMPY_ABOVE_AVX2 = "X86_V4 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
_NUMPY_ABOVE_SSE4 = f"X86_V3 AVX AVX2 FMA3 F16C {_NUMPY_ABOVE_AVX2}"
#: the simulated machines: (name, environment), the widest kernels being this process's;
#: torch's, oneDNN's, MKL's, numpy's own loops' and OpenBLAS's (the exact layers' integer
#: products and the numpy paths of acnkit.exact.arrays run there)
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2", "NPY_DISABLE_CPU_FEATURES": _NUMPY_ABOVE_AVX2,
        "OPENBLAS_CORETYPE": "Haswell"}
SSE4 = {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "NPY_DISABLE_CPU_FEATURES": _NUMPY_ABOVE_SSE4,
        "OPENBLAS_CORETYPE": "Nehalem"}
ENVIRONMENTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("AVX2, 1 thread", {**AVX2, "OMP_NUM_THREADS": "1", "ACNKIT_THREADS": "1",
                        "OPENBLAS_NUM_THREADS": "1"}),
    ("AVX2, 2 threads, no fused search", {**AVX2, "OMP_NUM_THREADS": "2",
                                          "ACNKIT_THREADS": "2", "ACNKIT_FUSED_KNN": "0",
                                          "OPENBLAS_NUM_THREADS": "2"}),
    ("SSE4, 1 thread, no fused search", {**SSE4, "OMP_NUM_THREADS": "1",
                                         "ACNKIT_THREADS": "1", "ACNKIT_FUSED_KNN": "0",
                                         "OPENBLAS_NUM_THREADS": "1"}),
    ("SSE4, 2 threads", {**SSE4, "OMP_NUM_THREADS": "2", "ACNKIT_THREADS": "2",
                         "OPENBLAS_NUM_THREADS": "2"}),
)
#: at most this many seconds a subprocess
TIMEOUT = 600


def _subprocess(command: str, jobs: list[list[Any]], env: dict[str, str]) -> list[Any]:
    done = subprocess.run([sys.executable, "-m", "acnkit.codec.crosscheck", command,
                           json.dumps(jobs)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0:
        raise AssertionError(f"python -m acnkit.codec.crosscheck {command} failed under "
                             f"{env or 'the widest kernels'}: {done.stderr.strip()[-2000:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def check_portable(runs: dict[str, np.ndarray],
                   modes: Iterable[str] = ("ordered", "set"), lanes: int | None = None,
                   environments: Iterable[tuple[str, dict[str, str]]] = ENVIRONMENTS,
                   both_ways: bool = True) -> None:
    """For each run folder of ``runs`` and its images (N, C, H, W levels): compress the
    images with the widest kernels in each of ``modes``, decode every file with them and
    under each of ``environments`` and compare the decoded arrays; with ``both_ways``,
    also write each run's files under the last environment and decode them with the
    widest kernels. Raises AssertionError naming the component with no exact form, or the
    file and environment that did not decode alike."""
    from ..exact import ARITHMETIC  # no torch work: the arithmetic's name

    environments, modes = list(environments), list(modes)
    with tempfile.TemporaryDirectory(prefix="acnkit-portable-") as tmp:
        encode: list[list[Any]] = []
        decode: list[list[str]] = []
        for i, (run_dir, images) in enumerate(runs.items()):
            source = Path(tmp, f"{i}.npy")
            np.save(source, images)
            for mode in modes:
                target = str(Path(tmp, f"{i}-{mode}.acnz"))
                encode.append([str(run_dir), str(source), target, mode, lanes])
                decode.append([str(run_dir), target])
        for (run_dir, *_), (arithmetic, note) in zip(encode, _subprocess("encode", encode, {}),
                                                      strict=True):
            if arithmetic != ARITHMETIC:
                raise AssertionError(f"{run_dir}: its file is bound to this machine: {note}")
        expected = _subprocess("decode", decode, {})
        for name, env in environments:
            got = _subprocess("decode", decode, env)
            for (run_dir, file), want, digest in zip(decode, expected, got, strict=True):
                if digest != want:
                    raise AssertionError(f"{run_dir}: its {Path(file).stem} file written "
                                         f"with the widest kernels decoded to other images "
                                         f"under {name}")
        if not both_ways:
            return
        name, env = environments[-1]
        there = [[r, s, str(t).replace(".acnz", "-there.acnz"), m, n]
                 for r, s, t, m, n in encode]
        _subprocess("encode", there, env)
        back = _subprocess("decode", [[r, t] for r, _, t, _, _ in there], {})
        for (run_dir, file), want, digest in zip(decode, expected, back, strict=True):
            if digest != want:
                raise AssertionError(f"{run_dir}: its {Path(file).stem} file written under "
                                     f"{name} decoded to other images with the widest kernels")
