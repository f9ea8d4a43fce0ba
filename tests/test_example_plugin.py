"""The example plugin in docs/examples installs as a separate distribution and works
through the entry point, exactly as a user's own plugin would."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "acnkit-numpy-search"


def sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed():
    r = sh("-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    yield
    sh("-m", "pip", "uninstall", "-y", "-q", "acnkit-numpy-search")


def test_example_plugin_is_listed(installed):
    r = sh("-m", "acnkit", "plugins", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    mine = [p for p in listed["plugins"] if p["distribution"] == "acnkit-numpy-search"]
    assert mine and mine[0]["registers"] == {"searcher": ["numpy"]}


def test_example_plugin_trains(installed, tmp_path):
    r = sh("-m", "acnkit", "run", "--search", "numpy", "--epochs", "1", "--train-limit", "400",
           "--out", str(tmp_path / "run"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["epoch"] == 1


def test_example_plugin_passes_the_contract(installed):
    r = sh("-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "8 passed" in r.stdout
