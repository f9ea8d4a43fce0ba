"""``acnkit compare``: the same encoder, decoder, seed and data order under several priors."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from . import rundir, runs
from .atomic import atomic_write_text, check_target
from .config import RunConfig
from .engine import Trainer
from .errors import CheckpointError, UsageError
from .plots import plot_compare
from .registry import get_registry
from .tensorboard_log import Events, require_tensorboard

#: test_nats is each model's own code length (VAE image by image, ACN along its chain);
#: compare priors on test_nats_ordered or test_nats_set, which put both in the same mode.
CSV_COLUMNS = ["prior", "epoch", "train_nats", "train_recon", "train_kl", "test_nats_ordered",
               "test_nats_set", "test_order_nats", "test_nats", "test_recon", "test_kl",
               "test_bits_per_dim", "test_bits_per_dim_ordered", "test_bits_per_dim_set",
               "train_bits_per_dim", "test_knn5_accuracy", "test_nats_nearest_train", "epoch_seconds",
               "search_seconds"]


def compare_csv(histories: dict[str, list[dict[str, Any]]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for prior, history in histories.items():
        for m in history:
            writer.writerow({"prior": prior, **m})
    return buf.getvalue()


PLAN = "compare.json"


def run_compare(config: RunConfig, priors: list[str], out: str | Path,
                overwrite: bool = False, resume: bool = False,
                epochs: int | None = None,
                tensorboard: Events | None = None) -> dict[str, list[dict[str, Any]]]:
    """Train ``config`` under each prior into ``out/<prior>``, then write compare.csv and
    compare.png. Every prior's run is built (options, data, nets checked) before the first
    one trains. ``resume`` continues the comparison that ``out/compare.json`` describes,
    up to ``epochs`` in all (default: its own). ``tensorboard``: event files in a
    folder a prior under it (``out/tensorboard/<prior>``), so that TensorBoard overlays
    the priors."""
    path = Path(out)
    if tensorboard is not None:
        require_tensorboard()
    if resume:
        config, priors = read_plan(path)
        if epochs is not None:
            config.epochs = epochs
    elif len(set(priors)) != len(priors) or not priors:
        raise UsageError(f"--priors must name distinct priors, got {','.join(priors)!r}")
    runs.absolute_data_dir(config.validate())
    configs = {p: dataclasses.replace(config, prior=p).validate() for p in priors}
    for prior in priors:
        get_registry().get("prior", prior)
    if not resume:
        rundir.check_out(path, overwrite, "compare")
        for prior in priors:
            rundir.check_out(path / prior, overwrite, "compare", path)
    trainers = {p: Trainer(cfg) for p, cfg in configs.items()}  # every refusal comes here
    command = f"acnkit compare --resume --out {rundir.quoted(path)}"
    if not resume:
        path = rundir.prepare(path, overwrite)
    with rundir.RunLock(path, "--out"):
        if not resume:
            for name in (PLAN, "compare.csv", "compare.png"):
                (path / name).unlink(missing_ok=True)
            rundir.remove_events(path)
        atomic_write_text(path / PLAN, json.dumps(
            {"priors": priors, "config": config.to_dict()}, indent=2) + "\n")
        histories = {}
        for prior in priors:
            sub, label = path / prior, f"{prior:>4} "
            events = tensorboard.under(prior) if tensorboard is not None else None
            if resume and (sub / rundir.CONFIG).exists():
                trainer = runs.resume(sub, epochs=config.epochs, label=label, command=command,
                                      tensorboard=events)
            else:
                trainer = runs.start(configs[prior], sub, overwrite=True, label=label,
                                     command=command, trainer=trainers[prior],
                                     tensorboard=events)
            trainers.pop(prior)
            histories[prior] = trainer.history
        atomic_write_text(path / "compare.csv", compare_csv(histories))
        plot_compare(histories, path / "compare.png",
                     title=f"{config.data}: {', '.join(priors)} (seed {config.seed})")
    return histories


#: a run's figures that its row in compare.csv and its curves need
PLOTTED = ("train_nats", "train_recon", "train_kl", "test_nats_ordered", "test_nats_set",
           "test_kl")
#: ... and those they use where a run has them
PLOTTED_IF_ANY = ("test_knn5_accuracy", "test_bits_per_dim", "test_nats")
#: the options that decide which images a run's held-out figures are of: runs compared
#: must agree on them (--data-dir may name the same files by another path)
SAME_IMAGES = ("data", "pixels", "crop", "data_seed", "test_limit", "valid_size")


def compare_runs(run_dirs: list[str], out: str | Path,
                 overwrite: bool = False) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """compare.csv and compare.png in ``out`` of runs trained apart (``acnkit run``, or the
    priors of two comparisons), read from their folders, as they stand (a run still
    training gives the epochs it has finished); nothing is trained. Returns the histories
    (labelled by prior, and by folder where two share one) and the data set's name."""
    if not run_dirs:
        raise UsageError("give the run folders to compare with --runs")
    configs, histories = [], []
    for run in run_dirs:
        path = Path(run)
        if not path.is_dir():
            raise UsageError(f"--runs {path} is not a folder; give the folder of a run")
        config, _ = rundir.read_config(path)
        configs.append(config)
        histories.append(rundir.read_metrics(path, PLOTTED, PLOTTED_IF_ANY))
    for run, config in zip(run_dirs[1:], configs[1:], strict=True):
        differ = [k for k in SAME_IMAGES if config.get(k) != configs[0].get(k)]
        if differ:
            k = differ[0]
            raise UsageError(f"runs {run_dirs[0]} and {run} are tested on different images "
                             f"({k} {configs[0].get(k)!r} against {config.get(k)!r}); "
                             f"compare runs of the same held-out images")
    priors = [str(c.get("prior")) for c in configs]
    labels = [p if priors.count(p) == 1 else f"{p} ({Path(r).resolve().name})"
              for p, r in zip(priors, run_dirs, strict=True)]
    if len(set(labels)) != len(labels):
        raise UsageError(f"--runs names a run twice or two runs alike ({', '.join(run_dirs)}); "
                         f"give each run once")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file, not a folder; choose another --out")
    if (path / PLAN).exists():
        raise UsageError(f"--out {path} holds a comparison trained there; give --runs another "
                         f"--out, so that its table and plot stay its own")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {path} cannot be made ({exc.strerror}); choose another "
                         f"--out") from None
    for name in ("compare.csv", "compare.png"):
        check_target(path / name, overwrite, "--out")
    merged = dict(zip(labels, histories, strict=True))
    atomic_write_text(path / "compare.csv", compare_csv(merged))
    data = str(configs[0].get("data"))
    plot_compare(merged, path / "compare.png", title=f"{data}: {', '.join(labels)}")
    return merged, data


def read_plan(path: Path) -> tuple[RunConfig, list[str]]:
    """The config and priors of the comparison in ``path``."""
    file = path / PLAN
    if not file.exists():
        raise UsageError(f"--out {path} holds no comparison to resume ({PLAN} is missing); "
                         f"start one with acnkit compare --out {rundir.quoted(path)}")
    try:
        plan = json.loads(rundir.read_text(file, "start the comparison again with --overwrite"))
        return RunConfig.from_dict(plan["config"]), list(plan["priors"])
    except CheckpointError as exc:  # not a regular file, too large, unreadable
        raise UsageError(str(exc)) from None
    except (ValueError, KeyError, TypeError, UsageError) as exc:
        raise UsageError(f"{file} cannot be read ({exc}); start the comparison again with "
                         f"--overwrite") from None
