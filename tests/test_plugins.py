import json

import pytest
from click.testing import CliRunner

from acnkit.cli import main
from acnkit.errors import PluginError, UsageError
from acnkit.registry import get_registry

TINY = """
    import acnkit
    from acnkit_plugins.search_torch import TorchSearcher

    class TinySearcher(TorchSearcher):
        pass

    @acnkit.hookimpl
    def register_searchers(register):
        register("tiny", TinySearcher, description="a test searcher")
"""


def test_builtins_are_registered_through_entry_points():
    reg = get_registry()
    assert {"acn", "vae"} <= set(reg.names("prior"))
    assert {"torch", "sklearn", "annoy"} <= set(reg.names("searcher"))
    assert {"digits", "mnist", "fashion-mnist"} <= set(reg.names("dataset"))
    assert reg.get("prior", "acn").distribution == "acnkit"


def test_unknown_name_lists_registered_names():
    with pytest.raises(UsageError, match=r"unknown prior 'nope'; registered priors: acn, vae"):
        get_registry().get("prior", "nope")


def test_third_party_plugin_is_listed_and_selectable(make_plugin):
    make_plugin("tinyplug", TINY, entry="tiny")
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    tiny = [p for p in listed["plugins"] if p["name"] == "tiny"][0]
    assert tiny["distribution"] == "tinyplug" and tiny["registers"] == {"searcher": ["tiny"]}
    assert "tiny" in listed["components"]["searcher"]


def test_third_party_plugin_runs(make_plugin, tmp_path):
    make_plugin("tinyplug", TINY, entry="tiny")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--search", "tiny", "--epochs", "1",
                                       "--train-limit", "200", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["epoch"] == 1


def test_duplicate_names_name_both_distributions(make_plugin):
    make_plugin("dupplug", TINY.replace('"tiny"', '"torch"'), entry="dup")
    with pytest.raises(PluginError, match="searcher 'torch' is registered twice") as err:
        get_registry()
    assert "(acnkit)" in str(err.value) and "(dupplug)" in str(err.value)


def test_plugin_that_raises_on_import_is_reported_and_others_work(make_plugin, capsys):
    make_plugin("brokenplug", "raise RuntimeError('boom at import')\n", entry="broken")
    reg = get_registry()
    assert "torch" in reg.names("searcher")
    assert reg.plugins["broken"].error == "RuntimeError: boom at import"
    assert "'broken' (brokenplug) failed to load" in capsys.readouterr().err


def test_plugin_that_raises_while_registering_is_skipped(make_plugin, capsys):
    make_plugin("badreg", """
        import acnkit
        @acnkit.hookimpl
        def register_priors(register):
            raise KeyError("oops")
    """, entry="badreg")
    reg = get_registry()
    assert "acn" in reg.names("prior")
    assert reg.plugins["badreg"].error.startswith("KeyError in register_priors")
    assert "'badreg' (badreg) failed to register" in capsys.readouterr().err


def test_plugin_can_add_a_command(make_plugin):
    make_plugin("cmdplug", """
        import click
        import acnkit

        @acnkit.hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                "Say hello."
                click.echo("hello from a plugin")
    """, entry="cmdplug")
    import acnkit.cli as cli_module

    cli_module.main._plugin_commands_added = False
    try:
        r = CliRunner().invoke(cli_module.main, ["hello"])
        assert r.exit_code == 0 and r.output.strip() == "hello from a plugin"
        listed = json.loads(CliRunner().invoke(cli_module.main, ["plugins", "--json"]).output)
        assert [p["commands"] for p in listed["plugins"] if p["name"] == "cmdplug"] == [["hello"]]
    finally:
        cli_module.main.commands.pop("hello", None)
        cli_module.main._plugin_commands_added = False
