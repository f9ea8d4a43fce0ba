"""Run folders: checkpoints, resume, compare, eval, daydream."""

import csv
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import SMALL_NETS

from acnkit.cli import main
from acnkit.errors import CheckpointError
from acnkit.rundir import load_checkpoint

SMALL = [*SMALL_NETS, "--batch-size", "64"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def metrics(path):
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if not k.endswith("_seconds")} for m in rows]


@pytest.mark.parametrize("prior", ["acn", "vae"])
def test_resume_gives_identical_metrics(tmp_path, prior):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert invoke("run", "--prior", prior, *SMALL, "--epochs", 3, "--out", whole).exit_code == 0
    assert invoke("run", "--prior", prior, *SMALL, "--epochs", 1, "--out", part).exit_code == 0
    r = invoke("run", "--resume", part, "--epochs", 3)
    assert r.exit_code == 0, r.output
    assert metrics(part) == metrics(whole)
    assert len(metrics(part)) == 3


def test_resume_defaults_to_the_epochs_the_run_started_with(tmp_path):
    out = tmp_path / "r"
    assert invoke("run", *SMALL, "--epochs", 2, "--out", out).exit_code == 0
    state = load_checkpoint(out)
    assert state["epoch"] == 2
    r = invoke("run", "--resume", out)  # nothing left to do
    assert r.exit_code == 0 and len(metrics(out)) == 2


def test_checkpoint_loads_weights_only(tmp_path):
    out = tmp_path / "r"
    assert invoke("run", *SMALL, "--epochs", 1, "--out", out).exit_code == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and "store" in state and "optimizer" in state


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_object_in_checkpoint_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    torch.save({"format": 1, "config": {}, "payload": Evil()}, out / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(out)
    assert "this must never run" not in capsys.readouterr().out
    r = invoke("run", "--resume", out)
    assert r.exit_code == 1 and "pickled Python objects" in r.stderr
    assert "Traceback" not in r.output


def test_compare_writes_csv_png_and_runs(tmp_path):
    out = tmp_path / "cmp"
    r = invoke("compare", *SMALL, "--epochs", 2, "--out", out)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [(row["prior"], row["epoch"]) for row in rows] == [
        ("vae", "1"), ("vae", "2"), ("acn", "1"), ("acn", "2")]
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "vae" / "checkpoint.pt").is_file() and (out / "acn" / "metrics.jsonl").is_file()
    assert "final test code length, ordered mode: acn" in r.stdout
    assert "final test code length, set mode: acn" in r.stdout
    for row in rows:  # one order costs log(N!)/N per image in either mode, for both priors
        gap = float(row["test_nats_ordered"]) - float(row["test_nats_set"])
        assert gap == pytest.approx(float(row["test_order_nats"]), rel=1e-9)
        assert float(row["test_nats"]) == float(row["test_nats_set"])  # one headline mode


def test_compare_starts_both_priors_from_the_same_weights(tmp_path, monkeypatch):
    """Same seed and nets: VAE and ACN start from the same encoder and decoder weights
    (compared as tensors, before either trains) and see the same data order."""
    import copy

    from acnkit import compare

    start, seen = compare.runs.start, {}

    def spy(config, out, **kwargs):
        t = kwargs["trainer"]
        seen[config.prior] = {name: copy.deepcopy(t.model.modules()[name].state_dict())
                              for name in ("encoder", "decoder")}
        seen[config.prior]["order"] = t.order.get_state().clone()
        return start(config, out, **kwargs)

    monkeypatch.setattr(compare.runs, "start", spy)
    assert invoke("compare", *SMALL, "--epochs", 1, "--out", tmp_path / "c").exit_code == 0
    vae, acn = seen["vae"], seen["acn"]
    assert torch.equal(vae["order"], acn["order"])
    for name in ("encoder", "decoder"):
        assert vae[name].keys() == acn[name].keys()
        for key in vae[name]:
            assert torch.equal(vae[name][key], acn[name][key]), f"{name}.{key} differs"
    # and the check can fail: another seed gives other weights
    other = acnkit_trainer(seed=1)
    assert not torch.equal(other.model.encoder.state_dict()[key_of(other)], vae["encoder"][key_of(other)])


def acnkit_trainer(**kw):
    from acnkit import RunConfig, Trainer

    return Trainer(RunConfig(latent_dim=8, encoder_hidden="64", decoder_hidden="64",
                             prior_hidden=32, batch_size=64, **kw))


def key_of(trainer):
    return next(iter(trainer.model.encoder.state_dict()))


def test_eval_and_daydream(tmp_path):
    out = tmp_path / "r"
    assert invoke("run", *SMALL, "--epochs", 2, "--out", out).exit_code == 0
    r = invoke("eval", out, "--json", "--samples", 5)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("test_nats", "test_nats_ordered", "test_nats_set", "test_nats_nearest_train",
                "test_knn5_accuracy"):
        assert result[key] == pytest.approx(last[key])
    assert "knn5_accuracy" not in result  # one name for one figure
    r = invoke("eval", out, "--json", "--knn", 3)
    assert 0 <= json.loads(r.stdout)["test_knn3_accuracy"] <= 1
    # The importance-sampled bound is at least as tight as the ELBO on average, mode for mode.
    for mode in ("ordered", "set"):
        assert result[f"test_is_nats_{mode}"] < result[f"test_nats_{mode}"] + 0.5
    assert result["test_is_nats"] == result["test_is_nats_set"]
    png = tmp_path / "d.png"
    r = invoke("daydream", out, "--seeds", 3, "--steps", 4, "--out", png)
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_vae_importance_bound_is_named_by_mode(tmp_path):
    # a VAE's bound is of an ordered code: labelled as a set it would sit log(N!)/N above
    # the set-mode ELBO
    out = tmp_path / "v"
    assert invoke("run", *SMALL, "--prior", "vae", "--epochs", 1, "--out", out).exit_code == 0
    result = json.loads(invoke("eval", out, "--json", "--samples", 5).stdout)
    for mode in ("ordered", "set"):
        assert result[f"test_is_nats_{mode}"] < result[f"test_nats_{mode}"] + 0.5
    assert result["test_is_nats_ordered"] - result["test_is_nats_set"] == pytest.approx(
        result["test_order_nats"])


def test_written_files_have_ordinary_permissions(tmp_path):
    import os
    import stat

    out = tmp_path / "r"
    assert invoke("run", *SMALL, "--epochs", 1, "--out", out).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt"):
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode == 0o666 & ~umask, f"{name}: {oct(mode)}"


@pytest.fixture(scope="module")
def apart(tmp_path_factory):
    """A VAE and an ACN run trained apart (acnkit run), two epochs each."""
    root = tmp_path_factory.mktemp("apart")
    for prior in ("vae", "acn"):
        r = invoke("run", "--prior", prior, *SMALL, "--train-limit", 300, "--test-limit", 100,
                   "--epochs", 2, "--out", root / prior)
        assert r.exit_code == 0, r.output
    return root


def test_compare_runs_sets_runs_trained_apart_side_by_side(apart, tmp_path):
    out = tmp_path / "side"
    r = invoke("compare", "--runs", apart / "vae", "--runs", apart / "acn", "--out", out)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [(row["prior"], row["epoch"]) for row in rows] == [
        ("vae", "1"), ("vae", "2"), ("acn", "1"), ("acn", "2")]
    vae = metrics(apart / "vae")
    assert float(rows[1]["test_nats_set"]) == vae[1]["test_nats_set"]  # read, not retrained
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "final test code length, set mode: acn" in r.stdout
    assert sorted(p.name for p in apart.iterdir()) == ["acn", "vae"]  # nothing written there
    # two runs of one prior are told apart by their folders
    r = invoke("compare", "--runs", apart / "vae", "--runs", apart / "vae", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "give each run once" in r.output


def test_compare_runs_keeps_what_out_holds(apart, tmp_path):
    out = tmp_path / "side"
    args = ["compare", "--runs", apart / "vae", "--runs", apart / "acn", "--out", out]
    assert invoke(*args).exit_code == 0
    (out / "compare.csv").write_text("mine")
    r = invoke(*args)
    assert r.exit_code == 2 and "exists; pass --overwrite" in r.output
    assert (out / "compare.csv").read_text() == "mine"
    assert invoke(*args, "--overwrite").exit_code == 0
    assert (out / "compare.csv").read_text().startswith("prior,epoch")
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "compare.json").write_text("{}")
    r = invoke("compare", "--runs", apart / "vae", "--out", trained, "--overwrite")
    assert r.exit_code == 2 and "holds a comparison trained there" in r.output
    assert sorted(p.name for p in trained.iterdir()) == ["compare.json"]


def test_compare_runs_trains_nothing_and_refuses_training_options(apart, tmp_path):
    r = invoke("compare", "--runs", apart / "vae", "--epochs", 3, "--priors", "vae",
               "--out", tmp_path / "o")
    assert r.exit_code == 2 and "drop --epochs, --priors" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()
    assert len(metrics(apart / "vae")) == 2


def test_compare_runs_refuses_runs_of_other_images(apart, tmp_path):
    other = tmp_path / "other"
    assert invoke("run", "--prior", "vae", *SMALL, "--train-limit", 300, "--test-limit", 50,
                  "--epochs", 1, "--out", other).exit_code == 0
    r = invoke("compare", "--runs", apart / "acn", "--runs", other, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "tested on different images (test_limit 100 against 50)" \
        in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("tamper, said", [
    (lambda text: text.replace('"test_kl": ', '"test_kl": "x", "was": ', 1),
     "line 1 lacks test_kl as numbers"),
    (lambda text: text.replace('"test_nats_set": ', '"test_nats_set": NaN, "was": ', 1),
     "line 1 lacks test_nats_set as numbers"),
    (lambda text: text.replace('"test_knn5_accuracy": ', '"test_knn5_accuracy": "x", "w": ', 1),
     "line 1 lacks test_knn5_accuracy as numbers"),
    (lambda text: text.replace('"train_kl": ', '"train_kl": 1' + "0" * 400 + ', "was": ', 1),
     "line 1 lacks train_kl as numbers"),
    (lambda text: text.replace('"epoch": 1,', '"epoch": true,', 1),
     "line 1 is not the JSON figures of epoch 1"),
    (lambda text: "\n".join(reversed(text.splitlines())), "line 1 is not the JSON figures"),
    (lambda text: text[: len(text) // 3], "is not the JSON figures of epoch 1"),
    (lambda text: "[1, 2]\n", "line 1 is not the JSON figures of epoch 1"),
    (lambda text: "", "holds no epoch yet"),
    (lambda text: text + " " * (1 << 24), "is larger than a run writes"),
])
def test_compare_runs_refuses_a_tampered_metrics_file(apart, tmp_path, tamper, said):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(apart / "vae", run)
    file = run / "metrics.jsonl"
    file.write_text(tamper(file.read_text()))
    r = invoke("compare", "--runs", apart / "acn", "--runs", run, "--out", tmp_path / "o")
    assert r.exit_code == 1 and said in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_compare_runs_refuses_what_is_no_run(apart, tmp_path):
    import os

    fifo = tmp_path / "fifo"
    fifo.mkdir()
    (fifo / "config.json").write_text((apart / "vae" / "config.json").read_text())
    os.mkfifo(fifo / "metrics.jsonl")  # would block a plain read for ever
    for run, said in [(fifo, "is not a regular file"), (tmp_path / "none", "is not a folder"),
                      (tmp_path, "config.json is missing")]:
        r = invoke("compare", "--runs", run, "--out", tmp_path / "o")
        assert r.exit_code in (1, 2) and said in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_compare_runs_at_different_epochs_are_compared_at_the_last_both_have(apart, tmp_path):
    import shutil

    behind = tmp_path / "acn"
    shutil.copytree(apart / "acn", behind)
    (behind / "metrics.jsonl").write_text((apart / "acn" / "metrics.jsonl").read_text()
                                          .splitlines(keepends=True)[0])
    r = invoke("compare", "--runs", apart / "vae", "--runs", behind, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert "at epoch 1, the last both vae and acn have" in r.stdout
    first = metrics(apart / "vae")[0]["test_nats_set"]
    assert f"vs vae {first:.2f} nats per image" in r.stdout.replace("\n", " ")


def test_compare_resume_refuses_a_plan_that_is_no_file(tmp_path):
    import os

    out = tmp_path / "cmp"
    r = invoke("compare", "--resume", "--out", out)
    assert r.exit_code == 2 and "holds no comparison to resume (compare.json is missing)" \
        in r.output
    out.mkdir()
    os.mkfifo(out / "compare.json")  # would block a plain read for ever
    r = invoke("compare", "--resume", "--out", out)
    assert r.exit_code == 2 and "compare.json is not a regular file; start the comparison " \
        "again with --overwrite" in r.output, r.output
