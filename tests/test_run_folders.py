"""Run folders you can trust: one owner at a time, a config that describes its checkpoint,
resume that refuses data changes and records the others, and every failure one line."""

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SMALL, SMALL_NETS, as_from_a_terminal

from acnkit.cli import main
from acnkit.config import RunConfig
from acnkit.engine import Trainer
from acnkit.errors import NumericalError
from acnkit.rundir import RunLock


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def acnkit(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "acnkit", *map(str, args)],
                          capture_output=True, text=True, timeout=kwargs.pop("timeout", 300),
                          **kwargs)


def popen(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "acnkit", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_from_a_terminal)


def one_error_line(result, code):
    """The CLI contract: exit ``code``, one ``error:`` line, no traceback."""
    err = result.stderr
    assert result.exit_code == code if hasattr(result, "exit_code") else \
        result.returncode == code, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != ".acnkit.lock"}


def config_json(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def wait_for(predicate, timeout=120.0):
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.02)


def idx(array, dtype_code=0x08):
    head = struct.pack(">BBBB", 0, 0, dtype_code, array.ndim)
    return head + b"".join(struct.pack(">I", s) for s in array.shape) + array.tobytes()


def idx_dir(folder: Path, seed: int, images=None, code=0x08) -> Path:
    """A small MNIST-format data set of random images."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for split, n in (("train", 120), ("t10k", 40)):
        pixels = images(n) if images else rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (folder / f"{split}-images-idx3-ubyte").write_bytes(idx(pixels, code))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(
            idx(rng.integers(0, 10, n, dtype=np.uint8)))
    return folder


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "two"
    r = invoke("run", *SMALL, "--epochs", 2, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file() and not p.name.startswith("."):
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


# -- 1. resume never changes the data ------------------------------------------------------

def test_resume_refuses_another_data_dir_and_stores_it_absolute(tmp_path, monkeypatch):
    idx_dir(tmp_path / "idxA", seed=1)
    idx_dir(tmp_path / "idxB", seed=2)
    monkeypatch.chdir(tmp_path)
    small = [*SMALL_NETS, "--k", "3"]
    r = invoke("run", *small, "--data", "mnist", "--data-dir", "idxA", "--epochs", 1,
               "--out", "dA")
    assert r.exit_code == 0, r.output
    assert config_json(tmp_path / "dA")["data_dir"] == str(tmp_path / "idxA")
    before = snapshot(tmp_path / "dA")
    r = invoke("run", "--resume", "dA", "--data-dir", "idxB", "--epochs", 2)
    line = one_error_line(r, 1)
    assert "data-dir" in line and "idxA" in line and "idxB" in line
    assert snapshot(tmp_path / "dA") == before
    r = invoke("run", "--resume", "dA", "--data-dir", "./idxA", "--epochs", 2)  # the same
    assert r.exit_code == 0, r.output
    # eval works from anywhere, and --data-dir points it at moved data
    monkeypatch.chdir(tmp_path / "idxB")
    assert invoke("eval", tmp_path / "dA", "--json").exit_code == 0
    (tmp_path / "idxA").rename(tmp_path / "moved")
    assert invoke("eval", tmp_path / "dA").exit_code == 2
    r = invoke("eval", tmp_path / "dA", "--data-dir", tmp_path / "moved", "--json")
    assert r.exit_code == 0, r.output


# -- 2. one owner at a time ----------------------------------------------------------------

def test_a_folder_in_use_is_refused_and_left_alone(tmp_path, two_epochs):
    out = copy_run(two_epochs, tmp_path / "r")
    before = snapshot(out)
    with RunLock(out):
        r = invoke("run", *SMALL, "--prior", "vae", "--overwrite", "--epochs", 1, "--out", out)
        line = one_error_line(r, 1)
        assert f"in use by another acnkit process (pid {os.getpid()})" in line
        one_error_line(invoke("run", "--resume", out, "--epochs", 3), 1)
    assert snapshot(out) == before
    assert invoke("run", "--resume", out, "--epochs", 3).exit_code == 0  # lock released


def test_two_runs_at_once_into_one_folder(tmp_path):
    out = tmp_path / "same"
    first = popen("run", *SMALL, "--prior", "vae", "--seed", 1, "--epochs", 5000, "--overwrite",
                  "--out", out)
    try:
        wait_for(lambda: (out / "config.json").exists())
        second = acnkit("run", *SMALL, "--prior", "acn", "--seed", 2, "--epochs", 1,
                        "--overwrite", "--out", out)
        assert "in use by another acnkit process" in one_error_line(second, 1)
        assert config_json(out)["prior"] == "vae"
    finally:
        first.kill()
        first.wait()
    # a killed owner leaves no stuck lock
    r = acnkit("run", *SMALL, "--epochs", 1, "--overwrite", "--out", out)
    assert r.returncode == 0, r.stderr


# -- 3. --overwrite never pairs a new config with an old checkpoint ------------------------

def test_overwrite_then_interrupt_in_the_first_epoch(tmp_path, two_epochs):
    out = copy_run(two_epochs, tmp_path / "r")
    proc = popen("run", *SMALL[:8], "--prior", "vae", "--batch-size", 2, "--epochs", 3,
                 "--overwrite", "--out", out)
    wait_for(lambda: config_json(out)["prior"] == "vae")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "no epoch had ended" in err and "checkpoint of epoch 0" not in err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "config.json"]
    r = invoke("run", "--resume", out, "--epochs", 1)  # starts the new run, not the old one
    assert r.exit_code == 0, r.output
    assert config_json(out)["prior"] == "vae"
    assert "store" not in torch.load(out / "checkpoint.pt", weights_only=True)


# -- 4. resume: epochs in all, repaired files, a history of changes ------------------------

def test_resume_to_fewer_epochs_is_refused_and_changes_nothing(tmp_path, two_epochs):
    out = copy_run(two_epochs, tmp_path / "r")
    before = snapshot(out)
    line = one_error_line(invoke("run", "--resume", out, "--epochs", 1), 2)
    assert "trained 2 epochs already" in line
    r = invoke("run", "--resume", out)  # finished: says so, writes nothing
    assert r.exit_code == 0 and "nothing to do" in r.stderr
    assert snapshot(out) == before


def test_resume_repairs_lagging_metrics_and_records_changes(tmp_path, two_epochs):
    out = copy_run(two_epochs, tmp_path / "r")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(lines[0] + "\n")  # a crash between the two writes
    r = invoke("run", "--resume", out, "--epochs", 3, "--lr", "0.0005", "--search", "sklearn")
    assert r.exit_code == 0, r.output
    assert "lr 0.001 -> 0.0005" in r.stderr and "search 'torch' -> 'sklearn'" in r.stderr
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2, 3]
    saved = config_json(out)
    assert saved["lr"] == 0.0005 and saved["epochs"] == 3
    assert saved["changes"] == [{"epoch": 2, "changed": {
        "epochs": [2, 3], "lr": [0.001, 0.0005], "search": ["torch", "sklearn"]}}]


def test_resume_refuses_out_config_and_overwrite(tmp_path, two_epochs):
    for extra in (["--out", tmp_path / "x"], ["--overwrite"],
                  ["--config", tmp_path / "c.toml"]):
        line = one_error_line(invoke("run", "--resume", two_epochs, *extra), 2)
        assert f"drop {extra[0]}" in line


def test_stale_temporary_files_are_removed(tmp_path, two_epochs):
    out = copy_run(two_epochs, tmp_path / "r")
    stale = out / ".checkpoint.pt.k3j2h1.tmp"
    stale.write_bytes(b"x" * 1000)
    assert invoke("run", "--resume", out, "--epochs", 3).exit_code == 0
    assert not stale.exists()


# -- 5, 14. several processes --------------------------------------------------------------

def test_usage_errors_under_nproc_are_one_line_exit_2(tmp_path):
    r = acnkit("run", *SMALL, "--unique", "--nproc", 2, "--out", tmp_path / "u")
    assert "--unique is not supported" in one_error_line(r, 2)
    # found only once the ranks have read the data: still one line, exit 2
    r = acnkit("run", *SMALL, "--k", 300, "--nproc", 2, "--out", tmp_path / "k")
    assert "--k 300 must be smaller" in one_error_line(r, 2)


@pytest.mark.parametrize("env, words", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5 is outside 0..1"),
])
def test_stray_distributed_environment(tmp_path, env, words):
    r = invoke("run", *SMALL, "--epochs", 1, "--out", tmp_path / "r", env=env)
    assert words in one_error_line(r, 2)
    assert not (tmp_path / "r").exists()


# -- 6, 7. full disks and read-only folders ------------------------------------------------

def mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not mount_tmpfs(disk, "size=900k"):
        pytest.skip("needs root to mount a small tmpfs")
    yield disk
    subprocess.run(["umount", str(disk)])


def test_a_full_disk_is_one_line_and_the_folder_stays_usable(small_disk):
    out = small_disk / "r"
    r = acnkit("run", "--prior", "vae", "--epochs", 3, "--train-limit", 300, "--out", out)
    line = one_error_line(r, 1)
    assert "no space left" in line and "acnkit run --resume" in line
    assert not list(out.glob(".*.tmp"))
    # the folder holds its config alone; resume tries again and fails the same clean way
    r = acnkit("run", "--resume", out)
    assert "no space left" in one_error_line(r, 1)


@pytest.fixture
def read_only(tmp_path, two_epochs):
    """A run folder and an empty folder on a file system that refuses writes."""
    folder = tmp_path / "ro"
    if os.geteuid() == 0:
        if not mount_tmpfs(folder, "size=64m"):
            pytest.skip("cannot mount a tmpfs")
        copy_run(two_epochs, folder / "run")
        (folder / "empty").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
        subprocess.run(["umount", str(folder)])
    else:
        folder.mkdir()
        copy_run(two_epochs, folder / "run")
        (folder / "empty").mkdir()
        for p in (folder / "run", folder / "empty"):
            p.chmod(0o555)
        yield folder
        for p in (folder / "run", folder / "empty"):
            p.chmod(0o755)


def test_read_only_folders(read_only, tmp_path):
    run = read_only / "run"
    assert "not writable" in one_error_line(invoke("run", "--resume", run, "--epochs", 3), 2)
    r = invoke("daydream", run, "--out", read_only / "empty" / "d.png")
    assert "not writable" in one_error_line(r, 2)


def test_daydream_onto_a_folder_or_an_existing_file(tmp_path, two_epochs):
    folder = tmp_path / "d.png"
    folder.mkdir()
    assert "is a folder" in one_error_line(invoke("daydream", two_epochs, "--out", folder), 2)
    png = tmp_path / "e.png"
    png.write_bytes(b"mine")
    assert "exists" in one_error_line(invoke("daydream", two_epochs, "--out", png), 2)
    assert png.read_bytes() == b"mine"
    assert "--steps 1-100" in one_error_line(
        invoke("daydream", two_epochs, "--steps", 400, "--out", tmp_path / "f.png"), 2)


# -- 8. TOML of the wrong types ------------------------------------------------------------

@pytest.mark.parametrize("line, words", [
    ('lr = "fast"', "lr must be a number"),
    ('k = "5"', "k must be a whole number"),
    ("device = 5", "device must be a string"),
    ('seed = "x"', "seed must be a whole number"),
    ('search_options = "x"', "search-options must be a table of options"),
    ("epochs = true", "epochs must be a whole number, got True"),
])
def test_config_file_values_of_the_wrong_type(tmp_path, line, words):
    toml = tmp_path / "c.toml"
    toml.write_text(line + "\n")
    r = invoke("run", "--config", toml, "--out", tmp_path / "r")
    assert words in one_error_line(r, 2)


# -- 10. checkpoints from elsewhere --------------------------------------------------------

def edit(state: dict, how: str) -> None:
    if how == "missing key":
        del state["optimizer"]
    elif how == "changed shape":
        name, weight = next(iter(state["modules"]["decoder"].items()))
        state["modules"]["decoder"][name] = torch.zeros(weight.shape[0] + 1, *weight.shape[1:])
    elif how == "non-integer epoch":
        state["epoch"] = 1.5
    elif how == "extra config key":
        state["config"]["temperature"] = 2.0
    elif how == "other format":
        state["format"] = 2


@pytest.mark.parametrize("how, words", [
    ("missing key", "lacks 'optimizer'"),
    ("changed shape", "does not fit the model its config describes"),
    ("non-integer epoch", "'epoch' is a float"),
    ("extra config key", "config this acnkit cannot use (unknown config keys temperature"),
    ("other format", "checkpoint format 2"),
])
def test_checkpoints_edited_or_from_another_version(tmp_path, two_epochs, how, words):
    out = copy_run(two_epochs, tmp_path / "r")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    edit(state, how)
    torch.save(state, out / "checkpoint.pt")
    assert words in one_error_line(invoke("eval", out), 1)
    assert words in one_error_line(invoke("run", "--resume", out, "--epochs", 3), 1)


def test_a_checkpoint_with_compressed_members_is_refused_before_it_is_inflated(
        tmp_path, two_epochs):
    out = copy_run(two_epochs, tmp_path / "r")
    plain = (out / "checkpoint.pt").read_bytes()
    # The same members deflated: torch.load would inflate them (a few kB of zeros can claim
    # gigabytes); torch.save never compresses, so acnkit refuses any compressed member.
    with zipfile.ZipFile(io.BytesIO(plain)) as zin, \
            zipfile.ZipFile(out / "checkpoint.pt", "w", zipfile.ZIP_DEFLATED) as zout:
        for member in zin.infolist():
            zout.writestr(member.filename, zin.read(member.filename))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2  # torch would
    assert "holds compressed members" in one_error_line(invoke("eval", out), 1)
    (out / "checkpoint.pt").write_bytes(plain)
    assert invoke("eval", out).exit_code == 0


def test_fifo_checkpoint_does_not_hang(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    os.mkfifo(out / "checkpoint.pt")
    r = acnkit("eval", out, timeout=60)
    assert "not a regular file" in one_error_line(r, 1)


# -- 11. nets that do not fit, runs that diverge -------------------------------------------

def test_nets_too_large_for_memory(tmp_path):
    r = invoke("run", "--prior-hidden", 1_000_000_000, "--out", tmp_path / "r")
    assert "do not fit in the memory" in one_error_line(r, 2)
    assert not (tmp_path / "r").exists()


def test_divergence_stops_training():
    trainer = Trainer(RunConfig(latent_dim=4, encoder_hidden="32", decoder_hidden="32",
                                prior_hidden=16, train_limit=200, test_limit=50, epochs=3))
    trainer.fit(1)
    with torch.no_grad():  # what a blow-up does to the prior: its means far from every code
        trainer.model.prior.out.bias[: 4].add_(50.0)
    with pytest.raises(NumericalError, match="training diverged at epoch 2"):
        trainer.fit(2)
    assert len(trainer.history) == 1


# -- 12, 13. bench arguments, IDX pixel types ----------------------------------------------

@pytest.mark.timeout(60)
def test_bench_arguments(tmp_path):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(10, np.float32))
    huge = tmp_path / "huge.npy"  # a header that claims 12 TB: never allocated
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**12, 3)})
    huge.write_bytes(header.getvalue() + bytes(40))
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)  # np.load or torch.load would wait for a writer for ever
    deflated = tmp_path / "deflated.pt"
    torch.save(torch.zeros(100, 4), tmp_path / "plain.pt")
    with zipfile.ZipFile(tmp_path / "plain.pt") as zin, \
            zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zout:
        for member in zin.infolist():
            zout.writestr(member.filename, zin.read(member.filename))
    cases = [
        (["bench", "search", "--device", "foo"], "--device must be cpu or cuda"),
        (["bench", "memory", "--n", 0], "--n must be >= 1"),
        (["bench", "search", "--codes", tmp_path / "missing.npy"], "does not exist"),
        (["bench", "search", "--codes", obj], "is not a .npy array of numbers (it holds Python"),
        (["bench", "search", "--codes", huge], "its header claims 3000000000000 values"),
        (["bench", "search", "--codes", flat], "must hold a 2-D array"),
        (["bench", "search", "--codes", fifo],
         f"--codes {fifo} is a FIFO, not a regular file; give a run folder"),
        (["bench", "search", "--codes", deflated], "compressed members, which torch.save never"),
    ]
    for args, words in cases:
        assert words in one_error_line(invoke(*args), 2), args


@pytest.mark.parametrize("code, dtype", [(0x09, np.int8), (0x0D, ">f4")])
def test_idx_pixels_that_are_not_bytes(tmp_path, code, dtype):
    data = idx_dir(tmp_path / "idx", 0, images=lambda n: np.ones((n, 28, 28), dtype),
                   code=code)
    r = invoke("run", *SMALL, "--data", "mnist", "--data-dir", data, "--out", tmp_path / "r")
    assert "MNIST-format images are unsigned bytes" in one_error_line(r, 2)


# -- compare: validated before training, resumable -----------------------------------------

def test_compare_refuses_before_training(tmp_path):
    out = tmp_path / "c"
    r = invoke("compare", *SMALL, "--k", 1500, "--epochs", 1, "--out", out)
    assert "--k 1500 must be smaller" in one_error_line(r, 2)
    assert not out.exists()


def test_interrupted_compare_resumes_to_its_table(tmp_path):
    out = tmp_path / "my compare"
    proc = popen("compare", *SMALL[:8], "--batch-size", 4, "--epochs", 2, "--out", out)
    wait_for(lambda: (out / "vae" / "config.json").exists())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"acnkit compare --resume --out '{out}'" in err  # shell-quoted
    assert not (out / "compare.csv").exists()
    r = acnkit("compare", "--resume", "--out", out)
    assert r.returncode == 0, r.stderr
    rows = (out / "compare.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 and (out / "compare.png").is_file()
    one_error_line(acnkit("compare", "--resume", "--lr", "0.1", "--out", out), 2)


def test_no_lock_file_is_left_after_a_run_and_a_comparison(tmp_path):
    out = tmp_path / "c"
    r = invoke("compare", *SMALL, "--epochs", 1, "--out", out)
    assert r.exit_code == 0, r.output
    assert not list(out.rglob(".acnkit.lock"))


def test_a_lock_released_and_removed_is_taken_by_the_next_holder(tmp_path):
    from acnkit.errors import AcnkitError
    from acnkit.rundir import LOCK, RunLock

    first = RunLock(tmp_path).__enter__()
    with pytest.raises(AcnkitError, match="in use by another acnkit process"):
        RunLock(tmp_path).__enter__()
    first.__exit__(None, None, None)
    assert not (tmp_path / LOCK).exists()
    with RunLock(tmp_path):
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
    (tmp_path / LOCK).write_text("12345\n")  # left by a process killed with -9: no one holds it
    with RunLock(tmp_path):
        pass
