from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from acnkit.registry import reset_registry

# Two xdist workers share the machine, so the free cores that acnkit's thread choice reads
# (acnkit.threads) change from one moment to the next; runs that tests compare bit for bit
# (a run against its resumption, made minutes apart) must compute with the same threads,
# as the thread count sets how sums round. The tests of that choice clear it
# (monkeypatch.delenv), the portability kit sets its own.
os.environ.setdefault("ACNKIT_THREADS", "1")

# A suite started in the background (`pytest &` in a script) inherits SIGINT ignored, and so
# would every acnkit process the tests start and then stop with Ctrl-C's signal. Catching it
# here gives those children its default disposition again (a caught signal resets on exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: the smallest nets that still learn, for tests that train through the command line
SMALL_NETS = ["--latent-dim", "8", "--encoder-hidden", "32", "--decoder-hidden", "32",
              "--prior-hidden", "16"]
#: ... on a few hundred digits: an epoch in well under a second
SMALL = [*SMALL_NETS, "--train-limit", "300", "--test-limit", "100"]


def as_from_a_terminal() -> None:
    """A child's signals as a terminal session leaves them (the preexec_fn of the tests'
    subprocesses): a suite started under nohup, or in a shell's background, ignores SIGHUP
    or SIGINT and its children inherit that, and acnkit, as it should, leaves an ignored
    signal ignored; the tests of what a signal does need it delivered."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Each test starts with torch on one thread: the tests' nets are tiny, and two threads
    spinning at every barrier made the suite slower on the 2-core CI machine (a third of
    it, in process, 53 s against 62 s); commands invoked in process set their own."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def make_plugin(tmp_path, monkeypatch):
    """Install a tiny third-party distribution with an ``acnkit`` entry point onto sys.path.

    Returns a function (dist_name, module_source, entry_name=None) -> site folder.
    """
    modules: list[str] = []
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))

    def make(dist: str, source: str, entry: str | None = None, module: str | None = None) -> Path:
        module = module or f"{dist.replace('-', '_')}_plugin"
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[acnkit]\n{entry or dist} = {module}\n")
        modules.append(module)
        reset_registry()
        return site

    yield make
    for module in modules:  # another test may reuse the name with other source
        sys.modules.pop(module, None)
    reset_registry()


@pytest.fixture
def cli():
    """The CLI group, made to add plugin commands afresh and cleaned of them afterwards."""
    import acnkit.cli as cli_module

    own = set(cli_module.main.commands)
    cli_module.main._plugin_commands_added = False
    yield cli_module.main
    for name in set(cli_module.main.commands) - own:
        cli_module.main.commands.pop(name)
    cli_module.main._plugin_commands_added = False
