"""Progress of long work: plain lines off a terminal, nothing under --json or --quiet, and a
CLI whose help needs neither torch nor a plugin."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import SMALL

from acnkit import progress
from acnkit.cli import main
from acnkit.registry import get_registry


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def every_step(monkeypatch):
    """Plain lines at every step, so a short run shows them (the default is every 10 s)."""
    monkeypatch.setenv("ACNKIT_PROGRESS_EVERY", "0")
    monkeypatch.setattr(progress._board, "last_line", 0.0)


def test_plain_progress_lines_inside_epochs_and_eval(tmp_path, every_step):
    r = invoke("run", *SMALL, "--epochs", 1, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    epoch = [x for x in lines if x.startswith("epoch 1/1: ")]
    assert epoch and "/300 images (" in epoch[-1] and "images/s" in epoch[-1]
    assert "nats " in epoch[-1]  # the running objective
    assert any(x.startswith("held-out costs: ") for x in lines)
    assert any(x.startswith("chain: ") for x in lines)  # ACN's held-out chain
    e = invoke("eval", tmp_path / "r", "--samples", 2)
    assert e.exit_code == 0, e.output
    assert "IS bound, 2 samples: 100/100 images (100%)" in e.stderr


def test_json_is_pure_and_quiet_prints_no_progress(tmp_path, every_step):
    # the default nets, so that the model codes in fewer bits than a bit a pixel (tinier
    # ones are stored plainly, with no coder to show the progress of)
    r = invoke("run", "--epochs", 3, "--out", tmp_path / "r", "--json")
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)
    assert r.stderr == ""
    q = invoke("compress", tmp_path / "r", "--data", "digits",
               "-o", tmp_path / "d.acnz", "--quiet")
    assert q.exit_code == 0, q.output
    assert "compress:" not in q.stderr and "encode:" not in q.stderr
    loud = invoke("decompress", tmp_path / "d.acnz", "--run", tmp_path / "r",
                  "-o", tmp_path / "d.npy")
    assert loud.exit_code == 0, loud.output
    assert "decompress: " in loud.stderr and " images (100%)" in loud.stderr


def test_quiet_and_prefix_and_hidden_tasks(capsys, every_step):
    with progress.prefix("vae "), progress.task("epoch 1/2", 10, "images") as step:
        step(5, nats=lambda: 1.5)
    with progress.task("rank 1", 4, "images", show=False) as step:
        step(4)
    with progress.quiet(), progress.task("silent", 4, "images") as step:
        step(4)
        progress.echo("not shown")
    err = capsys.readouterr().err
    assert "vae epoch 1/2: 5/10 images (50%)" in err and "nats 1.50" in err
    assert "rank 1" not in err and "silent" not in err and "not shown" not in err


def test_train_from_python_shows_epoch_lines(capsys):
    from acnkit import RunConfig, train

    train(RunConfig(epochs=1, train_limit=200, test_limit=50, latent_dim=4,
                    encoder_hidden="16", decoder_hidden="16", prior_hidden=16))
    assert "epoch 1/1  train " in capsys.readouterr().err
    with progress.quiet():
        train(RunConfig(epochs=1, train_limit=200, test_limit=50, latent_dim=4,
                        encoder_hidden="16", decoder_hidden="16", prior_hidden=16))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["compress", "--help"],
                                  ["bench", "codec", "--help"]])
def test_help_imports_neither_torch_nor_plugins(args):
    code = ("import sys; from acnkit.cli import main\n"
            f"try: main({args!r})\n"
            "except SystemExit: pass\n"
            "print('torch' in sys.modules, any(m.startswith('acnkit_plugins') for m in sys.modules),"
            " file=sys.stderr)")
    env = {"ACNKIT_LOAD_PLUGINS": ""}  # third-party plugins installed here must not count
    import os
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, **env}, timeout=120)
    assert "Usage:" in r.stdout
    assert r.stderr.strip().splitlines()[-1] == "False False"


def test_no_builtin_registers_commands():
    """``acnkit --help`` lists commands without loading the built-ins: it relies on this."""
    builtins = [i for i in get_registry().plugins.values() if i.builtin]
    assert builtins and not [i.name for i in builtins if i.commands]


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {t: {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}, acc


@pytest.mark.parametrize("prior", ["acn", "vae"])
def test_tensorboard_events_match_metrics(tmp_path, prior):
    pytest.importorskip("tensorboard")
    out = tmp_path / "r"
    r = invoke("run", *SMALL, "--prior", prior, "--epochs", 1, "--out", out, "--tensorboard",
               "--quiet")
    assert r.exit_code == 0, r.output
    # resumed in a second stage: the events go on from the checkpoint
    r = invoke("run", "--resume", out, "--epochs", 2, "--tensorboard", "--quiet")
    assert r.exit_code == 0, r.output
    scalars, acc = _scalars(out / "tensorboard")
    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for m in history:
        assert scalars["test/nats"][m["epoch"]] == pytest.approx(m["test_nats"], rel=1e-6)
        assert scalars["test/nats_ordered"][m["epoch"]] == pytest.approx(m["test_nats_ordered"])
        assert scalars["train/kl"][m["epoch"]] == pytest.approx(m["train_kl"], rel=1e-6)
        assert scalars["test/knn5_accuracy"][m["epoch"]] == pytest.approx(m["test_knn5_accuracy"])
        assert scalars["seconds/epoch"][m["epoch"]] == pytest.approx(m["epoch_seconds"])
    assert set(scalars["train/nats"]) == {1, 2}
    pictures = set(acc.Tags()["images"])
    assert "images/reconstructions" in pictures
    assert ("images/daydream" if prior == "acn" else "images/prior_samples") in pictures
    # originals above reconstructions, 8 of each, 8x8 digits with a 2-pixel gap
    recon = acc.Images("images/reconstructions")[-1]
    assert (recon.height, recon.width) == (2 * 10 + 2, 8 * 10 + 2)
    if prior == "acn":  # four chains, the datum and five dreams each
        dream = acc.Images("images/daydream")[-1]
        assert (dream.height, dream.width) == (4 * 10 + 2, 6 * 10 + 2)
    projector = (out / "tensorboard" / "projector_config.pbtxt").read_text()
    assert "metadata_path" in projector and "sprite" in projector
    meta = next((out / "tensorboard").rglob("metadata.tsv")).read_text().split()
    assert len(meta) == 100 and set(meta) <= {str(d) for d in range(10)}
    assert not [p for p in (out / "tensorboard").rglob("*") if " " in p.name]
    # the config as HParams (written once, when the folder was new)
    raw = b"".join(p.read_bytes() for p in (out / "tensorboard").glob("events.out.*"))
    assert raw.count(b"_hparams_/session_start_info") == 1 and b"latent_dim" in raw
    # eval's importance-sampled bound joins the curves at the run's epoch
    r = invoke("eval", out, "--samples", 3, "--json")
    assert r.exit_code == 0, r.output
    scalars, _ = _scalars(out / "tensorboard")
    bound = json.loads(r.stdout)["test_is_nats"]
    assert scalars["test/is_nats"] == {2: pytest.approx(bound, rel=1e-6)}


def test_tensorboard_codes_every_n_epochs(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "r"
    r = invoke("run", *SMALL, "--epochs", 3, "--out", out, "--tensorboard",
               "--tensorboard-codes-every", 2, "--quiet")
    assert r.exit_code == 0, r.output
    projector = (out / "tensorboard" / "projector_config.pbtxt").read_text()
    steps = sorted(p.parent.parent.name for p in (out / "tensorboard").rglob("metadata.tsv"))
    assert steps == ["00002", "00003"] and projector.count("embeddings") == 2, steps
    r = invoke("run", *SMALL, "--out", tmp_path / "s", "--tensorboard-codes-every", -1)
    assert r.exit_code == 2 and "must be >= 0" in r.output


def test_compare_overlays_priors_and_missing_package_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    r = invoke("compare", *SMALL, "--epochs", 1, "--out", tmp_path / "c", "--tensorboard",
               "--quiet")
    assert r.exit_code == 0, r.output
    for prior in ("vae", "acn"):
        scalars, _ = _scalars(tmp_path / "c" / "tensorboard" / prior)
        assert 1 in scalars["test/nats_set"]
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *a, **k):
        if name.split(".")[0] == "tensorboard" or name == "torch.utils.tensorboard":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.setattr("importlib.import_module",
                        lambda name, package=None: no_tensorboard(name))
    r = invoke("run", *SMALL, "--epochs", 1, "--out", tmp_path / "n", "--tensorboard")
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and "pip install 'acnkit[tensorboard]'" in r.output
    assert not (tmp_path / "n").exists()  # refused before anything was written


def test_a_bare_command_prints_its_help():
    r = invoke()
    assert r.exit_code == 0 and r.output.startswith("Usage:")
