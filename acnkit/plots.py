"""Pictures: nats per epoch for a comparison, image grids for daydreams. Written atomically."""

from __future__ import annotations

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


def plot_compare(histories: dict[str, list[dict[str, Any]]], path: str | Path,
                 title: str = "") -> None:
    """Left: the training objective and its KL per epoch; middle: the held-out code length
    in set mode (the headline for every prior: the order of the images is not kept); right:
    the KL alone on its own scale (how much the codes carry: near 0 is posterior collapse)
    and the 5-NN accuracy of the held-out codes."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4), sharey=False)
    panels = (("train_nats", "train_kl", "training objective (nats per image)"),
              ("test_nats_set", "test_kl", "held-out code length, set mode (nats per image)"))
    # a marker per epoch reads well on a short run and blots out a long one
    marker = "o" if max(len(h) for h in histories.values()) <= 30 else None
    for ax, (total, kl, heading) in zip(axes[:2], panels, strict=True):
        for prior, history in histories.items():
            epochs = [m["epoch"] for m in history]
            line, = ax.plot(epochs, [m[total] for m in history], marker=marker,
                            label=f"{prior} total")
            ax.plot(epochs, [m[kl] for m in history], linestyle="--", color=line.get_color(),
                    label=f"{prior} KL")
        ax.set_title(heading, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats")
        ax.grid(alpha=0.3)
        ax.legend()
    ax, acc = axes[2], axes[2].twinx()
    for prior, history in histories.items():
        epochs = [m["epoch"] for m in history]
        line, = ax.plot(epochs, [m["train_kl"] for m in history], marker=marker,
                        label=f"{prior} KL, training")
        ax.plot(epochs, [m["test_kl"] for m in history], linestyle="--", color=line.get_color(),
                label=f"{prior} KL, held out")
        if all("test_knn5_accuracy" in m for m in history):
            acc.plot(epochs, [m["test_knn5_accuracy"] for m in history], linestyle=":",
                     color=line.get_color(), label=f"{prior} 5-NN accuracy")
    ax.set_title("KL per image (nats) and 5-NN accuracy of the codes", fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats")
    ax.set_ylim(bottom=0)
    acc.set_ylabel("5-NN accuracy")
    acc.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()
    more = acc.get_legend_handles_labels()
    # below the panel: inside it, the legend hid the 5-NN lines
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper center",
              bbox_to_anchor=(0.5, -0.18), ncol=2)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def image_grid(rows: np.ndarray, path: str | Path, row_labels: list[str] | None = None,
               col_labels: list[str] | None = None) -> None:
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
    _save(fig, path)
