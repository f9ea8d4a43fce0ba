"""Results on the terminal: the line each epoch ends with and the tables the commands print
(progress bars live in :mod:`acnkit.progress`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: a held-out KL below this many nats an image: the codes carry almost nothing about their
#: images (posterior collapse), which the epoch line and compare say
COLLAPSE_NATS = 0.5


def collapse_warning(m: dict[str, Any]) -> str:
    """A warning when an epoch's held-out KL shows posterior collapse, else ''."""
    kl = m.get("test_kl")
    if not isinstance(kl, int | float) or kl >= COLLAPSE_NATS:
        return ""
    return (f"warning: KL {kl:.2f} nats an image, below {COLLAPSE_NATS}: the codes carry "
            f"almost nothing (posterior collapse; the decoder models the images alone)")


def epoch_line(label: str, m: dict[str, Any], epochs: int) -> str:
    """One epoch, laid out the same for every prior (fixed widths, so the lines of a
    comparison align): the training objective, then the held-out code length in set mode
    (the headline for every prior) and ordered mode, with the prior's own reconstruction
    and KL, in nats per image; bits per dimension for data of more than two levels."""
    bpd = (f"  {m['test_bits_per_dim_set']:.3f} bits/dim"
           if m.get("levels", 2) > 2 and "test_bits_per_dim_set" in m else "")
    split = m.get("eval_split", "test")
    return (f"{label}epoch {m['epoch']:>{len(str(epochs))}}/{epochs}  "
            f"train {m['train_nats']:8.2f} (recon {m['train_recon']:8.2f} + kl "
            f"{m['train_kl']:6.2f})  {split} set {m['test_nats_set']:8.2f} ordered "
            f"{m['test_nats_ordered']:8.2f} (recon {m['test_recon']:8.2f} + kl "
            f"{m['test_kl']:6.2f}) nats/image{bpd}  "
            f"{m['epoch_seconds']:6.1f}s (search {m['search_seconds']:.1f}s)"
            + "".join(f"  {w}" for w in [collapse_warning(m)] if w))


def run_summary(path: str | Path, m: dict[str, Any]) -> str:
    """The line ``acnkit run`` ends with (``--quiet`` keeps it): the headline figure with
    its unit, and where the run is."""
    split = m.get("eval_split", "test")
    bpd = m.get("test_bits_per_dim_set", m.get("test_bits_per_dim", float("nan")))
    return (f"{path}: epoch {m['epoch']}, {split} set mode {m['test_nats_set']:.2f} nats per "
            f"image ({bpd:.4f} bits/dim), ordered {m['test_nats_ordered']:.2f}")


# ----------------------------------------------------------------- tables of results
def _console() -> Console:
    """The console tables print on: a terminal's own width; in a pipe or a file every
    table at its full width, never cut to 80 columns with ellipses."""
    console = Console()
    return console if console.is_terminal else Console(width=1000)


def _print(renderable: Any) -> None:
    _console().print(renderable)


def print_plugins(rows: list[dict[str, Any]]) -> None:
    """``acnkit plugins``: each plugin, what it registers, and what went wrong."""
    table = Table(title="acnkit plugins")
    for col in ("plugin", "distribution", "registers"):
        table.add_column(col)
    for r in rows:
        parts = [f"{kind}: {', '.join(names)}" for kind, names in r["registers"].items()]
        if r["commands"]:
            parts.append(f"commands: {', '.join(r['commands'])}")
        if r["error"]:
            parts.append(f"[red]failed, skipped: {escape(r['error'])}[/red]")
        parts.extend(f"[yellow]warning: {escape(w)}[/yellow]" for w in r["warnings"])
        dist = "built-in" if r["builtin"] else f"{r['distribution']} {r['version']}"
        table.add_row(r["name"], dist, "\n".join(parts))
    _print(table)


def print_models(models: dict[str, dict[str, Any]]) -> None:
    """``acnkit models``: each shipped model, what it codes and how well."""
    if not models:
        _print("no models are shipped with this acnkit; `acnkit models export RUN NAME` "
               "makes one from a run")
        return
    table = Table(title="acnkit models (compress --model NAME; decompress finds its own)")
    for col in ("model", "images", "what", "test bits/dim", "parameters"):
        table.add_column(col)
    for name, info in models.items():
        shape = "x".join(str(s) for s in info.get("image_shape", []))
        bpd = info.get("test_bits_per_dim")
        table.add_row(name, f"{shape}, {info.get('levels', '?')} levels",
                      escape(str(info.get("what", ""))),
                      f"{bpd:.3f}" if isinstance(bpd, int | float) else "",
                      f"{info.get('parameters', 0):,}")
    _print(table)


def print_photos(result: dict[str, Any]) -> None:
    """``acnkit bench photos``: bits/dim of each photo by each codec (the smallest in
    bold), acnkit's seconds each way, and every photo in one file."""
    rows = result["photos"]
    if not rows:
        return
    names = list(rows[0]["codecs"])
    table = Table(title="photos, lossless: bits per subpixel (every file decoded and checked)")
    for col in ("photo", "size", *names, "acnkit s (compress / decompress)"):
        table.add_column(col, justify="left" if col in ("photo", "size") else "right")
    for r in rows:
        best = min(r["codecs"][n]["bits_per_dim"] for n in names)
        cells = []
        for n in names:
            c = r["codecs"][n]
            text = f"{c['bits_per_dim']:.3f}" + ("" if c["round_trip"] else " (NOT exact)")
            cells.append(f"[bold]{text}[/bold]" if c["bits_per_dim"] == best else text)
        a = r["codecs"]["acnkit"]
        table.add_row(escape(r["photo"]), f"{r['width']}x{r['height']} {r['mode']}", *cells,
                      f"{a['compress_seconds']:.1f} / {a['decompress_seconds']:.1f}")
    sub = result["subpixels"]
    totals = [f"{8 * result['totals'][n] / sub:.3f}" for n in names]
    table.add_row("all, each alone", "", *totals, "")
    together = result.get("together")
    if together:
        table.add_row("all in one acnkit file", "",
                      f"{8 * together['bytes'] / sub:.3f}"
                      + ("" if together["round_trip"] else " (NOT exact)"),
                      *[""] * (len(names) - 1),
                      f"{together['compress_seconds']:.1f} / {together['decompress_seconds']:.1f}")
    _print(table)
    for line in result.get("missing", []):
        _print(f"not on PATH: {line}")


def print_search(rows: list[dict[str, Any]], batch: int, k: int) -> None:
    """``acnkit bench search``: each searcher's build and query time beside the bound."""
    r0 = rows[0]
    table = Table(title=f"search: {r0['n']} x {r0['dim']} codes, batch {batch}, k {k}; "
                        f"matmul {r0['matmul_gflops']:.0f} GFLOP/s, "
                        f"bound {r0['flop_bound_ms']:.2f} ms")
    for col in ("searcher", "settings", "build s", "ms/batch", "x bound", "recall@k"):
        table.add_column(col, justify="right" if col not in ("searcher", "settings") else "left")
    for r in rows:
        table.add_row(r["searcher"], ", ".join(f"{a}={b}" for a, b in r["settings"].items()),
                      f"{r['build_seconds']:.2f}", f"{r['query_ms_per_batch']:.2f}",
                      f"{r['ratio_to_bound']:.2f}", f"{r['recall_at_k']:.3f}")
    _print(table)


def print_crossover(result: dict[str, Any], k: int) -> None:
    """``acnkit bench search --sizes``: where each searcher beats exact search."""
    sizes = sorted({r["n"] for r in result["rows"]})
    table = Table(title=f"ms per batch at recall@{k} >= 0.99 (x exact search), "
                        f"{result['codes']} codes")
    table.add_column("searcher")
    for n in sizes:
        table.add_column(f"{n:,}", justify="right")
    table.add_column("beats exact from", justify="right")
    for c in result["crossover"]:
        cells = [("-" if c["sizes"][n] is None else
                  f"{c['sizes'][n]['ms']:.2f} ({c['sizes'][n]['x_exact']:.2f})") for n in sizes]
        where = "-" if c["searcher"] == "torch" else (
            f"{c['crossover']:,}" if c["crossover"] else "nowhere")
        table.add_row(c["searcher"], *cells, where)
    _print(table)
    if result["skipped_sizes"]:
        _print(f"skipped sizes larger than the given codes: "
               f"{', '.join(map(str, result['skipped_sizes']))}")


def print_codec(result: dict[str, Any], data: str, split: str) -> None:
    """``acnkit bench codec``: acnkit's files beside the codecs people use, seconds each
    way for every row."""
    levels = result.get("levels", 2)
    what = (f"{result['pixels']} binary pixels" if levels == 2 else
            f"shape {tuple(result['image_shape'])} at {levels} levels")
    table = Table(title=f"{result['images']} {data} {split} images of {what}")
    per_dim = levels > 2
    columns = ["codec", "mode", "lanes", "bytes", "bits/img", *(["bits/dim"] if per_dim else []),
               "model", "over", "comp s", "dec s", "pixel ms", "check"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("codec", "mode") else "right")

    def dim(r: dict[str, Any]) -> list[str]:
        return [f"{r['bits_per_dim']:.3f}"] if per_dim else []

    for r in result["acnkit"]:
        table.add_row(r["codec"], r["mode"], str(r.get("lanes", "")), str(r["bytes"]),
                      f"{r['bits_per_image']:.1f}", *dim(r),
                      f"{r['model_bits_per_image']:.1f}", f"{r['overhead_percent']:+.2f} %",
                      f"{r['compress_seconds']:.1f}", f"{r['decompress_seconds']:.1f}",
                      f"{r['pixel_step_ms']:.2f}" if r["pixel_steps"] else "-",
                      "exact" if r["round_trip"] else "FAILED")
    for r in result["classic"]:
        if "skipped" in r:
            table.add_row(r["codec"], "", "", "", "skipped", *([""] if per_dim else []), "",
                          "", "", "", "", r["skipped"])
            continue
        table.add_row(r["codec"], r.get("layout", "ordered"), "", str(r["bytes"]),
                      f"{r['bits_per_image']:.1f}", *dim(r), "", "",
                      f"{r['compress_seconds']:.1f}", f"{r['decompress_seconds']:.1f}", "",
                      "exact" if r["round_trip"] else "FAILED")
    if result.get("floor_bits_per_image") is not None:
        table.add_row("floor (pixels' entropy given grey levels)", "", "", "",
                      f"{result['floor_bits_per_image']:.1f}", *([""] if per_dim else []),
                      "", "", "", "", "", "")
    _print(table)
    _print("mode of another codec: the input it was given, the smallest kept (raw: the "
           "array's bytes; tall: one image under the other; mosaic: a near-square grid)")
    if any(r["pixel_steps"] for r in result["acnkit"]):
        _print("pixel ms: milliseconds per pixel of an autoregressive decoder's "
               "decoding loop (one decoder call each)")


def print_epoch(result: dict[str, Any]) -> None:
    """``acnkit bench epoch``: seconds per phase of the VAE and of ACN per searcher."""
    columns = [("vae", result["vae_phases"])] + [(f"acn + {r['search']}", r["phases"])
                                                   for r in result["acn"]]
    table = Table(title=f"seconds of one epoch on {result['data']} ({result['n']} training "
                        f"images), {result['nets']}; medians of {result['repeats']}")
    table.add_column("phase")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for phase in result["vae_phases"]:
        table.add_row(phase, *(f"{p[phase]:.2f}" for _, p in columns),
                      style="bold" if phase in ("training", "epoch") else None)
    table.add_row("training x VAE", "1.00", *(f"{r['training_ratio']:.2f}" for r in result["acn"]))
    table.add_row("epoch x VAE", "1.00", *(f"{r['ratio']:.2f}" for r in result["acn"]))
    _print(table)


def print_compare(histories: dict[str, list[dict[str, Any]]], data: str, out: Path) -> None:
    """``acnkit compare``: per epoch, each prior's training objective and held-out code
    length in both modes; then the final comparison in words."""
    names = list(histories)
    table = Table(title=f"nats per image on {data}: training objective | held-out "
                        f"code length in ordered and set mode")
    table.add_column("epoch", justify="right")
    for p in names:
        table.add_column(f"{p} train\n(recon + kl)", justify="right")
        table.add_column(f"{p} ordered\n(set)", justify="right")
    for e in range(max(len(h) for h in histories.values())):
        row = [str(e + 1)]
        for p in names:
            m = histories[p][e] if e < len(histories[p]) else None
            row.append(f"{m['train_nats']:.2f}\n({m['train_recon']:.1f} + {m['train_kl']:.1f})"
                       if m else "")
            row.append(f"{m['test_nats_ordered']:.2f}\n({m['test_nats_set']:.2f})" if m else "")
        table.add_row(*row)
    console = _console()
    console.print(table)
    if len(names) >= 2:
        # runs read as they stand (compare --runs) may be at different epochs: they are
        # compared at the last epoch both have
        common = min(len(histories[names[0]]), len(histories[names[-1]]))
        if len(histories[names[0]]) != len(histories[names[-1]]):
            console.print(f"at epoch {common}, the last both {names[0]} and {names[-1]} have:",
                          soft_wrap=True)
        for line in final_comparison(histories[names[0]][common - 1],
                                     histories[names[-1]][common - 1], names[0], names[-1]):
            console.print(line, soft_wrap=True)  # whole sentences: a log is not 80 columns
    console.print(f"wrote {out / 'compare.csv'} and {out / 'compare.png'}", soft_wrap=True)


def final_comparison(ma: dict[str, Any], mb: dict[str, Any], a: str, b: str) -> list[str]:
    """The last epoch of priors ``a`` and ``b`` in words: code lengths in both modes, KL
    and 5-NN accuracy."""
    lines = []
    for mode in ("ordered", "set"):
        ta, tb = ma[f"test_nats_{mode}"], mb[f"test_nats_{mode}"]
        side = "below" if tb < ta else "above"
        lines.append(f"final {mb.get('eval_split', 'test')} code length, {mode} mode: {b} {tb:.2f} vs {a} "
                     f"{ta:.2f} nats per image: {b} is {abs(ta - tb):.2f} nats "
                     f"({abs(ta - tb) / ta:.1%}) {side} {a}")
    def knn(m: dict[str, Any]) -> str:
        acc = m.get("test_knn5_accuracy")
        return "n/a (one label)" if acc is None else f"{acc:.3f}"

    lines.append("final KL per image and 5-NN accuracy of the codes: " + "; ".join(
        f"{p} {m['test_kl']:.2f} nats, {knn(m)}" for p, m in ((a, ma), (b, mb))))
    lines += [f"{p}: {collapse_warning(m)}" for p, m in ((a, ma), (b, mb)) if collapse_warning(m)]
    return lines


def print_versus(result: dict[str, Any]) -> None:
    """``acnkit bench versus``: each figure's median on both sides and their ratio."""
    rev = result["commit"][:10]
    table = Table(title=f"{rev} ({result['rev']}) against the working tree on this machine, "
                        f"{result['data']}, medians of {result['repeat']} interleaved runs")
    for name in ("figure", "unit", rev, "working tree", "x " + rev):
        table.add_column(name, justify="left" if name in ("figure", "unit") else "right")
    for row in result["rows"]:
        cells = [f"failed: {row[f'{k}_failed']}" if row[k] is None else f"{row[k]:.3f}"
                 for k in ("base", "work")]
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
        table.add_row(row["figure"], row["unit"], *cells, ratio)
    _print(table)
