"""Two processes on CPU (gloo, loopback) against one process with the same global batch."""

import json
import subprocess
import sys

from conftest import SMALL_NETS

SMALL = [*SMALL_NETS, "--batch-size", "64"]
#: relative difference allowed between the runs' nats: the ranks draw their own sampling
#: noise and neighbour choices, so the runs agree in distribution, not bit for bit
TOLERANCE = 0.02


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "acnkit", "run", *SMALL, *args],
                          capture_output=True, text=True, timeout=300)


def history(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ACN only: its ranks share the gradient all-reduce a VAE has, and the code memory besides
def test_two_processes_match_one_and_resume_under_two(tmp_path):
    """Three epochs in one process against two epochs in two, resumed for a third in two
    (the resume reports one JSON line and no progress from any rank)."""
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = run("--prior", "acn", "--epochs", "3", "--out", str(one))
    assert r1.returncode == 0, r1.stderr
    r2 = run("--prior", "acn", "--epochs", "2", "--out", str(two), "--nproc", "2")
    assert r2.returncode == 0, r2.stderr
    assert r2.stderr.count("epoch 2/2  train") == 1, "only rank 0 reports"
    r = subprocess.run([sys.executable, "-m", "acnkit", "run", "--resume", str(two),
                        "--epochs", "3", "--nproc", "2", "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len([line for line in r.stdout.splitlines() if line.startswith("{")]) == 1
    assert "epoch 3/3" not in r.stderr  # --json: no progress from any rank
    h1, h2 = history(one), history(two)
    assert [m["epoch"] for m in h2] == [1, 2, 3]
    for key in ("train_nats", "test_nats"):
        a, b = h1[-1][key], h2[-1][key]
        assert abs(a - b) / a < TOLERANCE, f"{key}: one process {a:.3f}, two {b:.3f}"
