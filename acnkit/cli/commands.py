"""The ``acnkit`` command line: its commands, their options, and errors as one line.

The commands only read options and files and call the library; what they print is drawn by
:mod:`acnkit.display`, and the ``bench`` commands live in :mod:`acnkit.cli.bench`."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..errors import Interrupted
from ..registry import KINDS, get_registry
from ..version import __version__
from .bench import bench
from .group import AcnkitGroup
from .options import (
    build_config,
    codes_every_option,
    json_option,
    quiet_option,
    run_options,
    threads_option,
    without_nproc,
)


@click.group(cls=AcnkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="acnkit")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Associative Compression Networks and VAEs: train, compare, evaluate, daydream."""
    ctx.ensure_object(dict)["debug"] = debug


@main.command()
@run_options
@click.option("--out", type=click.Path(file_okay=True), default="runs/latest", show_default=True,
              help="Run folder: config.json, metrics.jsonl, checkpoint.pt.")
@click.option("--resume", "resume_dir", type=click.Path(), default=None,
              help="Continue the run in this folder (up to --epochs in all).")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out.")
@json_option(help="Print the last epoch's metrics as JSON.")
@click.option("--tensorboard", is_flag=True,
              help="Write TensorBoard event files into OUT/tensorboard/: every figure per "
                   "epoch, pictures, the config as HParams, the test codes in the projector "
                   "(pip install 'acnkit[tensorboard]').")
@codes_every_option
@click.option("--nproc", default=1, show_default=True,
              help="Processes to train with (torch.distributed; gloo on CPU, nccl on CUDA).")
@click.pass_context
@quiet_option
def run(ctx: click.Context, out: str, resume_dir: str | None, overwrite: bool, as_json: bool,
        tensorboard: bool, codes_every: int, nproc: int, **params: Any) -> None:
    """Train one model (ACN by default) and test it after every epoch.

    Under torchrun (torchrun --nproc_per_node N -m acnkit run ...) or with --nproc N it
    trains with one process per share of each batch; only rank 0 writes files."""
    from .. import runs
    from ..distributed import shutdown

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
    events = None
    if tensorboard:
        from ..rundir import TENSORBOARD
        from ..tensorboard_log import Events, require_tensorboard

        require_tensorboard()
        events = Events(Path(resume_dir or out) / TENSORBOARD, codes_every)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        # Usage errors are found here, once, before any process starts.
        if config.unique:
            raise click.UsageError("--unique is not supported with several processes yet; "
                                   "drop it or train in one process")
        if not resume_dir:
            runs.check_new(config, out, overwrite)
        from ..launch import launch

        ctx.exit(launch(nproc, without_nproc(sys.argv[1:])))

    ok = False
    try:
        if resume_dir:
            epochs = overrides.pop("epochs", None)
            trainer = runs.resume(resume_dir, epochs=epochs, overrides=overrides,
                                  notify=lambda m: click.echo(m, err=True), tensorboard=events)
        else:
            trainer = runs.start(config, out, overwrite=overwrite, tensorboard=events)
        ok = True
    except Interrupted as exc:
        ok = True  # every rank stopped at the same batch
        click.echo(str(exc), err=True)
        ctx.exit(exc.exit_code)
    finally:
        shutdown(clean=ok)
    if trainer.history and trainer.dist.is_main:
        if as_json:
            click.echo(json.dumps(trainer.history[-1]))
        else:  # one line, --quiet or not: the result and where it is
            from ..display import run_summary

            click.echo(run_summary(resume_dir or out, trainer.history[-1]))


@main.command()
@json_option(help="Print the plugins as JSON.")
def plugins(as_json: bool) -> None:
    """List installed plugins and the components each registers."""
    from ..display import print_plugins

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
    print_plugins(rows)


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
@json_option(help="Print the final epoch of each prior.")
@click.option("--tensorboard", is_flag=True,
              help="Write TensorBoard event files into OUT/tensorboard/<prior>/ (overlaid): "
                   "every figure per epoch, pictures, the config as HParams, the test codes "
                   "in the projector (pip install 'acnkit[tensorboard]').")
@codes_every_option
@click.option("--runs", "run_dirs", multiple=True, type=click.Path(),
              help="Train nothing: tabulate and plot these run folders (trained apart with "
                   "acnkit run, or still training) into --out; give it once a run.")
@click.pass_context
@quiet_option
def compare(ctx: click.Context, priors: str, out: str, overwrite: bool, resume: bool,
            as_json: bool, tensorboard: bool, codes_every: int, run_dirs: tuple[str, ...],
            **params: Any) -> None:
    """Train VAE and ACN side by side and report nats per epoch for both (or, with --runs,
    set runs trained apart side by side)."""
    from ..compare import compare_runs, read_plan, run_compare
    from ..display import print_compare

    if run_dirs:
        given = sorted(f"--{k.replace('_', '-')}" for k in ctx.params
                       if k not in ("run_dirs", "out", "overwrite", "as_json", "quiet")
                       and ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE)
        if given:
            raise click.UsageError(f"--runs sets runs already trained side by side and trains "
                                   f"nothing; drop {', '.join(given)}")
        histories, data = compare_runs(list(run_dirs), out, overwrite)
        if as_json:
            click.echo(json.dumps({p: h[-1] for p, h in histories.items()}))
            return
        print_compare(histories, data, Path(out))
        return
    if ctx.get_parameter_source("prior") == ParameterSource.COMMANDLINE:
        raise click.UsageError(f"compare trains the priors of --priors (a comma list), not "
                               f"--prior: did you mean --priors {params['prior']}?")
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
        events = None
        if tensorboard:
            from ..rundir import TENSORBOARD
            from ..tensorboard_log import Events

            events = Events(Path(out) / TENSORBOARD, codes_every)
        histories = run_compare(config, names, out, overwrite, resume=resume,
                                epochs=explicit.get("epochs"), tensorboard=events)
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        ctx.exit(exc.exit_code)
    if resume:
        config = read_plan(Path(out))[0]
    if as_json:
        click.echo(json.dumps({p: h[-1] for p, h in histories.items()}))
        return
    print_compare(histories, config.data, Path(out))


@main.command("compress")
@click.argument("paths", nargs=-1, type=click.Path(), metavar="[RUN] INPUTS...")
@click.option("--model", "model_name", default=None,
              help="Code with a model acnkit ships (`acnkit models`) or a model folder, "
                   "instead of a RUN folder: then every path is an input.")
@click.option("--data", "data_name", default=None,
              help="Compress this data set as the run reads it (its --pixels; binarised "
                   "with its --data-seed).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which split of --data.")
@click.option("--input", "input_path", default=None,
              help="A .npy array of images of the run's levels (0/1 or bools for a binary "
                   "run, 0..255 for an 8-bit one): N x C x H x W, N x H x W, N x H x W x C "
                   "or N x D; - reads standard input.")
@click.option("--threshold", type=float, default=None,
              help="A binary run's image files with grey levels or colour: a pixel is 1 where "
                   "its grey level is >= T (without it only 1-bit or 0/255 images are "
                   "taken). An 8-bit run codes the files' own levels.")
@click.option("-o", "--output", required=True, help="The compressed file to write.")
@click.option("--set", "as_set", is_flag=True,
              help="Keep the images, not their order (saves up to log(N!)/N nats per image; "
                   "image files' names are not kept).")
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
@click.option("--lanes", default=None, type=click.IntRange(min=1),
              help="Chains coded in lockstep, each network call serving all (default: as "
                   "many as keep their initial words under 0.5 % of the file).")
@json_option(help="Print the sizes as JSON.")
@quiet_option
def compress_cmd(paths: tuple[str, ...], model_name: str | None, data_name: str | None,
                 split: str, input_path: str | None, threshold: float | None, output: str,
                 as_set: bool, overwrite: bool, lanes: int | None, as_json: bool) -> None:
    """Bits-back ANS coding of images with a trained VAE or ACN run (ACN along its greedy
    chain), at the run's levels (black and white, or 8-bit grey or colour): image files or
    folders of them (PNG, PBM, PGM, PPM, TIFF; a file that could not come back pixel for
    pixel in its own mode is refused), a .npy array (--input) or a data set (--data). The
    file decodes bit-exactly with `acnkit decompress`. The coder's networks run in one
    thread (sender and receiver must round alike), whatever --threads elsewhere; the
    model's figure, only reported, is computed in a second thread beside it. RUN is a run
    folder; with --model a shipped model (or a model folder) codes instead."""
    from ..atomic import atomic_write_bytes, check_target
    from ..codec import check_codable, compress
    from ..codec.fileformat import level_bits
    from ..files import check_threshold

    if model_name is None and not paths:
        raise click.UsageError("give the RUN folder to code with (or --model NAME) and the "
                               "images")
    run_dir, inputs = (None, paths) if model_name is not None else (paths[0], paths[1:])
    if sum((data_name is not None, input_path is not None, bool(inputs))) != 1:
        raise click.UsageError("give exactly one of image files or folders, --data NAME and "
                               "--input FILE.npy")
    check_threshold(threshold)
    target = check_target(output, overwrite, "--output")
    run = _coding_model(run_dir, model_name)
    check_codable(run.model)  # before any input is read: an 8-bit run is refused as such
    images, dtype, input_shape, names, modes, tiles = _compress_input(
        run, inputs, data_name, split, input_path, threshold)
    mode = "set" if as_set else "ordered"
    result = compress(run.model, images, mode, input_dtype=dtype,
                      input_shape=tuple(input_shape), names=names, lanes=lanes, modes=modes,
                      note=lambda line: click.echo(line, err=True), tiles=tiles)
    atomic_write_bytes(target, result.data)
    count = len(tiles) if tiles else len(images)
    # the subpixels the file holds: a grey photo's tiles in a colour model's file are
    # coded, and counted, by their one channel
    channels = run.model.image_shape[0] if len(run.model.image_shape) == 3 else 1
    subpixels = (sum(h * w * (1 if mode in ("1", "L") else channels)
                     for (h, w), mode in zip(tiles, modes or ["RGB"] * count, strict=True))
                 if tiles else len(images) * math.prod(run.model.image_shape))
    bits = 8 * len(result.data)
    figure = result.model_nats_per_image
    summary = {"images": count, "bytes": len(result.data), "bits_per_image": bits / count,
               "model_nats_per_image": None if math.isnan(figure) else figure,
               "overhead_percent": None if math.isnan(figure) else result.overhead_percent,
               "mode": result.header["mode"], "names_kept": bool(result.header["names"]),
               "lanes": len(result.header["lane_words"]),
               "stored": bool(result.header.get("stored")),
               "tiles": len(images) if tiles else None, "bits_per_dim": bits / subpixels}
    if as_json:
        click.echo(json.dumps(summary))
        return
    per_dim = (f" ({summary['bits_per_dim']:.3f} bits/dim)" if run.model.levels > 2 else "")
    if summary["stored"]:
        level = level_bits(run.model.levels)
        click.echo(f"wrote {target}: {summary['images']} images in {summary['bytes']} bytes, "
                   f"{summary['bits_per_image']:.1f} bits per image{per_dim}, stored plainly "
                   f"({level} bit{'s' * (level > 1)} a subpixel): the model's file would have "
                   f"been larger (its figure {result.model_bits_per_image:.1f} bits an image, "
                   f"plus its fixed bytes)")
    elif tiles:
        shape = "x".join(map(str, run.model.image_shape[1:]))
        figure_text = ("its tiles at the edges are partial, so the model's figure of whole "
                       "tiles does not apply" if summary["overhead_percent"] is None else
                       f"the model's figure {result.model_bits_per_image:.1f} bits a tile, "
                       f"overhead {summary['overhead_percent']:+.2f} %")
        click.echo(f"wrote {target}: {count} images as {len(images)} tiles of {shape} in "
                   f"{summary['bytes']} bytes{per_dim} ({figure_text}; {summary['lanes']} "
                   f"lanes)")
    else:
        click.echo(f"wrote {target}: {summary['images']} images in {summary['bytes']} bytes, "
                   f"{summary['bits_per_image']:.1f} bits per image{per_dim} ({summary['mode']} mode; the "
                   f"model's figure {result.model_bits_per_image:.1f} bits, overhead "
                   f"{summary['overhead_percent']:+.2f} %; {summary['lanes']} lanes)")
    if names and as_set:
        click.echo("set mode keeps the images, not their names: decompress names them "
                   "image-00000.png, ...")


def _coding_model(run_dir: str | None, model_name: str | None) -> Any:
    """The run, or the shipped model, a file is coded with (both have .model and .config)."""
    if model_name is not None:
        from ..shipped import load_model

        return load_model(model_name)
    from ..trained import load_run

    assert run_dir is not None  # one of the two, checked by the command
    return load_run(run_dir, "cpu")


def _shipped_model_of(file: str, header: dict[str, Any]) -> str:
    """The shipped model whose fingerprint the file records, or a line saying to give --run."""
    from ..shipped import by_fingerprint

    name = by_fingerprint(str(header.get("model", "")))
    if name is None:
        raise click.UsageError(f"{file} was made with a model acnkit does not ship (its "
                               f"fingerprint begins {header.get('model', '')!s:.16}); give "
                               f"--run RUN, the run folder it was made with, or --model FOLDER")
    return name


def _compress_input(run: Any, inputs: tuple[str, ...], data_name: str | None, split: str,
                    input_path: str | None, threshold: float | None) -> tuple[Any, ...]:
    """The images to compress, the dtype and shape to restore, and their names (files)."""
    from ..codec import as_images
    from ..files import dataset_images, load_images, read_images

    shape = run.model.image_shape
    if inputs:
        read, names, modes = read_images(list(inputs), shape, run.model.levels, threshold,
                                         any_size=len(shape) == 3)
        if isinstance(read, list):  # images of other sizes: coded as tiles of the model's
            from ..codec.tiles import cut_all

            tiles, _, sizes = cut_all(read, tuple(shape[1:]))
            return tiles, "uint8", tiles.shape, names, modes, sizes
        return read, "uint8", read.shape, names, modes, None
    if input_path is not None:
        raw = load_images(input_path)
        return (as_images(raw, shape, run.model.levels, f"--input {input_path}"),
                str(raw.dtype), raw.shape, None, None, None)
    assert data_name is not None  # exactly one input, checked by the command
    images = dataset_images(run, data_name, split)
    return images, "uint8", images.shape, None, None, None


# the subcommand is optional (alone, `acnkit models` lists): said so in the usage line,
# which click writes so itself only from 8.5 (docs/cli.md is compared with --help)
@main.group("models", invoke_without_command=True, subcommand_metavar="[COMMAND] [ARGS]...")
@json_option(help="Print each model's model.json as JSON.")
@click.pass_context
def models_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the trained models acnkit ships: `acnkit compress --model NAME` codes with one
    without a run folder, and `acnkit decompress` finds it from the file."""
    if ctx.invoked_subcommand is not None:
        return
    from ..display import print_models
    from ..shipped import shipped

    found = shipped()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    print_models(found)


@models_cmd.command("export")
@click.argument("run_dir", type=click.Path())
@click.argument("name")
@click.option("--to", "out", default=None, type=click.Path(),
              help="The model folder to write (default: models/NAME here).")
@click.option("--made-by", default="", help="How the run was made (its command), kept in "
                                             "model.json.")
@click.option("--overwrite", is_flag=True, help="Replace the model already in the folder.")
def models_export_cmd(run_dir: str, name: str, out: str | None, made_by: str,
                      overwrite: bool) -> None:
    """Write the networks of the run in RUN_DIR as model NAME: one small file without the
    optimiser's state, the code store or the data, with the run's fingerprint (its files
    decode with the model, and the model's with the run)."""
    from ..shipped import MODEL_FILE, check_name, export

    target = Path(out) if out is not None else Path("models") / check_name(name)
    info = export(run_dir, name, target, made_by, overwrite)
    size = (target / MODEL_FILE).stat().st_size
    click.echo(f"wrote {target}: model {name!r}, {info['parameters']:,} parameters, "
               f"{size / 1e6:.1f} MB")


@main.command("decompress")
@click.argument("file", type=click.Path(allow_dash=True))
@click.option("--run", "run_dir", default=None,
              help="The run folder the file was made with (not needed for a shipped model's "
                   "file: its fingerprint finds it).")
@click.option("--model", "model_name", default=None,
              help="The shipped model (or model folder) the file was made with.")
@click.option("-o", "--output", required=True,
              help="The .npy array to write, or a folder (ending in /, or existing) for one "
                   "image file per image, under its kept name.")
@click.option("--overwrite", is_flag=True, help="Replace --output (or files in it) if it exists.")
@quiet_option
def decompress_cmd(file: str, run_dir: str | None, model_name: str | None, output: str,
                   overwrite: bool) -> None:
    """Decode a file of `acnkit compress` into the .npy array it was made from, or into a
    folder of image files (in set mode: the same images in some order). Nothing is written
    unless it decodes exactly."""
    import numpy as np

    from ..atomic import atomic_write, check_target
    from ..codec import as_images, decompress, read_header
    from ..files import check_image_targets, read_file, write_images

    if run_dir is not None and model_name is not None:
        raise click.UsageError("give --run or --model, not both")
    to_folder = output.endswith("/") or Path(output).is_dir()
    target = Path(output) if to_folder else check_target(output, overwrite, "--output")
    data = read_file(file)
    header, _ = read_header(data, file)  # a bad file is refused before the model is loaded
    tiled = header.get("tiles") or []
    if tiled and not to_folder:
        raise click.UsageError(f"{file} holds images of their own sizes, coded as tiles; "
                               f"give -o a folder (ending in /) for their image files")
    if to_folder:  # and a folder that cannot take its images before any decoding
        check_image_targets(target, header["names"], len(tiled) or header["count"], overwrite)
    if run_dir is None and model_name is None:
        model_name = _shipped_model_of(file, header)
    model = _coding_model(run_dir, model_name).model
    images = decompress(model, data, file, warn=lambda m: click.echo(m, err=True))
    if to_folder:
        from ..codec.tiles import join

        whole = join(images, tiled) if tiled else as_images(images, model.image_shape,
                                                             model.levels, file)
        written = write_images(target, whole, header["names"], overwrite, model.levels,
                               header["modes"])
        kept = "under their names" if header["names"] else "named by position (no names kept)"
        click.echo(f"wrote {len(written)} images to {target} {kept}")
        return
    atomic_write(target, lambda f: np.save(f, images, allow_pickle=False))  # no copy
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
@json_option(help="Print JSON.")
@threads_option
@quiet_option
def eval_cmd(run_dir: str, samples: int, knn: int, with_train: bool, mixture: bool,
             device: str | None, data_dir: str | None, threads: int | None,
             as_json: bool) -> None:
    """Held-out code lengths in ordered and set mode (ACN: along the greedy chain; the
    optimistic nearest-training figure under its own name), bits/dim, k-NN accuracy of
    codes, importance-sampled NLL."""
    from ..evaluate import evaluate_run

    if samples < 0 or knn < 1:
        raise click.UsageError("--samples must be >= 0 and --knn >= 1")
    result = evaluate_run(run_dir, samples=samples, knn=knn, device=device,
                          with_train=with_train, mixture=mixture, data_dir=data_dir,
                          threads=threads)
    if samples > 0:  # the bound beside the run's curves, when it has event files
        from ..rundir import TENSORBOARD
        from ..tensorboard_log import add_evaluation

        folder = Path(run_dir)  # its own events, or a comparison's (OUT/tensorboard/<prior>)
        for events in (folder / TENSORBOARD, folder.parent / TENSORBOARD / folder.name):
            if add_evaluation(events, result["epoch"], result):
                break
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
@threads_option
@quiet_option
def daydream(run_dir: str, seeds: int, steps: int, seed: int, out: str, overwrite: bool,
             device: str | None, threads: int | None) -> None:
    """Encode, sample the prior given the code, decode, repeat: a PNG grid, a row per chain."""
    from ..atomic import check_target
    from ..daydream import write_daydream
    from ..sampling import MAX_SEEDS, MAX_STEPS
    from ..trained import load_run

    if not 1 <= seeds <= MAX_SEEDS or not 1 <= steps <= MAX_STEPS:
        raise click.UsageError(f"--seeds must be 1-{MAX_SEEDS} and --steps 1-{MAX_STEPS} "
                               f"(a grid larger than that is not readable)")
    check_target(out, overwrite, "--out")
    run = load_run(run_dir, device, thread_count=threads)
    write_daydream(run.model, run.data.test_x, out, seeds, steps, seed, run.data.test_y,
                   run.epoch)
    click.echo(f"wrote {out}")


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--n", default=40, show_default=True, help="Images to draw (10 a row).")
@click.option("--seed", default=0, show_default=True, help="Seed of the sampling.")
@click.option("--out", default="samples.png", show_default=True, help="PNG file to write.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--device", default=None, help="Run on this device (default: the run's).")
@threads_option
@quiet_option
def sample(run_dir: str, n: int, seed: int, out: str, overwrite: bool,
           device: str | None, threads: int | None) -> None:
    """Draw z from an unconditional prior (a VAE's) and decode it: a PNG grid of samples
    (an autoregressive decoder draws them pixel by pixel). ACN's samples: daydream."""
    from ..atomic import check_target
    from ..sampling import MAX_SEEDS, write_samples
    from ..trained import load_run

    if not 1 <= n <= 4 * MAX_SEEDS:
        raise click.UsageError(f"--n must be 1-{4 * MAX_SEEDS}")
    check_target(out, overwrite, "--out")
    write_samples(load_run(run_dir, device, thread_count=threads).model, out, n, seed)
    click.echo(f"wrote {out}")


main.add_command(bench)
