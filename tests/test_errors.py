"""The catalogue of bad inputs: each gives one line on stderr, exit code 2 (usage) or 1
(runtime), no traceback, and leaves what was already written untouched."""

import gzip
import json
import os
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SMALL

from acnkit.cli import main


def idx(array, dtype_code=0x08):
    head = struct.pack(">BBBB", 0, 0, dtype_code, array.ndim)
    return head + b"".join(struct.pack(">I", s) for s in array.shape) + array.tobytes()


def write_idx_dir(d, images=5, labels=5, mutate=None):
    d.mkdir(exist_ok=True)
    files = {}
    for split in ("train", "t10k"):
        files[f"{split}-images-idx3-ubyte"] = idx(np.zeros((images, 28, 28), np.uint8))
        files[f"{split}-labels-idx1-ubyte"] = idx(np.zeros((labels,), np.uint8))
    if mutate:
        files = mutate(files)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    r = CliRunner().invoke(main, ["run", *SMALL, "--epochs", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def cases(tmp, done):
    """(arguments, exit code, words the message must hold)"""
    bad_magic = write_idx_dir(tmp / "magic", mutate=lambda f: {
        **f, "train-images-idx3-ubyte": b"\x12\x34" + f["train-images-idx3-ubyte"][2:]})
    truncated = write_idx_dir(tmp / "trunc", mutate=lambda f: {
        **f, "train-images-idx3-ubyte": f["train-images-idx3-ubyte"][:-10]})
    mismatch = write_idx_dir(tmp / "count", images=5, labels=4)
    empty = write_idx_dir(tmp / "empty", images=0, labels=0)

    def fake_gz(f):
        f = dict(f)
        f["train-images-idx3-ubyte.gz"] = f.pop("train-images-idx3-ubyte")
        return f
    not_gz = write_idx_dir(tmp / "notgz", mutate=fake_gz)
    damaged = write_idx_dir(tmp / "damaged", mutate=lambda f: {
        **{k: v for k, v in f.items() if k != "train-images-idx3-ubyte"},
        "train-images-idx3-ubyte.gz": gzip.compress(f["train-images-idx3-ubyte"])[:-20]})
    a_file = tmp / "a_file"
    a_file.write_text("x")
    other = tmp / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    no_ckpt = tmp / "no_ckpt"
    no_ckpt.mkdir()
    bad_toml = tmp / "bad.toml"
    bad_toml.write_text("epochs = [")
    fifo_toml = tmp / "fifo.toml"
    os.mkfifo(fifo_toml)  # would block a plain read for ever
    huge_toml = tmp / "huge.toml"
    huge_toml.write_text("# " + "x" * (1 << 20) + "\nepochs = 1\n")
    binary_toml = tmp / "binary.toml"
    binary_toml.write_bytes(b"epochs = \xff\xfe\n")
    unknown_key = tmp / "unknown.toml"
    unknown_key.write_text("epochz = 3\n")
    out = str(tmp / "new")
    run = ["run", *SMALL, "--out", out]
    return [
        (["run", "--prior", "nope", "--out", out], 2, "unknown prior 'nope'; registered priors"),
        (["run", "--search", "nope", "--out", out], 2, "unknown searcher 'nope'"),
        (["run", "--data", "nope", "--out", out], 2, "unknown dataset 'nope'"),
        (["run", "--encoder", "nope", "--out", out], 2, "unknown encoder 'nope'"),
        (["run", "--data", "mnist", "--out", out], 2, "needs --data-dir"),
        (["run", "--data", "mnist", "--data-dir", str(tmp / "nowhere"), "--out", out], 2,
         "is not a folder"),
        (["run", "--data", "mnist", "--data-dir", str(bad_magic), "--out", out], 2,
         "bad magic number"),
        (["run", "--data", "mnist", "--data-dir", str(truncated), "--out", out], 2, "truncated"),
        (["run", "--data", "mnist", "--data-dir", str(mismatch), "--out", out], 2,
         "5 images but 4 labels"),
        (["run", "--data", "mnist", "--data-dir", str(not_gz), "--out", out], 2,
         "named .gz but is not gzip"),
        (["run", "--data", "mnist", "--data-dir", str(damaged), "--out", out], 2,
         "damaged gzip"),
        (["run", "--data", "mnist", "--data-dir", str(empty), "--out", out], 2, "set is empty"),
        ([*run, "--k", "0"], 2, "--k must be >= 1"),
        ([*run, "--k", "300"], 2, "--k 300 must be smaller than the 300 training codes"),
        ([*run, "--epochs", "0"], 2, "--epochs must be a whole number >= 1"),
        ([*run, "--epochs", "-3"], 2, "--epochs must be a whole number >= 1"),
        ([*run, "--batch-size", "0"], 2, "--batch-size must be"),
        ([*run, "--latent-dim", "0"], 2, "--latent-dim must be"),
        ([*run, "--lr", "0"], 2, "--lr must be a positive number"),
        ([*run, "--lr", "-1"], 2, "--lr must be a positive number"),
        ([*run, "--epochs", "two"], 2, "'two' is not a valid integer"),
        ([*run, "--device", "cuda"], 2, "no CUDA GPU is available; use --device cpu"),
        ([*run, "--device", "tpu"], 2, "--device must be cpu or cuda"),
        ([*run, "--search", "annoy", "--trees", "0"], 2, "trees must be >= 1"),
        ([*run, "--mixtures", "0"], 2, "--mixtures must be"),
        ([*run, "--channels", "32-64"], 2, "encoder 'mlp' (plugin 'mlp') does not take --channels"),
        ([*run, "--encoder", "conv", "--decoder", "conv", "--channels", "32-x"], 2,
         "channels must be positive integers"),
        ([*run, "--search-k", "50"], 2,
         "searcher 'torch' (plugin 'search_torch') does not take --search-k"),
        (["run", *SMALL, "--out", str(a_file)], 2, "is a file, not a folder"),
        (["run", *SMALL, "--out", "/proc/acnkit-test/run"], 2, "is not writable"),
        (["run", *SMALL, "--out", str(done)], 2, "another run; continue it with acnkit run --resume"),
        (["run", *SMALL, "--out", str(other)], 2, "already holds other files"),
        (["run", "--resume", str(no_ckpt)], 1, "checkpoint.pt does not exist"),
        (["run", "--resume", str(tmp / "missing")], 1, "does not exist"),
        (["run", "--resume", str(corrupt)], 1, "is corrupt or not a checkpoint"),
        (["run", "--resume", str(done), "--latent-dim", "16"], 1,
         "the run was made with latent-dim=8, not 16"),
        ([*run, "--config", str(tmp / "none.toml")], 2, "cannot read config"),
        ([*run, "--config", str(bad_toml)], 2, "is not valid TOML"),
        ([*run, "--config", str(fifo_toml)], 2, "fifo.toml: not a regular file; give a TOML file"),
        ([*run, "--config", str(huge_toml)], 2, "which no config needs"),
        ([*run, "--config", str(binary_toml)], 2, "is not valid TOML"),
        ([*run, "--config", str(unknown_key)], 2, "unknown config keys epochz"),
        (["eval", str(no_ckpt)], 1, "does not exist"),
        (["daydream", str(done), "--out", str(tmp / "no" / "d.png")], 2, "does not exist"),
        (["bench", "search", "--codes", str(a_file)], 2, "cannot read it as a tensor"),
        (["bench", "search", "--search", "nope"], 2, "unknown searcher 'nope'"),
    ]


def test_catalogue_of_bad_inputs(tmp_path, finished_run):
    before = {p.name: p.read_bytes() for p in finished_run.iterdir()}
    runner = CliRunner()
    catalogue = cases(tmp_path, finished_run)
    assert len(catalogue) >= 25
    for args, code, words in catalogue:
        r = runner.invoke(main, args)
        where = f"acnkit {' '.join(args)}"
        assert r.exit_code == code, f"{where}: exit {r.exit_code}\n{r.output}"
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, f"{where}: not one line:\n{r.stderr}"
        assert lines[0].startswith("error: ") and words in lines[0], f"{where}: {lines[0]}"
        assert "Traceback" not in r.output
        assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())
    after = {p.name: p.read_bytes() for p in finished_run.iterdir()}
    assert before == after, "a refused command changed an earlier run"


def test_debug_shows_the_traceback(tmp_path):
    r = CliRunner().invoke(main, ["--debug", "run", "--prior", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "Traceback" in r.stderr


FACTORY_PLUGIN = """
    import acnkit
    from acnkit_plugins.mlp import MLPEncoder

    def picky(image_shape, latent_dim, **options):
        if latent_dim % 4:
            raise ValueError(f"latent size must be a multiple of 4, got {latent_dim}")
        return MLPEncoder(image_shape, latent_dim, **options)

    class Wrong(MLPEncoder):
        def forward(self, x):
            post = super().forward(x)
            post.mean = post.mean[:, :-1]
            return post

    @acnkit.hookimpl
    def register_encoders(register):
        register("picky", picky)
        register("wrong", Wrong)
"""


def test_plugin_that_cannot_serve_a_latent_size(make_plugin, tmp_path):
    make_plugin("pickyplug", FACTORY_PLUGIN, entry="picky")
    r = CliRunner().invoke(main, ["run", "--encoder", "picky", "--latent-dim", "6",
                                  "--out", str(tmp_path / "x")])
    assert r.exit_code == 2
    assert r.stderr.strip() == ("error: encoder 'picky' (plugin 'picky') rejected its options: "
                                "latent size must be a multiple of 4, got 6")


def test_plugin_returning_the_wrong_shape_is_named(make_plugin, tmp_path):
    make_plugin("pickyplug", FACTORY_PLUGIN, entry="picky")
    r = CliRunner().invoke(main, ["run", *SMALL, "--encoder", "wrong", "--out",
                                  str(tmp_path / "x")])
    assert r.exit_code == 1
    assert "encoder 'wrong' (plugin 'picky') gave mean of shape (2, 7), expected (2, 8)" \
        in r.stderr


def test_duplicate_plugin_names_through_the_cli(make_plugin):
    make_plugin("dupplug", """
        import acnkit
        @acnkit.hookimpl
        def register_priors(register):
            register("acn", object)
    """, entry="dup")
    r = CliRunner().invoke(main, ["plugins"])
    assert r.exit_code == 0  # the built-in keeps its name; the newcomer is reported
    assert r.stderr.strip() == (
        "warning: plugin 'dup' (dupplug): prior 'acn' is already registered by plugin 'acn' "
        "(acnkit); this one was skipped (see acnkit plugins)")


def test_nan_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "r"
    assert CliRunner().invoke(main, ["run", *SMALL, "--epochs", "1", "--out", str(out)]).exit_code == 0
    good = (out / "checkpoint.pt").read_bytes()
    metrics = (out / "metrics.jsonl").read_text()
    r = CliRunner().invoke(main, ["run", "--resume", str(out), "--epochs", "3", "--lr", "1e30"])
    assert r.exit_code == 1
    assert "NaN or infinite at epoch 2, batch" in r.stderr and "smaller --lr" in r.stderr
    assert (out / "checkpoint.pt").read_bytes() == good
    assert (out / "metrics.jsonl").read_text() == metrics
    assert json.loads(metrics.splitlines()[-1])["epoch"] == 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
