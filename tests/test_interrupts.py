"""Signals: SIGTERM/SIGINT stop within a batch and keep the last epoch; SIGKILL at random
moments loses nothing that a resume cannot replay exactly."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL_NETS, as_from_a_terminal

SMALL = [*SMALL_NETS, "--batch-size", "32", "--train-limit", "1000",
         "--test-limit", "200"]


def acnkit(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "acnkit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal)


def metrics(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("_seconds")} for line in lines]


def wait_for(path: Path, timeout: float = 60) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_stops_and_keeps_the_last_epoch(tmp_path, sig):
    out = tmp_path / "r"
    proc = acnkit("run", *SMALL, "--epochs", "200", "--out", str(out))
    wait_for(out / "checkpoint.pt")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert f"acnkit run --resume {out}" in err
    assert "Traceback" not in err
    done = metrics(out)
    assert 1 <= len(done) < 200
    r = subprocess.run([sys.executable, "-m", "acnkit", "run", "--resume", str(out),
                        "--epochs", str(len(done) + 1)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(metrics(out)) == len(done) + 1


def started(proc: subprocess.Popen, out: Path, timeout: float = 300) -> bool:
    """Wait until the child holds the run folder's lock (torch imported, nets built: it is
    about to train), so that a kill lands inside the run however slow the machine; False if
    the child ended first."""
    end = time.monotonic() + timeout
    while not (out / ".acnkit.lock").exists():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < end, "the run never started"
        time.sleep(0.02)
    return True


#: a run of about 1,500 steps: long enough for four kills, short on a busy machine
KILLED = [*SMALL_NETS, "--batch-size", "16", "--train-limit", "400", "--test-limit", "100"]


def test_sigkill_at_random_moments_then_resume_matches(tmp_path):
    epochs = "60"
    whole = tmp_path / "whole"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "acnkit", "run", *KILLED, "--epochs", epochs,
                        "--out", str(whole)], capture_output=True, text=True)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for _ in range(12):
        if (out / "checkpoint.pt").exists():
            args = ["run", "--resume", str(out)]
        else:
            args = ["run", *KILLED, "--epochs", epochs, "--out", str(out), "--overwrite"]
        proc = acnkit(*args)
        try:
            # Four kills, each at a random moment of training (timed from the moment the
            # child starts it, not from its launch), then the run is let finish: at most
            # three times as long as the whole run took, plus start-up.
            if kills < 4 and started(proc, out):
                proc.wait(timeout=rng.uniform(0.2, 0.1 * took))
            else:
                proc.wait(timeout=3 * took + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            kills += 1
            (out / ".acnkit.lock").unlink(missing_ok=True)  # stale: its holder is gone
            if (out / "metrics.jsonl").exists():
                for line in (out / "metrics.jsonl").read_text().splitlines():
                    json.loads(line)  # never a half line
            continue
        assert proc.returncode == 0, proc.stderr.read()
        break
    else:
        pytest.fail("the run never finished")
    assert kills == 4, "the run ended before it was killed four times; lengthen it"
    assert metrics(out) == metrics(whole)
