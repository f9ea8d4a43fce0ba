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
