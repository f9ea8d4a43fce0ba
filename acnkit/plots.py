"""Pictures: nats per epoch for a comparison, image grids for daydreams. Written atomically."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .atomic import atomic_write  # noqa: E402


def _save(fig: Any, path: str | Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def _zoom(ax: Any, series: list[list[float]]) -> None:
    """The y-axis zoomed to the data from the second epoch on (the first is often far above
    the rest and would squash a gap of a few nats into a line), with a margin."""
    values = [v for s in series for v in (s[1:] if len(s) > 2 else s)]
    if not values:
        return
    lo, hi = min(values), max(values)
    pad = 0.08 * (hi - lo) or 0.05 * abs(hi) or 1.0
    ax.set_ylim(lo - pad, hi + pad)


def _legend_below(ax: Any, handles: list[Any] | None = None,
                  labels: list[str] | None = None) -> None:
    """A legend under the panel, never over its curves (up to six priors, three columns)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=3, frameon=False)


def plot_compare(histories: dict[str, list[dict[str, Any]]], path: str | Path,
                 title: str = "") -> None:
    """Left: the training objective per epoch; middle: the held-out code length in both
    modes (set mode solid, the headline for every prior; ordered dashed), with bits per
    dimension on the right-hand axis; right: the KL on its own scale (training solid,
    held out dashed: near 0 is posterior collapse) and the 5-NN accuracy of the held-out
    codes (dotted). Each axis is zoomed to its data; legends sit below the panels."""
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8), gridspec_kw={"wspace": 0.42})
    marker = "o" if max(len(h) for h in histories.values()) <= 30 else None
    ax = axes[0]
    series = []
    for prior, history in histories.items():
        epochs = [m["epoch"] for m in history]
        series.append([m["train_nats"] for m in history])
        ax.plot(epochs, series[-1], marker=marker, label=f"{prior}")
    ax.set_title("training objective (nats per image)", fontsize=10)
    _zoom(ax, series)
    ax = axes[1]
    series = []
    for prior, history in histories.items():
        epochs = [m["epoch"] for m in history]
        set_mode = [m["test_nats_set"] for m in history]
        ordered = [m["test_nats_ordered"] for m in history]
        series += [set_mode, ordered]
        line, = ax.plot(epochs, set_mode, marker=marker, label=f"{prior} set")
        ax.plot(epochs, ordered, linestyle="--", color=line.get_color(), label=f"{prior} ordered")
    split = next(iter(histories.values()))[-1].get("eval_split", "test")
    ax.set_title(f"{split} code length (nats per image): set mode solid, ordered dashed",
                 fontsize=10)
    _zoom(ax, series)
    dims = _dims(histories)
    if dims:  # the field's unit on the right-hand axis, the same curves
        scale = 1 / (math.log(2) * dims)
        right = ax.secondary_yaxis("right", functions=(lambda n: n * scale,
                                                      lambda b: b / scale))
        right.set_ylabel("bits per dimension")
    ax, acc = axes[2], axes[2].twinx()
    series = []
    for prior, history in histories.items():
        epochs = [m["epoch"] for m in history]
        series += [[m["train_kl"] for m in history], [m["test_kl"] for m in history]]
        line, = ax.plot(epochs, series[-2], marker=marker, label=f"{prior} KL, training")
        ax.plot(epochs, series[-1], linestyle="--", color=line.get_color(),
                label=f"{prior} KL, held out")
        if all("test_knn5_accuracy" in m for m in history):
            acc.plot(epochs, [m["test_knn5_accuracy"] for m in history], linestyle=":",
                     color=line.get_color(), label=f"{prior} 5-NN accuracy")
    ax.set_title("KL per image (nats) and 5-NN accuracy of the codes", fontsize=10)
    ax.set_ylim(bottom=0)
    acc.set_ylabel("5-NN accuracy")
    acc.set_ylim(0, 1)
    for a in axes:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    axes[0].set_ylabel("nats per image")
    axes[1].set_ylabel("nats per image")
    axes[2].set_ylabel("nats per image")
    _legend_below(axes[0])
    _legend_below(axes[1])
    lines, more = ax.get_legend_handles_labels(), acc.get_legend_handles_labels()
    _legend_below(ax, lines[0] + more[0], lines[1] + more[1])
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _dims(histories: dict[str, list[dict[str, Any]]]) -> float | None:
    """Dimensions per image, read back from a history's nats and bits per dimension."""
    for history in histories.values():
        m = history[-1]
        if m.get("test_bits_per_dim") and m.get("test_nats"):
            return m["test_nats"] / (math.log(2) * m["test_bits_per_dim"])
    return None


def image_grid(rows: np.ndarray, path: str | Path, row_labels: list[str] | None = None,
               col_labels: list[str] | None = None, title: str | None = None) -> None:
    """``rows``: (R, C, H, W) grey or (R, C, 3, H, W) colour images in [0, 1] (one channel
    as (R, C, 1, H, W) too), one row per chain; shown as they are, not thresholded."""
    if rows.ndim == 5:
        rows = rows[:, :, 0] if rows.shape[2] == 1 else rows.transpose(0, 1, 3, 4, 2)
    rows = np.clip(rows, 0, 1)
    r, c = rows.shape[:2]
    fig, axes = plt.subplots(r, c, figsize=(c * 0.9, r * 0.9), squeeze=False)
    for i in range(r):
        for j in range(c):
            ax = axes[i][j]
            ax.imshow(rows[i, j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and col_labels:
                ax.set_title(col_labels[j], fontsize=7)
            if j == 0 and row_labels:
                ax.set_ylabel(row_labels[i], fontsize=7)
    if title:
        fig.suptitle(textwrap.fill(title, max(40, int(c * 0.9 * 12))), fontsize=8, y=1.0,
                     va="bottom")
    _save(fig, path)
