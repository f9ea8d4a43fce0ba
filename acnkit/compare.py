"""``acnkit compare``: the same encoder, decoder, seed and data order under several priors."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

from . import rundir, runs
from .atomic import atomic_write_text
from .config import RunConfig
from .errors import UsageError
from .plots import plot_compare
from .registry import get_registry

#: test_nats is each model's own code length (VAE image by image, ACN along its chain);
#: compare priors on test_nats_ordered or test_nats_set, which put both in the same mode.
CSV_COLUMNS = ["prior", "epoch", "train_nats", "train_recon", "train_kl", "test_nats_ordered",
               "test_nats_set", "test_order_nats", "test_nats", "test_recon", "test_kl",
               "test_bits_per_dim", "test_nats_nearest_train", "epoch_seconds",
               "search_seconds"]


def compare_csv(histories: dict[str, list[dict[str, Any]]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for prior, history in histories.items():
        for m in history:
            writer.writerow({"prior": prior, **m})
    return buf.getvalue()


def run_compare(config: RunConfig, priors: list[str], out: str | Path,
                overwrite: bool = False) -> dict[str, list[dict[str, Any]]]:
    if len(set(priors)) != len(priors) or not priors:
        raise UsageError(f"--priors must name distinct priors, got {','.join(priors)!r}")
    for prior in priors:
        get_registry().get("prior", prior)
    path = rundir.prepare(out, overwrite)
    histories = {}
    for prior in priors:
        cfg = dataclasses.replace(config, prior=prior).validate()
        trainer = runs.start(cfg, path / prior, overwrite=overwrite, label=f"{prior:>4} ")
        histories[prior] = trainer.history
    atomic_write_text(path / "compare.csv", compare_csv(histories))
    plot_compare(histories, path / "compare.png",
                 title=f"{config.data}: {', '.join(priors)} (seed {config.seed})")
    return histories
