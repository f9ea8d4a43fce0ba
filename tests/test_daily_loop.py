"""A researcher's daily loop: every suggestion acnkit prints works as printed, options are
never taken for others, and a run ends with its result even under --quiet."""

import re
import shlex
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from acnkit.cli import main

SMALL = ["--epochs", "1", "--latent-dim", "4", "--encoder-hidden", "32", "--decoder-hidden",
         "32", "--test-limit", "30", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def suggestion(stderr: str) -> list[str]:
    """The acnkit command an error suggests, as argv (without the leading 'acnkit')."""
    found = re.search(r"(acnkit (?:run|compare) [^,;]*)", stderr)
    assert found, stderr
    return shlex.split(found.group(1))[1:]


def test_run_ends_with_its_result_even_when_quiet(tmp_path):
    r = invoke("run", *SMALL, "--out", tmp_path / "r")
    assert r.exit_code == 0
    assert r.stdout.count("\n") == 1 and "set mode" in r.stdout and "bits/dim" in r.stdout
    assert str(tmp_path / "r") in r.stdout


def test_the_advice_to_continue_a_run_or_a_comparison_works_as_printed(tmp_path):
    for command, folder in (("run", tmp_path / "r"), ("compare", tmp_path / "c")):
        assert invoke(command, *SMALL, "--out", folder).exit_code == 0
        again = invoke(command, *SMALL, "--out", folder)
        assert again.exit_code == 2
        argv = suggestion(again.stderr)
        assert argv[0] == command
        r = invoke(*argv, "--epochs", "2", "--quiet")
        assert r.exit_code == 0, (argv, r.output)


def test_compare_refuses_prior_for_priors(tmp_path):
    r = invoke("compare", "--prior", "acn-t", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "did you mean --priors acn-t?" in r.stderr
    assert not (tmp_path / "c").exists()


def test_misspelled_names_and_options_are_refused_with_the_closest(tmp_path):
    r = invoke("run", "--prior", "acm", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "unknown prior 'acm' (did you mean 'acn'?)" in r.stderr
    r = invoke("run", "--search", "anoy", "--out", tmp_path / "r")
    assert "(did you mean 'annoy'?)" in r.stderr
    r = invoke("run", "--epoch", 3, "--out", tmp_path / "r")
    assert r.exit_code == 2 and "--epochs" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_diverged_run_continues_from_its_last_good_checkpoint_as_advised(tmp_path,
                                                                          monkeypatch):
    import acnkit.engine as engine

    monkeypatch.setattr(engine, "DIVERGENCE", 0.5)  # every second epoch "diverges"
    out = tmp_path / "r"
    r = invoke("run", *SMALL[2:], "--epochs", 3, "--lr", 0.002, "--out", out)
    assert r.exit_code == 1 and "diverged at epoch 2" in r.stderr, r.output
    argv = suggestion(r.stderr)
    assert argv[:2] == ["run", "--resume"] and argv[argv.index("--lr") + 1] == "0.001"
    monkeypatch.undo()
    r = invoke(*argv, "--quiet")
    assert r.exit_code == 0 and "epoch 3" in r.stdout, r.output


def test_threads_are_chosen_from_the_work_unless_asked(monkeypatch):
    from acnkit import threads
    from acnkit.errors import UsageError

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_now", lambda: 1)
    assert threads.choose(None) == (3, "3 of 4 cores free")
    monkeypatch.setattr(threads, "busy_now", lambda: 6)
    assert threads.choose(None)[0] == 1  # a busy machine: one
    monkeypatch.undo()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.ENV, raising=False)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:  # a process spinning now counts at once (load averages would lag by a minute)
        time.sleep(0.3)
        assert threads.busy_now() >= 1
    finally:
        hog.kill()
        hog.wait()
    monkeypatch.setattr(threads, "busy_now", lambda: 0)
    assert threads.choose(2) == (2, "--threads")
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.choose(None) == (3, threads.ENV)
    monkeypatch.setenv(threads.ENV, "many")
    with pytest.raises(UsageError, match="ACNKIT_THREADS='many' must be a whole number"):
        threads.choose(None)


def test_a_run_records_its_threads(tmp_path):
    import json

    assert invoke("run", *SMALL, "--threads", 1, "--out", tmp_path / "r").exit_code == 0
    first = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["threads"] == 1
    r = invoke("run", *SMALL, "--threads", 0, "--out", tmp_path / "s")
    assert r.exit_code == 2 and "--threads must be >= 1" in r.stderr


def test_eval_daydream_and_sample_take_threads(tmp_path, monkeypatch):
    import torch

    from acnkit import threads

    # a quiet machine of 4 cores: without --threads a command would take all 4
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_now", lambda: 0)
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for prior in ("vae", "acn"):
        assert invoke("run", *SMALL, "--prior", prior, "--out", tmp_path / prior).exit_code == 0
    before = torch.get_num_threads()
    try:
        for args in (("eval", tmp_path / "acn", "--json"),
                     ("daydream", tmp_path / "acn", "--out", tmp_path / "d.png"),
                     ("sample", tmp_path / "vae", "--out", tmp_path / "s.png")):
            r = invoke(*args, "--threads", 1)
            assert r.exit_code == 0 and torch.get_num_threads() == 1, r.output
            r = invoke(*args, "--threads", 0)
            assert r.exit_code == 2 and "--threads must be >= 1" in r.stderr, r.output
    finally:
        torch.set_num_threads(before)


def test_daydream_grid_has_a_title_and_names_its_rows(tmp_path, monkeypatch):
    """Each row is named by the test image that seeds it (its index and label), each
    column by its step, and the grid says what it shows."""
    import acnkit.daydream as daydream_module

    assert invoke("run", *SMALL, "--prior", "acn", "--out", tmp_path / "r").exit_code == 0
    seen = {}
    monkeypatch.setattr(daydream_module, "image_grid",
                        lambda rows, path, **kw: seen.update(kw, shape=rows.shape))
    r = invoke("daydream", tmp_path / "r", "--seeds", 3, "--steps", 4, "--out",
               tmp_path / "d.png")
    assert r.exit_code == 0, r.output
    from acnkit import load_run

    run = load_run(tmp_path / "r")
    assert seen["shape"][:2] == (3, 5) and seen["col_labels"][0] == "data"
    first = int(seen["row_labels"][0].split()[1])
    assert torch.equal(daydream_module.daydream(run.model, run.data.test_x, 3, 4)[0, 0],
                       run.model.inputs(run.data.test_x[first]).cpu())
    assert f"label {int(run.data.test_y[first])}" in seen["row_labels"][0]
    assert "daydream of acn on digits, epoch" in seen["title"]
