"""The ``acnkit`` command line: a thin layer over :mod:`acnkit.runs` and the engine."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
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

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AcnkitError as exc:
            self._fail(ctx, f"error: {exc}", exc.exit_code)
        except KeyboardInterrupt:
            self._fail(ctx, "interrupted", 130)

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int) -> None:
        if ctx.obj and ctx.obj.get("debug"):
            traceback.print_exc()
        click.echo(message, err=True)
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
]
SEARCH_OPTION_KEYS = ("trees", "search_k")


def run_options(fn: Callable) -> Callable:
    for decl, kwargs in reversed(RUN_OPTIONS):
        fn = click.option(decl, **kwargs)(fn)
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False),
                      help="TOML file of options; options given on the command line win.")(fn)
    return fn


def build_config(ctx: click.Context, params: dict[str, Any]) -> tuple[RunConfig, dict[str, Any]]:
    """The run's config, and the options the user gave explicitly (they override a file)."""
    explicit = {}
    for name, value in params.items():
        source = ctx.get_parameter_source(name)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            explicit[name] = value
    fields = {f: v for f, v in params.items() if f in RunConfig.__dataclass_fields__}
    search_options = {k: params[k] for k in SEARCH_OPTION_KEYS if params.get(k) is not None}
    if params.get("config_file"):
        file_cfg = RunConfig.from_toml(params["config_file"])
        values = file_cfg.to_dict()
        values.update({k: v for k, v in explicit.items() if k in RunConfig.__dataclass_fields__})
        values["search_options"] = {**file_cfg.search_options, **search_options}
        config = RunConfig.from_dict(values)
    else:
        config = RunConfig(**fields, search_options=search_options)
    overrides = {k: v for k, v in explicit.items() if k in RunConfig.__dataclass_fields__}
    if search_options:
        overrides["search_options"] = search_options
    return config.validate(), overrides


@main.command()
@run_options
@click.option("--out", type=click.Path(file_okay=True), default="runs/latest", show_default=True,
              help="Run folder: config.json, metrics.jsonl, checkpoint.pt.")
@click.option("--resume", "resume_dir", type=click.Path(), default=None,
              help="Continue the run in this folder (up to --epochs in all).")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the last epoch's metrics as JSON.")
@click.pass_context
def run(ctx: click.Context, out: str, resume_dir: str | None, overwrite: bool, as_json: bool,
        **params: Any) -> None:
    """Train one model (ACN by default) and test it after every epoch."""
    from . import runs

    config, overrides = build_config(ctx, params)
    try:
        if resume_dir:
            epochs = overrides.pop("epochs", None)
            trainer = runs.resume(resume_dir, epochs=epochs, overrides=overrides)
        else:
            trainer = runs.start(config, out, overwrite=overwrite)
    except runs.Interrupted as exc:
        click.echo(str(exc), err=True)
        ctx.exit(130)
    if as_json and trainer.history:
        click.echo(json.dumps(trainer.history[-1]))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the plugins as JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins and the components each registers."""
    from rich.console import Console
    from rich.table import Table

    reg = get_registry()
    reg.add_commands(main) if not getattr(main, "_plugin_commands_added", False) else None
    rows = []
    for info in sorted(reg.plugins.values(), key=lambda p: p.name):
        rows.append({"name": info.name, "distribution": info.distribution,
                     "version": info.version, "registers": info.registers,
                     "commands": info.commands, "error": info.error})
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
            parts.append(f"[red]failed to load: {r['error']}[/red]")
        table.add_row(r["name"], f"{r['distribution']} {r['version']}", "\n".join(parts))
    Console().print(table)
