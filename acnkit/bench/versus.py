"""``acnkit bench versus REV``: the core figures of a git revision and of the working tree,
side by side on this machine, interleaved, as ratios.

A figure measured on another day or machine says nothing about a change; one measured here,
now, against the code before it, does. The revision is installed once into a virtual
environment of its own (``--system-site-packages``: the same torch, numpy and libraries,
only acnkit differs), and each figure is one acnkit command with ``--json`` run by both
sides in turn, the order alternating between repeats so that a machine warming up or a
neighbour's load falls on both. The seconds are the commands' own figures (an epoch, a
codec's seconds each way, a search batch), never a process's start-up.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: the marker written last into a revision's cached folder: its venv is complete
READY = "ready"


@dataclass(frozen=True)
class Figure:
    """One acnkit command whose ``--json`` output gives one or more figures (seconds, or
    milliseconds where ``unit`` says so). ``setup`` is run once a side before it (a run to
    train, into ``{run}``); ``{configs}`` is the side's own configs folder."""

    command: tuple[str, ...]
    reads: dict[str, Callable[[Any], float]]
    setup: tuple[str, ...] = ()
    unit: str = "s"
    #: flags of ``command`` that only save time, left out on a side whose acnkit lacks them
    optional: tuple[str, ...] = ()


def _codec(label: str) -> dict[str, Callable[[Any], float]]:
    def one(mode: str, way: str) -> Callable[[Any], float]:
        return lambda j: next(r for r in j["acnkit"] if r["mode"] == mode)[f"{way}_seconds"]

    return {f"{label}: {mode} {way}": one(mode, way) for mode in ("ordered", "set")
            for way in ("compress", "decompress")}


def default_data() -> str:
    """Fashion-MNIST where its files are installed (the figures performance.md gives),
    else the embedded digits."""
    return "fashion-mnist" if Path("/usr/share/datasets/fashion-mnist").is_dir() else "digits"


def figures(data: str, limit: int, epochs: int) -> dict[str, Figure]:
    """The core figures by name: a training epoch on the whole training set (VAE, ACN with
    exact search), the codec on ``limit`` test images with an MLP run and a PixelCNN run
    (each trained by its side on ``limit`` images), and a neighbour search."""
    train = ("--data", data, "--epochs", str(epochs), "--train-limit", str(limit),
             "--test-limit", str(limit), "--out", "{run}")
    codec = ("bench", "codec", "{run}", "--data", data, "--limit", str(limit), "--no-classic",
             "--json")
    return {
        "epoch": Figure(
            ("bench", "epoch", "--data", data, "--search", "torch", "--json"),
            {"VAE epoch": lambda j: j["vae_epoch_seconds"],
             "ACN epoch (exact search)": lambda j: j["acn"][0]["epoch_seconds"]}),
        "codec-mlp": Figure(codec, _codec("MLP ACN codec"), setup=("run", "--prior", "acn",
                                                                    *train),
                            optional=("--no-classic",)),
        "codec-pixelcnn": Figure(
            codec, _codec("PixelCNN codec"),
            setup=("run", "--config", "{configs}/pixelcnn.toml", *train),
            optional=("--no-classic",)),
        "search": Figure(
            ("bench", "search", "--search", "torch", "--json"),
            {"exact search, 60000 x 32 codes": lambda j: j[0]["query_ms_per_batch"]},
            unit="ms a batch"),
    }


@dataclass
class Side:
    """One side of the comparison: a Python that imports its acnkit, and that acnkit's
    source folder (for its configs)."""

    name: str
    python: str
    source: Path
    samples: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def acnkit(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.python, "-m", "acnkit", *args], cwd=cwd,
                              capture_output=True, text=True, env=_env())


def _env() -> dict[str, str]:
    """The environment both sides run in: this one, without what would make a child import
    another acnkit than its own."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def repository() -> Path:
    """The git checkout the running acnkit is imported from: the working tree."""
    root = Path(__file__).resolve().parents[2]  # acnkit/bench/versus.py
    try:
        top = _git(root, "rev-parse", "--show-toplevel").strip()
    except UsageError:
        top = ""
    if not top or Path(top).resolve() != root:
        raise UsageError(f"this acnkit is imported from {root}, which is not a git checkout; "
                         f"run bench versus from a checkout installed with pip install -e .")
    return root


def _git(root: Path, *args: str, binary: bool = False) -> Any:
    try:
        r = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                           text=not binary, check=False)
    except FileNotFoundError:
        raise UsageError("bench versus needs git on PATH") from None
    if r.returncode:
        err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
        raise UsageError(f"git {' '.join(args)}: {(err.strip().splitlines() or ['failed'])[-1]}")
    return r.stdout


def resolve(root: Path, rev: str) -> str:
    """The full commit ``rev`` names, or a UsageError."""
    if rev.startswith("-"):
        raise UsageError(f"{rev!r} is not a revision; give a commit, tag or branch")
    try:
        return str(_git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")).strip()
    except UsageError:
        raise UsageError(f"{rev!r} names no commit of {root}; give a commit, tag or "
                         f"branch (git log --oneline)") from None


def install(root: Path, commit: str, cache: Path, say: Callable[[str], Any]) -> Side:
    """The revision ``commit`` installed into ``cache/<commit>/`` (reused when complete):
    its files as committed (git archive) and a venv that sees this Python's packages."""
    folder = cache / commit
    venv = folder / "venv"
    python = venv / "bin" / "python"
    if (folder / READY).exists() and python.exists():
        return Side(commit[:10], str(python), folder / "src")
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "src").mkdir(parents=True)
    say(f"installing {commit[:10]} into {venv} ...")
    archive = folder / "src.tar"
    archive.write_bytes(_git(root, "archive", "--format=tar", commit, binary=True))
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "src", filter="data")
    archive.unlink()
    # without a pip of its own: this Python's pip and setuptools (seen through the system
    # site) install into it, never the older ones a new venv would bundle
    steps = [[sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
              str(venv)],
             [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
              str(folder / "src")]]
    for step in steps:
        r = subprocess.run(step, capture_output=True, text=True, env=_env())
        if r.returncode:
            raise UsageError(f"could not install {commit[:10]} into {venv}: {_first_error(r)}")
    (folder / READY).write_text(commit)
    return Side(commit[:10], str(python), folder / "src")


def _filled(args: tuple[str, ...], run: Path, side: Side) -> list[str]:
    return [a.replace("{run}", str(run)).replace("{configs}", str(side.source / "configs"))
            for a in args]


def _supported(side: Side, figure: Figure, work: Path) -> tuple[str, ...]:
    """``figure``'s command without the optional flags ``side``'s acnkit does not take (its
    --help does not name them): an older revision still gives the figure."""
    if not figure.optional:
        return figure.command
    path = [a for a in figure.command[:2] if not a.startswith(("-", "{"))]
    shown = side.acnkit([*path, "--help"], work).stdout
    return tuple(a for a in figure.command if a not in figure.optional or a in shown)


def _first_error(r: subprocess.CompletedProcess[str]) -> str:
    """The line of a failed command's stderr that says what failed: its first error line
    (pip's last lines are hints), else its last line."""
    lines = [line.strip() for line in r.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error")]
    return (errors[:1] or lines[-1:] or [f"exit {r.returncode}"])[0][:200]


def measure(sides: list[Side], chosen: dict[str, Figure], repeat: int, work: Path,
            say: Callable[[str], Any]) -> None:
    """Each figure ``repeat`` times on each side, the sides' order alternating; samples and
    failures recorded on the sides."""
    commands = {(side.name, name): _supported(side, figure, work)
                for name, figure in chosen.items() for side in sides}
    for name, figure in chosen.items():
        for side in sides:
            if figure.setup:
                run = work / side.name / name
                shutil.rmtree(run, ignore_errors=True)
                say(f"{side.name}: {' '.join(_filled(figure.setup, run, side))}")
                r = side.acnkit(_filled(figure.setup, run, side), work)
                if r.returncode:
                    for label in figure.reads:
                        side.failed[label] = f"setup failed: {_first_error(r)}"
    for i in range(repeat):
        for name, figure in chosen.items():
            for side in (sides if i % 2 == 0 else sides[::-1]):
                if any(label in side.failed for label in figure.reads):
                    continue
                args = _filled(commands[side.name, name], work / side.name / name, side)
                say(f"[{i + 1}/{repeat}] {side.name}: acnkit {' '.join(args)}")
                r = side.acnkit(args, work)
                try:
                    if r.returncode:
                        raise ValueError(_first_error(r))
                    out = json.loads(r.stdout)
                    values = {label: float(read(out)) for label, read in figure.reads.items()}
                except (ValueError, KeyError, IndexError, StopIteration, TypeError) as exc:
                    for label in figure.reads:
                        side.failed[label] = str(exc) or type(exc).__name__
                    continue
                for label, value in values.items():
                    side.samples.setdefault(label, []).append(value)


def table(sides: list[Side], chosen: dict[str, Figure]) -> list[dict[str, Any]]:
    """A row a figure: each side's median and samples, and the working tree's over the
    revision's (below 1: the working tree is faster)."""
    base, work = sides
    rows = []
    for figure in chosen.values():
        for label in figure.reads:
            row: dict[str, Any] = {"figure": label, "unit": figure.unit}
            for key, side in (("base", base), ("work", work)):
                samples = side.samples.get(label, [])
                row[key] = statistics.median(samples) if samples else None
                row[f"{key}_samples"] = samples
                row[f"{key}_failed"] = side.failed.get(label)
            row["ratio"] = (row["work"] / row["base"] if row["base"] and row["work"] is not None
                            else None)
            rows.append(row)
    return rows


@contextmanager
def _folder(keep: str | None) -> Iterator[Path]:
    if keep is not None:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="acnkit-versus-") as tmp:
        yield Path(tmp)


def versus(rev: str, names: list[str], repeat: int, data: str | None, limit: int,
           epochs: int, cache: str | None, say: Callable[[str], Any]) -> dict[str, Any]:
    """The figures ``names`` of revision ``rev`` and of the working tree, interleaved
    ``repeat`` times; ``data``: default :func:`default_data`; ``cache``: where revisions'
    venvs are kept between calls (default: a temporary folder, removed after)."""
    data = data or default_data()
    if repeat < 1 or limit < 2 or epochs < 1:
        raise UsageError("--repeat and --epochs must be >= 1, --limit >= 2")
    every = figures(data, limit, epochs)
    unknown = [n for n in names if n not in every]
    if unknown:
        raise UsageError(f"unknown figure {unknown[0]!r}; figures: {', '.join(every)}")
    chosen = {n: every[n] for n in (names or list(every))}
    root = repository()
    commit = resolve(root, rev)
    with _folder(cache) as venvs, tempfile.TemporaryDirectory(prefix="acnkit-versus-") as tmp:
        base = install(root, commit, venvs, say)
        work = Side("working tree", sys.executable, root)
        measure([base, work], chosen, repeat, Path(tmp), say)
    return {"rev": rev, "commit": commit, "repeat": repeat, "data": data, "limit": limit,
            "rows": table([base, work], chosen)}
