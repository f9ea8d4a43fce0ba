import json
import math

import pytest
from click.testing import CliRunner

from acnkit.cli import main

KEYS = {"epoch", "train_nats", "train_recon", "train_kl", "test_nats", "test_recon", "test_kl",
        "epoch_seconds", "search_seconds"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("prior", ["acn", "vae"])
def test_run_writes_config_and_metrics(tmp_path, prior):
    out = tmp_path / prior
    r = invoke("run", "--prior", prior, "--epochs", 2, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        m = json.loads(line)
        assert KEYS <= set(m)
        assert all(math.isfinite(m[k]) for k in KEYS)
        assert m["train_nats"] == pytest.approx(m["train_recon"] + m["train_kl"])
    assert json.loads(r.stdout.strip().splitlines()[-1]) == json.loads(lines[-1])
    config = json.loads((out / "config.json").read_text())
    assert config["prior"] == prior and config["epochs"] == 2
    assert (out / "checkpoint.pt").is_file()


def test_plain_progress_lines_off_a_terminal(tmp_path):
    r = invoke("run", "--epochs", 1, "--train-limit", 300, "--out", tmp_path / "x")
    assert r.exit_code == 0
    assert "epoch 1/1  train" in r.stderr
    assert ")  test " in r.stderr


def test_progress_lines_name_the_validation_split(tmp_path):
    r = invoke("run", "--epochs", 1, "--train-limit", 600, "--valid-size", 200, "--out", tmp_path / "v")
    assert r.exit_code == 0, r.output
    assert ")  valid " in r.stderr and ")  test " not in r.stderr


def test_unknown_searcher_is_one_line_exit_2(tmp_path):
    r = invoke("run", "--search", "nope", "--out", tmp_path / "x")
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0
    assert "unknown searcher 'nope'; registered searchers:" in r.stderr
    assert "Traceback" not in r.output


DOCUMENTED = {"run", "compare", "eval", "compress", "decompress", "daydream", "sample",
              "plugins", "bench"}


def test_help_lists_every_command_and_each_command_has_help():
    r = invoke("--help")
    assert r.exit_code == 0
    listed = {line.split()[0] for line in r.output.split("Commands:")[1].splitlines()
              if line.strip()}
    assert DOCUMENTED <= set(main.commands) and listed == set(main.commands)
    for name in sorted(main.commands):
        sub = invoke(name, "--help")
        assert sub.exit_code == 0 and sub.output.startswith(f"Usage: main {name}"), name
    for name in sorted(main.commands["bench"].commands):
        sub = invoke("bench", name, "--help")
        assert sub.exit_code == 0 and f"bench {name}" in sub.output, name
