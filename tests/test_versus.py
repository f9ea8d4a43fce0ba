"""``acnkit bench versus``: a revision installed beside the working tree, figures measured
on both in turn, ratios from the medians; refusals in one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from acnkit.bench import versus
from acnkit.cli import main
from acnkit.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _checkout() -> bool:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    return r.returncode == 0


needs_git = pytest.mark.skipif(not _checkout(), reason="not a git checkout")


@needs_git
def test_head_against_the_working_tree_gives_both_medians_and_their_ratio(tmp_path):
    """HEAD is installed into a venv of its own and imports its own acnkit there; both
    sides measure; the ratio is the working tree's median over the revision's."""
    r = invoke("bench", "versus", "HEAD", "--figure", "search", "--repeat", 1, "--cache",
               tmp_path, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert result["commit"] == head
    (row,) = result["rows"]
    assert len(row["base_samples"]) == len(row["work_samples"]) == 1
    assert row["base"] > 0 and row["work"] > 0
    assert row["ratio"] == pytest.approx(row["work"] / row["base"])
    python = tmp_path / head / "venv" / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import acnkit; print(acnkit.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path).stdout
    assert where.startswith(str(tmp_path / head / "venv")), where  # not the working tree's
    assert (tmp_path / head / versus.READY).exists()
    r = invoke("bench", "versus", "HEAD", "--figure", "search", "--repeat", 1, "--cache",
               tmp_path)  # the venv is reused: nothing installed again
    assert r.exit_code == 0 and "installing" not in r.output, r.output
    assert "x " + head[:10] in r.stdout


@needs_git
@pytest.mark.parametrize("rev,words", [("no-such-branch", "names no commit"),
                                       ("-x", "is not a revision")])
def test_a_revision_that_is_no_commit_is_refused_in_one_line(rev, words):
    r = invoke("bench", "versus", "--figure", "search", "--", rev)
    assert r.exit_code == 2 and r.stderr.startswith("error:") and words in r.stderr, r.output
    assert r.stderr.count("\n") == 1


def test_figures_and_counts_are_checked_before_anything_is_installed():
    with pytest.raises(UsageError, match="unknown figure 'speed'; figures: epoch, codec-mlp"):
        versus.versus("HEAD", ["speed"], 1, "digits", 10, 1, None, print)
    with pytest.raises(UsageError, match="--repeat"):
        versus.versus("HEAD", [], 0, "digits", 10, 1, None, print)


def test_a_figure_that_fails_on_one_side_is_reported_not_fatal(tmp_path):
    """An older revision may lack an option: its cells say why, the other side's figures
    and every other figure still come out."""
    fake = tmp_path / "fake.py"
    fake.write_text(
        "import json, sys\n"
        "if sys.argv[1:3] == ['-m', 'acnkit'] and 'search' in sys.argv:\n"
        "    print(json.dumps([{'query_ms_per_batch': float(sys.argv[0].count('/'))}]))\n"
        "else:\n"
        "    print('error: no such option: --json', file=sys.stderr); sys.exit(2)\n")
    runner = tmp_path / "python"
    runner.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} \"$@\"\n")
    runner.chmod(0o755)
    sides = [versus.Side("old", str(runner), tmp_path), versus.Side("new", str(runner), tmp_path)]
    chosen = {k: v for k, v in versus.figures("digits", 10, 1).items()
              if k in ("epoch", "search")}
    versus.measure(sides, chosen, 3, tmp_path, lambda line: None)
    rows = {row["figure"]: row for row in versus.table(sides, chosen)}
    assert rows["VAE epoch"]["base"] is None
    assert rows["VAE epoch"]["base_failed"] == "error: no such option: --json"
    search = rows["exact search, 60000 x 32 codes"]
    assert len(search["base_samples"]) == 3 and search["ratio"] == 1.0


@pytest.mark.parametrize("helps, kept", [("--limit  --json", False),
                                         ("--no-classic / --classic", True)])
def test_a_flag_that_only_saves_time_is_left_out_where_a_side_lacks_it(tmp_path, helps, kept):
    fake = tmp_path / "fake.py"
    fake.write_text(f"import sys\nif '--help' in sys.argv:\n    print({helps!r})\n")
    runner = tmp_path / "python"
    runner.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} \"$@\"\n")
    runner.chmod(0o755)
    figure = versus.figures("digits", 10, 1)["codec-mlp"]
    command = versus._supported(versus.Side("old", str(runner), tmp_path), figure, tmp_path)
    assert ("--no-classic" in command) == kept
    assert command[:2] == ("bench", "codec") and "--json" in command
