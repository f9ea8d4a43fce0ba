"""The options every training command takes (``run``, ``compare``), and how they become a
:class:`~acnkit.config.RunConfig`: a config file's values, then what the user typed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click
from click.core import ParameterSource

from .. import progress
from ..config import RunConfig, tomllib

_D = RunConfig()

#: CLI option -> (click option declaration kwargs)
RUN_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--prior", {"default": _D.prior, "help": "Prior: acn (neighbour-conditioned) or vae."}),
    ("--search", {"default": _D.search, "help": "Neighbour searcher (torch, sklearn, annoy, ...)."}),
    ("--data", {"default": _D.data,
                "help": "Data set: digits (embedded), mnist, fashion-mnist, cifar10, images, "
                        "sample-patches (embedded colour)."}),
    ("--data-dir", {"default": None,
                    "help": "Folder of the data: IDX files (mnist-like), CIFAR-10 .bin "
                            "batches, or image files (--data images)."}),
    ("--encoder", {"default": _D.encoder, "help": "Encoder plugin."}),
    ("--decoder", {"default": _D.decoder, "help": "Decoder plugin."}),
    ("--loss", {"default": None, "help": "Reconstruction likelihood plugin (default: bernoulli "
                                         "for --pixels binary, logistic for native)."}),
    ("--pixels", {"default": _D.pixels, "type": click.Choice(["binary", "native"]),
                  "help": "binary: sample 0/1 pixels from the grey levels (--data-seed); "
                          "native: the data's own levels (8-bit grey or colour)."}),
    ("--crop", {"default": None, "metavar": "HxW",
                "help": "--data images: crop every image to its centre HxW."}),
    ("--patches", {"default": None, "metavar": "HxW",
                   "help": "--data images: train on HxW patches drawn at random from photos "
                           "of any size each epoch (as many as they hold whole tiles, flipped "
                           "at random); test on the held-out photos' whole tiles."}),
    ("--augment", {"default": "flip", "metavar": "LIST",
                   "help": "--patches: flip (left to right at random), permute (a colour "
                           "patch's channels in a random order), grey (a quarter of the "
                           "colour patches made grey, as Pillow makes RGB grey), comma-"
                           "separated, or none."}),
    ("--init", {"default": None, "metavar": "MODEL",
                "help": "Start from the weights of a shipped model (see `acnkit models`) or "
                        "a model folder, to fine-tune it on your own data; the options must "
                        "describe the same networks."}),
    ("--epochs", {"default": _D.epochs, "type": int, "help": "Epochs in all."}),
    ("--batch-size", {"default": _D.batch_size, "type": int, "help": "Minibatch size."}),
    ("--latent-dim", {"default": _D.latent_dim, "type": int, "help": "Latent dimensions d."}),
    ("--k", {"default": _D.k, "type": int, "help": "Neighbours to pick the prior's code from."}),
    ("--lr", {"default": _D.lr, "type": float, "help": "Adam learning rate."}),
    ("--seed", {"default": _D.seed, "type": int, "help": "Seed of initialisation, order, noise."}),
    ("--data-seed", {"default": _D.data_seed, "type": int,
                     "help": "Seed of the pixel binarization (fixes the test images)."}),
    ("--device", {"default": _D.device, "help": "cpu or cuda[:N]."}),
    ("--threads", {"default": None, "type": int,
                   "help": "torch's threads (default: the cores no other process is running "
                           "on now; ACNKIT_THREADS=N sets it for every command)."}),
    ("--posterior", {"default": _D.posterior, "type": click.Choice(["unit", "learned"]),
                     "help": "Posterior variance: unit (paper) or learned (blog)."}),
    ("--encoder-hidden", {"default": None,
                          "help": "Encoder hidden sizes, e.g. 512-256 (default: the encoder's own)."}),
    ("--decoder-hidden", {"default": None, "help": "Decoder hidden sizes (default: the decoder's own)."}),
    ("--channels", {"default": None,
                    "help": "Conv encoder/decoder channels per stage, e.g. 64-128 (default 32-64)."}),
    ("--decoder-option", {"multiple": True, "metavar": "KEY=VALUE",
                          "help": "An option of the decoder's factory, e.g. layers=8 for "
                                  "pixelcnn (repeatable; a config file's [decoder_options])."}),
    ("--prior-hidden", {"default": None, "type": int,
                        "help": "Prior units per layer (default: the prior's own; acn: 512)."}),
    ("--prior-layers", {"default": None, "type": int,
                        "help": "Prior hidden layers (default: the prior's own; acn: 3)."}),
    ("--mixtures", {"default": _D.mixtures, "type": int,
                    "help": "Gaussians per latent dimension of the prior (acn default 1: closed-form KL)."}),
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


def _silence(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:  # for as long as the command runs: tests invoke many in one process
        ctx.with_resource(progress.quiet())
    return value


def json_option(help: str) -> Callable:
    """``--json``: the command prints JSON on stdout and no progress on stderr."""
    return click.option("--json", "as_json", is_flag=True, callback=_silence, help=help)


def codes_every_option(fn: Callable) -> Callable:
    """``--tensorboard-codes-every N``: the test codes in the projector every N epochs."""
    def check(ctx: click.Context, param: click.Parameter, value: int) -> int:
        if value < 0:
            raise click.BadParameter("must be >= 0 (0: at the last epoch only)")
        return value

    return click.option("--tensorboard-codes-every", "codes_every", type=int, default=0,
                        show_default=True, callback=check,
                        help="With --tensorboard: the test codes in the projector every N "
                             "epochs too (0: at the last epoch only).")(fn)


def threads_option(fn: Callable) -> Callable:
    """``--threads N`` of a command that computes outside training (eval, daydream,
    sample): the command passes it to :func:`acnkit.load_run`, which applies it as a run
    applies its own (:func:`acnkit.threads.apply`)."""
    def check(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        if value is not None and value < 1:
            from ..errors import UsageError

            raise UsageError(f"--threads must be >= 1, got {value}")
        return value

    return click.option("--threads", type=int, default=None, callback=check,
                        help="torch's threads (default: the cores no other process is "
                             "running on now; ACNKIT_THREADS=N sets it).")(fn)


def quiet_option(fn: Callable) -> Callable:
    """``--quiet``: no progress bars, no progress or epoch lines; results and errors print."""
    return click.option("--quiet", "-q", is_flag=True, callback=_silence, expose_value=False,
                        help="Print no progress (results and errors still print).")(fn)
