"""``acnkit bench``: the performance figures, each printed as ratios measured in one run."""

from __future__ import annotations

import json
import os
import sys

import click

from ..config import RunConfig
from ..display import print_codec, print_crossover, print_epoch, print_search, print_versus
from ..registry import get_registry
from .options import json_option, quiet_option


@click.group()
def bench() -> None:
    """Performance figures: neighbour search and training epochs."""


@bench.command("search")
@click.option("--search", "names", multiple=True, help="Searcher(s) to time (default: all).")
@click.option("--n", default=60000, show_default=True, help="Codes in the store.")
@click.option("--dim", default=32, show_default=True, help="Code dimensions.")
@click.option("--batch", default=128, show_default=True, help="Queries per batch.")
@click.option("--k", default=5, show_default=True, help="Neighbours per query.")
@click.option("--queries", default=20, show_default=True, help="Query batches timed.")
@click.option("--codes", "codes_path", default=None,
              help="Codes to search: a run folder (its store), a .pt tensor or a .npy array.")
@click.option("--trees", multiple=True, type=int, help="annoy: trees to try (repeatable).")
@click.option("--search-k", "search_ks", multiple=True, type=int,
              help="annoy: search_k values to try (repeatable).")
@click.option("--sizes", default=None,
              help="Comma-separated store sizes, e.g. 10000,60000,1000000: time every searcher "
                   "at each and report where each beats exact search at recall >= 0.99.")
@click.option("--device", default="cpu", show_default=True)
@json_option(help="Print a JSON list.")
@quiet_option
def bench_search_cmd(names, n, dim, batch, k, queries, codes_path, trees, search_ks, sizes,
                     device, as_json):
    """Build time, query time, recall@k of each searcher against exact search, and the
    brute-force bound from this machine's measured matmul rate; with --sizes, each
    searcher's crossover with exact search."""
    from ..bench.search import bench_search, load_codes
    from ..distributed import resolve_device

    resolve_device(device)
    for name, value in (("--n", n), ("--dim", dim), ("--batch", batch), ("--k", k),
                        ("--queries", queries)):
        if value < 1:
            raise click.UsageError(f"{name} must be >= 1")
    codes = load_codes(codes_path) if codes_path else None
    reg = get_registry()
    names = list(names) or reg.nearest_searchers()
    for name in names:
        reg.get("searcher", name)
    from ..bench.search import SEARCH_SETTINGS

    settings = dict(SEARCH_SETTINGS)
    if trees or search_ks:
        settings["annoy"] = [{"trees": t, "search_k": s} for t in (trees or (10,))
                             for s in (search_ks or (-1,))]
    if sizes is not None:
        try:
            size_list = sorted({int(v) for v in sizes.split(",") if v.strip()})
        except ValueError:
            raise click.UsageError(f"--sizes must be whole numbers separated by commas, "
                                   f"got {sizes!r}") from None
        if not size_list or size_list[0] <= max(k, batch):
            raise click.UsageError(f"--sizes must be larger than --batch and --k, got {sizes!r}")
        from ..bench.search import bench_search_sizes

        result = bench_search_sizes(names, size_list, dim, batch, k, codes=codes,
                                    queries=queries, device=device, settings=settings)
        if as_json:
            click.echo(json.dumps(result, indent=2))
            return
        print_crossover(result, k)
        return
    rows = bench_search(names, n, dim, batch, k, codes=codes, queries=queries, device=device,
                        settings=settings)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    print_search(rows, batch, k)


@bench.command("memory")
@click.option("--search", "name", default="torch", show_default=True, help="Searcher.")
@click.option("--n", default=1_000_000, show_default=True, help="Codes in the store.")
@click.option("--dim", default=32, show_default=True, help="Code dimensions.")
@click.option("--batch", default=128, show_default=True, help="Queries per batch.")
@click.option("--k", default=5, show_default=True, help="Neighbours per query.")
@quiet_option
def bench_memory_cmd(name, n, dim, batch, k):
    """Peak memory one search adds beside the code store (run alone: it reads the process's
    high-water mark). Prints JSON."""
    from ..bench.search import search_memory

    for flag, value in (("--n", n), ("--dim", dim), ("--batch", batch), ("--k", k)):
        if value < 1:
            raise click.UsageError(f"{flag} must be >= 1")
    if k >= n:
        raise click.UsageError(f"--k {k} must be smaller than --n {n}")
    get_registry().get("searcher", name)
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != "65536":
        # glibc keeps freed blocks for reuse, which hides later peaks from the high-water
        # mark: measure in a child whose large blocks are mapped and unmapped each time.
        import subprocess

        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        ctx_args = [sys.executable, "-m", "acnkit", "bench", "memory", "--search", name,
                    "--n", str(n), "--dim", str(dim), "--batch", str(batch), "--k", str(k)]
        child = subprocess.run(ctx_args, env=env, capture_output=True, text=True)
        click.echo(child.stdout, nl=False)
        click.echo(child.stderr, nl=False, err=True)
        sys.exit(child.returncode)
    click.echo(json.dumps(search_memory(name, n, dim, batch, k)))


@bench.command("chain")
@click.option("--n", default=10000, show_default=True, help="Codes to order.")
@click.option("--dim", default=32, show_default=True, help="Code dimensions.")
@click.option("--codes", "codes_path", default=None,
              help="Codes to order: a run folder (its store), a .pt tensor or a .npy array.")
@json_option(help="Print JSON.")
@quiet_option
def bench_chain_cmd(n, dim, codes_path, as_json):
    """Seconds to order a set of codes into ACN's greedy chain (the evaluation and the
    codec build one per coded set), beside one batched exact 1-NN search of the same codes."""
    from ..bench.search import bench_chain, load_codes

    if n < 1 or dim < 1:
        raise click.UsageError("--n and --dim must be >= 1")
    codes = load_codes(codes_path) if codes_path else None
    result = bench_chain(n, dim, codes)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"greedy chain over {result['n']} codes of {result['dim']} dimensions: "
               f"{result['chain_seconds']:.3f} s ({result['full_scans']} full scans); "
               f"one batched exact 1-NN search of them: {result['knn_seconds']:.3f} s")


@bench.command("codec")
@click.argument("run_dirs", nargs=-1, type=click.Path())
@click.option("--data", required=True, help="Data set whose images are coded.")
@click.option("--pixels", type=click.Choice(["binary", "native"]), default=None,
              help="Without runs: the data set's pixels (binarised with --data-seed 0, or "
                   "at their own levels), for the other codecs alone.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--limit", default=None, type=int, help="Use only the first N images.")
@click.option("--lanes", default=None, type=int,
              help="Chains coded in lockstep (default: compress's own choice).")
@click.option("--classic/--no-classic", default=True, show_default=True,
              help="Also the codecs people use on the same images (the slowest part on "
                   "thousands of 8-bit images: WebP and JPEG XL at their best effort).")
@click.option("--arithmetic", type=click.Choice(["exact", "machine", "both"]),
              default="exact", show_default=True,
              help="acnkit's files portable (exact arithmetic), bound to this machine (its "
                   "floats), or both side by side.")
@json_option(help="Print JSON.")
@quiet_option
def bench_codec_cmd(run_dirs, data, split, limit, lanes, pixels, classic, arithmetic, as_json):
    """Bytes of acnkit compress for each run in ordered and set mode (round trip checked,
    seconds each way) beside the codecs people use on the same images, each timed both
    ways and its round trip checked: for 0/1 images gzip -9, bzip2 -9, xz -9e, a 1-bit
    PNG and, when on PATH, JBIG (pbmtojbg), zpaq -m5 and lossless JPEG XL (cjxl); for grey
    and colour the same general codecs on the raw bytes, PNG (Pillow), and WebP lossless
    (cwebp), JPEG XL and zpaq when on PATH. For data binarised from grey levels, the floor
    no codec beats on average. With --pixels and no runs: the other codecs alone."""
    from ..bench.codec import bench_codec

    if limit is not None and limit < 1:
        raise click.UsageError("--limit must be >= 1")
    if lanes is not None and lanes < 1:
        raise click.UsageError("--lanes must be >= 1")
    if bool(run_dirs) == (pixels is not None):
        raise click.UsageError("give run folders, or --pixels binary|native for the other "
                               "codecs alone (no run)")
    result = bench_codec(list(run_dirs), data, split, limit, lanes, classic, pixels,
                         ("exact", "machine") if arithmetic == "both" else (arithmetic,))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    print_codec(result, data, split)


@bench.command("photos")
@click.argument("inputs", nargs=-1, type=click.Path(), metavar="PHOTOS...")
@click.option("--model", "model_name", default=None,
              help="A shipped model (acnkit models) or a model folder.")
@click.option("--run", "run_dir", default=None, help="A run folder instead of --model.")
@click.option("--lanes", default=None, type=int,
              help="Chains coded in lockstep (default: compress's own choice).")
@click.option("--classic/--no-classic", default=True, show_default=True,
              help="Also PNG (optipng -o2), WebP lossless (cwebp -z 9) and JPEG XL "
                   "(cjxl -d 0 -e 9), where on PATH.")
@json_option(help="Print JSON.")
@quiet_option
def bench_photos_cmd(inputs, model_name, run_dir, lanes, classic, as_json):
    """Photos of any size (files or folders), each coded alone by acnkit (as tiles of the
    model's size) and by the lossless codecs people use on photos, and all of them in one
    acnkit file: bytes, bits/dim and seconds each way, every file decoded and checked
    pixel for pixel."""
    from ..bench.photos import bench_photos
    from ..display import print_photos

    if not inputs:
        raise click.UsageError("give the photos (files or folders) to code")
    if (model_name is None) == (run_dir is None):
        raise click.UsageError("give --model NAME or --run RUN, the model to code with")
    if model_name is not None:
        from ..shipped import load_model

        trained = load_model(model_name)
    else:
        from ..trained import load_run

        trained = load_run(run_dir, "cpu")
    result = bench_photos(trained, list(inputs), lanes, classic)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    print_photos(result)


@bench.command("epoch")
@click.option("--data", default=None, help="Data set (default: fashion-mnist if present, else digits).")
@click.option("--data-dir", default=None, help="Folder of IDX files.")
@click.option("--search", "names", multiple=True, help="Searcher(s) for ACN (default: all).")
@click.option("--repeat", default=1, show_default=True, help="Interleaved repetitions (median).")
@click.option("--train-limit", default=None, type=int, help="Use only the first N images.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML file of the nets to time (e.g. configs/pixelcnn.toml) instead of "
                   "the blog configuration.")
@json_option(help="Print JSON.")
@quiet_option
def bench_epoch_cmd(data, data_dir, names, repeat, train_limit, device, config_file, as_json):
    """One training epoch of the VAE and of ACN with each searcher, blog configuration
    (MLP 784-512-20, single-Gaussian prior with one hidden layer of 512, batch 128) or
    the nets of --config."""
    from ..bench.epoch import bench_epoch

    if data is None:
        from pathlib import Path
        data = "fashion-mnist" if Path("/usr/share/datasets/fashion-mnist").is_dir() else "digits"
    reg = get_registry()
    names = list(names) or reg.nearest_searchers()
    for name in names:
        reg.get("searcher", name)
    if repeat < 1:
        raise click.UsageError("--repeat must be >= 1")
    if train_limit is not None and train_limit < 2:
        raise click.UsageError("--train-limit must be >= 2")
    base = RunConfig.from_toml(config_file) if config_file else None
    result = bench_epoch(data, names, repeats=repeat, device=device, train_limit=train_limit,
                         data_dir=data_dir, base=base)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    print_epoch(result)


@bench.command("versus")
@click.argument("rev")
@click.option("--figure", "names", multiple=True,
              type=click.Choice(["epoch", "codec-mlp", "codec-pixelcnn", "search"]),
              help="Figures to measure (repeatable; default: all).")
@click.option("--repeat", default=3, show_default=True,
              help="Interleaved repetitions, the sides' order alternating (median).")
@click.option("--data", default=None,
              help="Data set of the epoch and codec figures (default: fashion-mnist if "
                   "present, else digits).")
@click.option("--limit", default=500, show_default=True,
              help="Training images of the codec's runs, and test images coded.")
@click.option("--epochs", default=1, show_default=True, help="Epochs of the codec's runs.")
@click.option("--cache", default=None,
              help="Keep the revision's venv in this folder and reuse it (default: a "
                   "temporary folder, removed after).")
@json_option(help="Print JSON.")
@quiet_option
def bench_versus_cmd(rev, names, repeat, data, limit, epochs, cache, as_json):
    """The core figures of git revision REV and of the working tree, side by side on this
    machine: REV is installed into a venv that shares this Python's packages, each figure
    (an epoch of the VAE and of ACN, the codec each way on an MLP run and a PixelCNN run
    trained by each side, a neighbour search) is one acnkit command with --json run by
    both sides in turn, and the table gives each side's median and the working tree's
    ratio to REV (below 1: faster). Run it on every change to a hot path."""
    from ..bench.versus import versus
    from ..progress import echo

    result = versus(rev, list(names), repeat, data, limit, epochs, cache, echo)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    print_versus(result)
