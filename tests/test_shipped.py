"""Models that travel without their run: export, the shipped list, coding with --model,
decompress finding a shipped model by the file's fingerprint, and damaged or foreign model
files refused with one line."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import acnkit.shipped as shipped_module
from acnkit.cli import main
from acnkit.errors import CheckpointError, UsageError
from acnkit.shipped import INFO_FILE, MODEL_FILE, load_model, shipped, shipped_root

TINY = ["--prior", "acn", "--epochs", "1", "--latent-dim", "6", "--encoder-hidden", "64",
        "--decoder-hidden", "64", "--prior-hidden", "32", "--test-limit", "50",
        "--train-limit", "400"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny digits run, and its model exported into a folder of shipped models."""
    tmp = tmp_path_factory.mktemp("shipped")
    run, root = tmp / "run", tmp / "models"
    cli = CliRunner()
    r = cli.invoke(main, ["run", *TINY, "--out", str(run)])
    assert r.exit_code == 0, r.output
    r = cli.invoke(main, ["models", "export", str(run), "tiny-digits", "--to",
                          str(root / "tiny-digits"), "--made-by", "acnkit run " + " ".join(TINY)])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.stdout and "parameters" in r.stdout
    return run, root


@pytest.fixture
def as_shipped(exported, monkeypatch):
    run, root = exported
    monkeypatch.setattr(shipped_module, "shipped_root", lambda: root)
    return run, root


def test_an_exported_model_is_the_run_s_model_without_its_training_state(exported):
    from acnkit.trained import load_run

    run, root = exported
    model = load_model(str(root / "tiny-digits"))
    own = load_run(run, "cpu").model
    assert model.model.fingerprint() == own.fingerprint()
    assert model.info["fingerprint"] == own.fingerprint()
    assert model.info["made_by"].startswith("acnkit run")
    # no optimiser state, no code store: smaller than the checkpoint
    assert (root / "tiny-digits" / MODEL_FILE).stat().st_size < \
        0.6 * (run / "checkpoint.pt").stat().st_size


def test_compress_with_model_and_decompress_finding_it_by_fingerprint(as_shipped, tmp_path):
    run, root = as_shipped
    assert list(shipped()) == ["tiny-digits"]
    cli = CliRunner()
    r = cli.invoke(main, ["models"])
    assert r.exit_code == 0 and "tiny-digits" in r.stdout
    images = np.random.default_rng(1).integers(0, 2, size=(12, 64)).astype(np.uint8)
    np.save(tmp_path / "in.npy", images)
    f = tmp_path / "x.acnz"
    r = cli.invoke(main, ["compress", "--model", "tiny-digits", "--input",
                          str(tmp_path / "in.npy"), "-o", str(f)])
    assert r.exit_code == 0, r.output
    # neither --run nor --model: the file's fingerprint names the shipped model
    r = cli.invoke(main, ["decompress", str(f), "-o", str(tmp_path / "a.npy")])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "a.npy"), images)
    # the run's own files and the model's are one: the run decodes the model's file
    r = cli.invoke(main, ["decompress", str(f), "--run", str(run), "-o", str(tmp_path / "b.npy")])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "b.npy"), images)


def test_a_file_of_a_model_not_shipped_asks_for_its_run(exported, tmp_path, monkeypatch):
    run, _ = exported
    monkeypatch.setattr(shipped_module, "shipped_root", lambda: tmp_path / "none")
    listed = CliRunner().invoke(main, ["models"])
    assert listed.exit_code == 0 and "no models are shipped" in listed.stdout
    images = np.random.default_rng(2).integers(0, 2, size=(5, 64)).astype(np.uint8)
    np.save(tmp_path / "in.npy", images)
    cli = CliRunner()
    f = tmp_path / "x.acnz"
    assert cli.invoke(main, ["compress", str(run), "--input", str(tmp_path / "in.npy"), "-o",
                             str(f)]).exit_code == 0
    r = cli.invoke(main, ["decompress", str(f), "-o", str(tmp_path / "o.npy")])
    assert r.exit_code == 2 and "made with a model acnkit does not ship" in r.stderr
    assert "give --run RUN" in r.stderr and r.stderr.count("\n") == 1
    r = cli.invoke(main, ["compress", "--model", "nope", "--input", str(tmp_path / "in.npy"),
                          "-o", str(tmp_path / "y.acnz")])
    assert r.exit_code == 2 and "no model named 'nope' is shipped" in r.stderr
    assert not (tmp_path / "y.acnz").exists() and not (tmp_path / "o.npy").exists()


def _copy(exported, tmp_path) -> Path:
    _, root = exported
    folder = tmp_path / "m"
    shutil.copytree(root / "tiny-digits", folder)
    return folder


def test_edited_weights_are_refused_by_the_fingerprint(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    state = torch.load(folder / MODEL_FILE, weights_only=True)
    first = next(iter(state["modules"]["decoder"]))
    state["modules"]["decoder"][first].add_(1e-3)
    torch.save(state, folder / MODEL_FILE)
    with pytest.raises(CheckpointError, match="the weights do not match the fingerprint"):
        load_model(str(folder))


@pytest.mark.parametrize("damage,message", [
    ("pickle", "holds pickled Python objects"),
    ("not-zip", "is corrupt or not a model file"),
    ("foreign", "is not an acnkit model file"),
    ("format", "has model format 99"),
    ("shape", "which acnkit does not make"),
    ("modules", "'modules' is missing or not a dict"),
    ("missing", "does not exist"),
    ("fifo", "is not a regular file"),
])
def test_damaged_or_foreign_model_files_are_refused_with_one_line(exported, tmp_path, damage,
                                                                  message):
    import os

    folder = _copy(exported, tmp_path)
    file = folder / MODEL_FILE
    state = torch.load(file, weights_only=True)
    if damage == "pickle":
        torch.save({"kind": "acnkit-model", "x": zipfile.ZipInfo("a")}, file)
    elif damage == "not-zip":
        file.write_bytes(b"not a model" * 10)
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, file)
    elif damage == "format":
        torch.save({**state, "format": 99}, file)
    elif damage == "shape":
        torch.save({**state, "image_shape": [1, 1 << 20, 1 << 20]}, file)
    elif damage == "modules":
        torch.save({**state, "modules": [1, 2]}, file)
    elif damage == "missing":
        file.unlink()
    elif damage == "fifo":
        file.unlink()
        os.mkfifo(file)
    r = CliRunner().invoke(main, ["compress", "--model", str(folder), "--data", "digits", "-o",
                                  str(tmp_path / "x.acnz")])
    assert r.exit_code == 1 and message in r.stderr and r.stderr.count("\n") == 1, r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.acnz").exists()


def test_export_refuses_a_bad_name_and_an_occupied_folder(exported, tmp_path):
    run, root = exported
    cli = CliRunner()
    r = cli.invoke(main, ["models", "export", str(run), "Bad Name", "--to", str(tmp_path / "x")])
    assert r.exit_code == 2 and "model name 'Bad Name' is not allowed" in r.stderr
    r = cli.invoke(main, ["models", "export", str(run), "tiny-digits", "--to",
                          str(root / "tiny-digits")])
    assert r.exit_code == 2 and "already holds files; give --overwrite" in r.stderr
    with pytest.raises(UsageError):
        shipped_module.check_name("-x")


def test_every_shipped_model_loads_and_matches_its_listing():
    """The models in the repository's models/ folder: each loads, its weights match the
    fingerprint its model.json lists, and its README entry names the command that made it."""
    listed = shipped()
    readme = (shipped_root() / "README.md").read_text()
    for name, info in listed.items():
        trained = load_model(name)
        assert trained.model.fingerprint() == info["fingerprint"]
        assert json.loads((shipped_root() / name / INFO_FILE).read_text())["name"] == name
        assert f"`{name}`" in readme and info["made_by"], name


def test_init_starts_a_new_run_from_a_model_s_weights(as_shipped, tmp_path):
    from acnkit.trained import load_run

    run, root = as_shipped
    from acnkit.config import RunConfig
    from acnkit.engine import Trainer

    # the same networks, another seed: the run starts from the model's weights
    config = RunConfig(prior="acn", epochs=1, latent_dim=6, encoder_hidden="64",
                       decoder_hidden="64", prior_hidden=32, test_limit=50, train_limit=400,
                       seed=5)
    given = load_model("tiny-digits").model.state_dict()
    fresh = Trainer(config).model.state_dict()
    started = Trainer(RunConfig(**{**config.to_dict(), "init": "tiny-digits"})).model.state_dict()
    for part, weights in given.items():
        for key, value in weights.items():
            assert torch.equal(started[part][key], value), (part, key)
            assert value.numel() < 2 or not torch.equal(fresh[part][key], value), (part, key)
    cli = CliRunner()
    tuned = tmp_path / "tuned"
    r = cli.invoke(main, ["run", *TINY, "--init", "tiny-digits", "--out", str(tuned)])
    assert r.exit_code == 0, r.output
    assert json.loads((tuned / "config.json").read_text())["init"] == "tiny-digits"
    assert load_run(tuned, "cpu").config.init == "tiny-digits"
    # other networks are refused in one line, before any folder is written
    other = tmp_path / "other"
    r = cli.invoke(main, ["run", *TINY[:-6], "--decoder-hidden", "32", "--init", "tiny-digits",
                          "--out", str(other)])
    assert r.exit_code != 0 and r.stderr.count("\n") == 1, r.output
    assert "--init tiny-digits: that model has decoder-hidden '64' (this run: '32')" in r.stderr
    assert not other.exists()
    r = cli.invoke(main, ["run", *TINY, "--init", "no-such-model", "--out", str(other)])
    assert r.exit_code != 0 and "no model named 'no-such-model' is shipped" in r.stderr
    # a resumed run goes on from its checkpoint: --init there is refused
    r = cli.invoke(main, ["run", "--resume", str(run), "--epochs", "2", "--init", "tiny-digits"])
    assert r.exit_code != 0 and "not 'tiny-digits'" in r.stderr, r.output
