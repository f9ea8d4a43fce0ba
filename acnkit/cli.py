"""The ``acnkit`` command line: a thin layer over :mod:`acnkit.runs` and the engine."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from . import __version__
from .config import RunConfig
from .errors import AcnkitError
from .registry import KINDS, get_registry


class AcnkitGroup(click.Group):
    """Turns every acnkit error into one line on stderr and its exit code (``--debug`` shows
    the traceback), and adds the commands that plugins register."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        # click's own usage errors become one line too, like acnkit's.
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            hint = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AcnkitError as exc:
            self._fail(ctx, f"error: {exc}", exc.exit_code)
        except OSError as exc:  # a full disk, a vanished folder: the system's words, one line
            where = f"{exc.filename}: " if exc.filename else ""
            self._fail(ctx, f"error: {where}{exc.strerror or exc}", 1)
        except KeyboardInterrupt:
            self._fail(ctx, "interrupted", 130)

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int) -> None:
        if ctx.obj and ctx.obj.get("debug"):
            traceback.print_exc()
        click.echo(" ".join(message.split()), err=True)  # always one line
        ctx.exit(code)

    def _ensure_plugin_commands(self) -> None:
        if not getattr(self, "_plugin_commands_added", False):
            self._plugin_commands_added = True
            try:
                get_registry().add_commands(self)
            except AcnkitError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(exc.exit_code)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._ensure_plugin_commands()
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._ensure_plugin_commands()
        return super().list_commands(ctx)


@click.group(cls=AcnkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="acnkit")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Associative Compression Networks and VAEs: train, compare, evaluate, daydream."""
    ctx.ensure_object(dict)["debug"] = debug


_D = RunConfig()

#: CLI option -> (click option declaration kwargs)
RUN_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--prior", {"default": _D.prior, "help": "Prior: acn (neighbour-conditioned) or vae."}),
    ("--search", {"default": _D.search, "help": "Neighbour searcher (torch, sklearn, annoy, ...)."}),
    ("--data", {"default": _D.data, "help": "Data set: digits (embedded), mnist, fashion-mnist."}),
    ("--data-dir", {"default": None, "help": "Folder of IDX files (raw or .gz) for mnist-like sets."}),
    ("--encoder", {"default": _D.encoder, "help": "Encoder plugin."}),
    ("--decoder", {"default": _D.decoder, "help": "Decoder plugin."}),
    ("--loss", {"default": _D.loss, "help": "Reconstruction likelihood plugin."}),
    ("--epochs", {"default": _D.epochs, "type": int, "help": "Epochs in all."}),
    ("--batch-size", {"default": _D.batch_size, "type": int, "help": "Minibatch size."}),
    ("--latent-dim", {"default": _D.latent_dim, "type": int, "help": "Latent dimensions d."}),
    ("--k", {"default": _D.k, "type": int, "help": "Neighbours to pick the prior's code from."}),
    ("--lr", {"default": _D.lr, "type": float, "help": "Adam learning rate."}),
    ("--seed", {"default": _D.seed, "type": int, "help": "Seed of initialisation, order, noise."}),
    ("--data-seed", {"default": _D.data_seed, "type": int,
                     "help": "Seed of the pixel binarization (fixes the test images)."}),
    ("--device", {"default": _D.device, "help": "cpu or cuda[:N]."}),
    ("--posterior", {"default": _D.posterior, "type": click.Choice(["unit", "learned"]),
                     "help": "Posterior variance: unit (paper) or learned (blog)."}),
    ("--encoder-hidden", {"default": _D.encoder_hidden, "help": "Encoder hidden sizes, e.g. 512-256."}),
    ("--decoder-hidden", {"default": _D.decoder_hidden, "help": "Decoder hidden sizes."}),
    ("--channels", {"default": None,
                    "help": "Conv encoder/decoder channels per stage, e.g. 64-128 (default 32-64)."}),
    ("--decoder-option", {"multiple": True, "metavar": "KEY=VALUE",
                          "help": "An option of the decoder's factory, e.g. layers=8 for "
                                  "pixelcnn (repeatable; a config file's [decoder_options])."}),
    ("--prior-hidden", {"default": _D.prior_hidden, "type": int, "help": "ACN prior units per layer."}),
    ("--prior-layers", {"default": _D.prior_layers, "type": int, "help": "ACN prior hidden layers."}),
    ("--mixtures", {"default": _D.mixtures, "type": int,
                    "help": "Gaussians per latent dimension in the ACN prior (1: closed-form KL)."}),
    ("--unique", {"is_flag": True, "default": False,
                  "help": "Use each stored code as a neighbour at most once per epoch."}),
    ("--refresh", {"default": None, "type": int,
                   "help": "Index searchers: rebuild the index every N batches."}),
    ("--trees", {"default": None, "type": int, "help": "annoy: number of trees."}),
    ("--search-k", {"default": None, "type": int, "help": "annoy: nodes inspected per query."}),
    ("--train-limit", {"default": None, "type": int, "help": "Use only the first N training images."}),
    ("--test-limit", {"default": None, "type": int, "help": "Use only the first N test images."}),
    ("--valid-size", {"default": None, "type": int,
                      "help": "Hold out the last N training images and report them instead of "
                              "the test set (for choosing hyper-parameters)."}),
]
SEARCH_OPTION_KEYS = ("trees", "search_k")


def run_options(fn: Callable) -> Callable:
    for decl, kwargs in reversed(RUN_OPTIONS):
        fn = click.option(decl, show_default=kwargs.get("default") is not None, **kwargs)(fn)
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False),
                      help="TOML file of options; options given on the command line win.")(fn)
    return fn


def without_nproc(argv: list[str]) -> list[str]:
    """The command line minus ``--nproc N`` / ``--nproc=N``, for the processes it starts."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    return args


def parse_options(pairs: Iterable[str], flag: str) -> dict[str, Any]:
    """KEY=VALUE pairs as a dict; values read as TOML values (8, 0.5, true, "text"), or
    as plain text when they are not one."""
    from .config import tomllib

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise click.UsageError(f"{flag} takes KEY=VALUE, e.g. {flag} layers=8; got {pair!r}")
        try:
            options[key] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            options[key] = raw.strip()
    return options


def build_config(ctx: click.Context, params: dict[str, Any]) -> tuple[RunConfig, dict[str, Any]]:
    """The run's config, and the options the user gave explicitly (they override a file)."""
    explicit = {}
    for name, value in params.items():
        source = ctx.get_parameter_source(name)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            explicit[name] = value
    fields = {f: v for f, v in params.items() if f in RunConfig.__dataclass_fields__}
    search_options = {k: params[k] for k in SEARCH_OPTION_KEYS if params.get(k) is not None}
    decoder_options = parse_options(params.get("decoder_option") or (), "--decoder-option")
    if params.get("config_file"):
        file_cfg = RunConfig.from_toml(params["config_file"])
        values = file_cfg.to_dict()
        values.update({k: v for k, v in explicit.items() if k in RunConfig.__dataclass_fields__})
        values["search_options"] = {**file_cfg.search_options, **search_options}
        values["decoder_options"] = {**file_cfg.decoder_options, **decoder_options}
        config = RunConfig.from_dict(values)
    else:
        config = RunConfig(**fields, search_options=search_options,
                           decoder_options=decoder_options)
    overrides = {k: v for k, v in explicit.items() if k in RunConfig.__dataclass_fields__}
    if search_options:
        overrides["search_options"] = search_options
    if decoder_options:
        overrides["decoder_options"] = decoder_options
    return config.validate(), overrides


@main.command()
@run_options
@click.option("--out", type=click.Path(file_okay=True), default="runs/latest", show_default=True,
              help="Run folder: config.json, metrics.jsonl, checkpoint.pt.")
@click.option("--resume", "resume_dir", type=click.Path(), default=None,
              help="Continue the run in this folder (up to --epochs in all).")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the last epoch's metrics as JSON.")
@click.option("--nproc", default=1, show_default=True,
              help="Processes to train with (torch.distributed; gloo on CPU, nccl on CUDA).")
@click.pass_context
def run(ctx: click.Context, out: str, resume_dir: str | None, overwrite: bool, as_json: bool,
        nproc: int, **params: Any) -> None:
    """Train one model (ACN by default) and test it after every epoch.

    Under torchrun (torchrun --nproc_per_node N -m acnkit run ...) or with --nproc N it
    trains with one process per share of each batch; only rank 0 writes files."""
    from . import runs
    from .distributed import shutdown

    if nproc < 1:
        raise click.UsageError("--nproc must be >= 1")
    if resume_dir:
        given = [flag for flag, name in (("--out", "out"), ("--overwrite", "overwrite"),
                                         ("--config", "config_file"))
                 if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--resume continues the run in its own folder with its "
                                   f"own config; drop {' and '.join(given)}")
    config, overrides = build_config(ctx, params)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        # Usage errors are found here, once, before any process starts.
        if config.unique:
            raise click.UsageError("--unique is not supported with several processes yet; "
                                   "drop it or train in one process")
        if not resume_dir:
            runs.check_new(config, out, overwrite)
        from .launch import launch

        ctx.exit(launch(nproc, without_nproc(sys.argv[1:])))

    ok = False
    try:
        if resume_dir:
            epochs = overrides.pop("epochs", None)
            trainer = runs.resume(resume_dir, epochs=epochs, overrides=overrides,
                                  notify=lambda m: click.echo(m, err=True))
        else:
            trainer = runs.start(config, out, overwrite=overwrite)
        ok = True
    except runs.Interrupted as exc:
        ok = True  # every rank stopped at the same batch
        click.echo(str(exc), err=True)
        ctx.exit(130)
    finally:
        shutdown(clean=ok)
    if as_json and trainer.history and trainer.dist.is_main:
        click.echo(json.dumps(trainer.history[-1]))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the plugins as JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins and the components each registers."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    reg = get_registry()  # the group added the plugins' commands when it resolved this one
    rows = []
    for info in reg.plugins.values():  # built-ins first, then in load order
        rows.append({"name": info.name, "distribution": info.distribution,
                     "version": info.version, "builtin": info.builtin,
                     "registers": info.registers, "commands": info.commands,
                     "error": info.error, "warnings": info.warnings})
    if as_json:
        components = {kind: reg.names(kind) for kind in KINDS}
        click.echo(json.dumps({"plugins": rows, "components": components}, indent=2))
        return
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
    Console().print(table)


@main.group()
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
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def bench_search_cmd(names, n, dim, batch, k, queries, codes_path, trees, search_ks, sizes,
                     device, as_json):
    """Build time, query time, recall@k of each searcher against exact search, and the
    brute-force bound from this machine's measured matmul rate; with --sizes, each
    searcher's crossover with exact search."""
    from .bench import bench_search, load_codes
    from .engine import resolve_device

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
    from .bench import SEARCH_SETTINGS

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
        from .bench import bench_search_sizes

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
    from rich.console import Console
    from rich.table import Table

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
    Console().print(table)


def print_crossover(result: dict, k: int) -> None:
    from rich.console import Console
    from rich.table import Table

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
    Console().print(table)
    if result["skipped_sizes"]:
        Console().print(f"skipped sizes larger than the given codes: "
                        f"{', '.join(map(str, result['skipped_sizes']))}")


@bench.command("memory")
@click.option("--search", "name", default="torch", show_default=True, help="Searcher.")
@click.option("--n", default=1_000_000, show_default=True, help="Codes in the store.")
@click.option("--dim", default=32, show_default=True, help="Code dimensions.")
@click.option("--batch", default=128, show_default=True, help="Queries per batch.")
@click.option("--k", default=5, show_default=True, help="Neighbours per query.")
def bench_memory_cmd(name, n, dim, batch, k):
    """Peak memory one search adds beside the code store (run alone: it reads the process's
    high-water mark). Prints JSON."""
    from .bench import search_memory

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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_chain_cmd(n, dim, codes_path, as_json):
    """Seconds to order a set of codes into ACN's greedy chain (the evaluation and the
    codec build one per coded set), beside one batched exact 1-NN search of the same codes."""
    from .bench import bench_chain, load_codes

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
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--data", required=True, help="Data set whose images are coded.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--limit", default=None, type=int, help="Use only the first N images.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_codec_cmd(run_dirs, data, split, limit, as_json):
    """Bytes of acnkit compress for each run in ordered and set mode (round trip checked,
    seconds each way) beside gzip -9, bzip2 -9, xz -9e and a 1-bit PNG of the same images."""
    from .bench import bench_codec

    if limit is not None and limit < 1:
        raise click.UsageError("--limit must be >= 1")
    result = bench_codec(list(run_dirs), data, split, limit)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['images']} {data} {split} images of {result['pixels']} "
                        f"binary pixels")
    for col in ("codec", "mode", "bytes", "bits/img", "model", "over", "comp s", "dec s",
                "pixel ms", "check"):
        table.add_column(col, justify="left" if col in ("codec", "mode") else "right")
    for r in result["acnkit"]:
        table.add_row(r["codec"], r["mode"], str(r["bytes"]), f"{r['bits_per_image']:.1f}",
                      f"{r['model_bits_per_image']:.1f}", f"{r['overhead_percent']:+.2f} %",
                      f"{r['compress_seconds']:.1f}", f"{r['decompress_seconds']:.1f}",
                      f"{r['pixel_step_ms']:.2f}" if r["pixel_steps"] else "-",
                      "exact" if r["round_trip"] else "FAILED")
    for r in result["classic"]:
        table.add_row(r["codec"], "ordered", str(r["bytes"]), f"{r['bits_per_image']:.1f}",
                      "", "", "", "", "", "")
    Console().print(table)
    if any(r["pixel_steps"] for r in result["acnkit"]):
        Console().print("pixel ms: milliseconds per pixel of an autoregressive decoder's "
                        "decoding loop (one decoder call each)")


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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_epoch_cmd(data, data_dir, names, repeat, train_limit, device, config_file, as_json):
    """One training epoch of the VAE and of ACN with each searcher, blog configuration
    (MLP 784-512-20, single-Gaussian prior with one hidden layer of 512, batch 128) or
    the nets of --config."""
    from .bench import bench_epoch

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
    from rich.console import Console
    from rich.table import Table

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
    Console().print(table)


@main.command()
@run_options
@click.option("--priors", default="vae,acn", show_default=True,
              help="Comma-separated priors to train with identical nets, seed and data order.")
@click.option("--out", type=click.Path(), default="runs/compare", show_default=True,
              help="Folder for <prior>/ runs, compare.csv and compare.png.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier comparison in --out.")
@click.option("--resume", is_flag=True,
              help="Continue the comparison in --out (after an interruption, or up to more "
                   "--epochs) and write its table and plot.")
@click.option("--json", "as_json", is_flag=True, help="Print the final epoch of each prior.")
@click.pass_context
def compare(ctx: click.Context, priors: str, out: str, overwrite: bool, resume: bool,
            as_json: bool, **params: Any) -> None:
    """Train VAE and ACN side by side and report nats per epoch for both."""
    from rich.console import Console
    from rich.table import Table

    from . import runs
    from .compare import run_compare

    params.pop("prior", None)
    config, explicit = build_config(ctx, params)
    if resume:
        given = sorted(f"--{k.replace('_', '-')}" for k in explicit if k != "epochs")
        if ctx.get_parameter_source("priors") == ParameterSource.COMMANDLINE:
            given.append("--priors")
        if overwrite:
            given.append("--overwrite")
        if given:
            raise click.UsageError(f"--resume continues the comparison in --out as it was "
                                   f"started (only --epochs may change); drop "
                                   f"{', '.join(given)}")
    names = [p.strip() for p in priors.split(",") if p.strip()]
    try:
        histories = run_compare(config, names, out, overwrite, resume=resume,
                                epochs=explicit.get("epochs"))
    except runs.Interrupted as exc:
        click.echo(str(exc), err=True)
        ctx.exit(130)
    names = list(histories)
    if resume:
        from .compare import read_plan

        config = read_plan(Path(out))[0]
    if as_json:
        click.echo(json.dumps({p: h[-1] for p, h in histories.items()}))
        return
    table = Table(title=f"nats per image on {config.data}: training objective | held-out "
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
    console = Console()
    console.print(table)
    if len(names) >= 2:
        a, b = names[0], names[-1]
        for mode in ("ordered", "set"):
            ta, tb = histories[a][-1][f"test_nats_{mode}"], histories[b][-1][f"test_nats_{mode}"]
            side = "below" if tb < ta else "above"
            console.print(f"final {histories[b][-1]['eval_split']} code length, {mode} mode: "
                          f"{b} {tb:.2f} vs {a} {ta:.2f} nats per image: {b} is "
                          f"{abs(ta - tb):.2f} nats ({abs(ta - tb) / ta:.1%}) {side} {a}")
        last = {p: histories[p][-1] for p in (a, b)}
        if all("test_knn5_accuracy" in m for m in last.values()):
            console.print("final KL per image and 5-NN accuracy of the codes: " + "; ".join(
                f"{p} {m['test_kl']:.2f} nats, {m['test_knn5_accuracy']:.3f}"
                for p, m in last.items()))
    console.print(f"wrote {Path(out) / 'compare.csv'} and {Path(out) / 'compare.png'}")


@main.command("compress")
@click.argument("run_dir", type=click.Path())
@click.option("--data", "data_name", default=None,
              help="Compress this data set, binarised with the run's --data-seed.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which split of --data.")
@click.option("--input", "input_path", default=None,
              help="A .npy array of 0/1 images (bool or integers), N x H x W or N x D.")
@click.option("-o", "--output", required=True, help="The compressed file to write.")
@click.option("--set", "as_set", is_flag=True,
              help="Keep the images, not their order (saves up to log(N!)/N nats per image).")
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the sizes as JSON.")
def compress_cmd(run_dir: str, data_name: str | None, split: str, input_path: str | None,
                 output: str, as_set: bool, overwrite: bool, as_json: bool) -> None:
    """Bits-back ANS coding of binary images with a trained VAE or ACN run (ACN along its
    greedy chain). The file decodes bit-exactly with `acnkit decompress`."""
    from .atomic import atomic_write_bytes, check_target
    from .codec import as_images, compress, dataset_images, load_images
    from .runs import load_trainer

    if (data_name is None) == (input_path is None):
        raise click.UsageError("give exactly one of --data NAME and --input FILE.npy")
    target = check_target(output, overwrite, "--output")
    trainer = load_trainer(run_dir, "cpu")
    shape = trainer.data.image_shape
    if input_path is not None:
        raw = load_images(input_path)
        images = as_images(raw, shape, f"--input {input_path}")
        dtype, input_shape = str(raw.dtype), raw.shape
    else:
        images = dataset_images(trainer, data_name, split)
        dtype, input_shape = "uint8", images.shape
    result = compress(trainer, images, "set" if as_set else "ordered", input_dtype=dtype,
                      input_shape=tuple(input_shape))
    atomic_write_bytes(target, result.data)
    summary = {"images": len(images), "bytes": len(result.data),
               "bits_per_image": result.bits_per_image,
               "model_nats_per_image": result.model_nats_per_image,
               "overhead_percent": result.overhead_percent, "mode": result.header["mode"]}
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"wrote {target}: {summary['images']} images in {summary['bytes']} bytes, "
               f"{summary['bits_per_image']:.1f} bits per image ({summary['mode']} mode; the "
               f"model's figure {result.model_bits_per_image:.1f} bits, overhead "
               f"{summary['overhead_percent']:+.2f} %)")


@main.command("decompress")
@click.argument("file", type=click.Path())
@click.option("--run", "run_dir", required=True, help="The run folder the file was made with.")
@click.option("-o", "--output", required=True, help="The .npy array to write.")
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
def decompress_cmd(file: str, run_dir: str, output: str, overwrite: bool) -> None:
    """Decode a file of `acnkit compress` into the .npy array it was made from (in set mode:
    the same images in some order). Nothing is written unless it decodes exactly."""
    from .atomic import atomic_write_bytes, check_target
    from .codec import decompress, npy_bytes, read_file, read_header
    from .runs import load_trainer

    target = check_target(output, overwrite, "--output")
    data = read_file(file)
    read_header(data, file)  # a bad file is refused before the model is loaded
    trainer = load_trainer(run_dir, "cpu")
    images = decompress(trainer, data, file, warn=lambda m: click.echo(m, err=True))
    atomic_write_bytes(target, npy_bytes(images))
    click.echo(f"wrote {target}: {len(images)} images of shape {tuple(images.shape[1:])}")


@main.command("eval")
@click.argument("run_dir", type=click.Path())
@click.option("--samples", default=0, show_default=True,
              help="Importance samples for the NLL bound (0: skip it).")
@click.option("--knn", default=5, show_default=True, help="k of the k-NN classifier on codes.")
@click.option("--with-train", is_flag=True,
              help="Also the code length of training and test images together (train_test_*; "
                   "ACN: one chain over both).")
@click.option("--mixture", is_flag=True,
              help="ACN: also the cost under the uniform mixture of the prior over all "
                   "training codes (decodable by a receiver holding the training set).")
@click.option("--device", default=None, help="Evaluate on this device (default: the run's).")
@click.option("--data-dir", default=None,
              help="Folder of the run's IDX files, if they moved since it was trained.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_cmd(run_dir: str, samples: int, knn: int, with_train: bool, mixture: bool,
             device: str | None, data_dir: str | None, as_json: bool) -> None:
    """Held-out code lengths in ordered and set mode (ACN: along the greedy chain; the
    optimistic nearest-training figure under its own name), bits/dim, k-NN accuracy of
    codes, importance-sampled NLL."""
    from .evaluate import evaluate_run

    if samples < 0 or knn < 1:
        raise click.UsageError("--samples must be >= 0 and --knn >= 1")
    result = evaluate_run(run_dir, samples=samples, knn=knn, device=device,
                          with_train=with_train, mixture=mixture, data_dir=data_dir)
    if as_json:
        click.echo(json.dumps(result))
        return
    for key, value in result.items():
        click.echo(f"{key:>32}: {value:.4f}" if isinstance(value, float) else f"{key:>32}: {value}")


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--seeds", default=8, show_default=True, help="Chains (rows), seeded by test images.")
@click.option("--steps", default=10, show_default=True, help="Dream steps per chain.")
@click.option("--seed", default=0, show_default=True, help="Seed of the chains' sampling.")
@click.option("--out", default="daydream.png", show_default=True, help="PNG file to write.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--device", default=None, help="Run on this device (default: the run's).")
def daydream(run_dir: str, seeds: int, steps: int, seed: int, out: str, overwrite: bool,
             device: str | None) -> None:
    """Encode, sample the prior given the code, decode, repeat: a PNG grid, a row per chain."""
    from .atomic import check_target
    from .daydream import MAX_SEEDS, MAX_STEPS, write_daydream
    from .runs import load_trainer

    if not 1 <= seeds <= MAX_SEEDS or not 1 <= steps <= MAX_STEPS:
        raise click.UsageError(f"--seeds must be 1-{MAX_SEEDS} and --steps 1-{MAX_STEPS} "
                               f"(a grid larger than that is not readable)")
    check_target(out, overwrite, "--out")
    trainer = load_trainer(run_dir, device)
    write_daydream(trainer, out, seeds, steps, seed)
    click.echo(f"wrote {out}")


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--n", default=40, show_default=True, help="Images to draw (10 a row).")
@click.option("--seed", default=0, show_default=True, help="Seed of the sampling.")
@click.option("--out", default="samples.png", show_default=True, help="PNG file to write.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--device", default=None, help="Run on this device (default: the run's).")
def sample(run_dir: str, n: int, seed: int, out: str, overwrite: bool,
           device: str | None) -> None:
    """Draw z from an unconditional prior (a VAE's) and decode it: a PNG grid of samples
    (an autoregressive decoder draws them pixel by pixel). ACN's samples: daydream."""
    from .atomic import check_target
    from .daydream import MAX_SEEDS, write_samples
    from .runs import load_trainer

    if not 1 <= n <= 4 * MAX_SEEDS:
        raise click.UsageError(f"--n must be 1-{4 * MAX_SEEDS}")
    check_target(out, overwrite, "--out")
    trainer = load_trainer(run_dir, device)
    write_samples(trainer, out, n, seed)
    click.echo(f"wrote {out}")
