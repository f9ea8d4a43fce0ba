import json

import pytest
from click.testing import CliRunner

from acnkit.cli import main
from acnkit.errors import UsageError
from acnkit.registry import get_registry, reset_registry

TINY = """
    import acnkit
    from acnkit_plugins.search_torch import TorchSearcher

    class TinySearcher(TorchSearcher):
        pass

    @acnkit.hookimpl
    def register_searchers(register):
        register("tiny", TinySearcher, description="a test searcher")
"""


def test_builtins_are_registered_by_acnkit_itself():
    reg = get_registry()
    assert {"acn", "vae"} <= set(reg.names("prior"))
    assert {"torch", "sklearn", "annoy"} <= set(reg.names("searcher"))
    assert {"digits", "mnist", "fashion-mnist"} <= set(reg.names("dataset"))
    assert reg.get("prior", "acn").distribution == "acnkit"
    assert all(info.builtin for info in reg.plugins.values() if info.distribution == "acnkit")


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


def test_plugin_that_raises_on_import_is_reported_and_others_work(make_plugin, capsys):
    make_plugin("brokenplug", "raise RuntimeError('boom at import')\n", entry="broken")
    reg = get_registry()
    assert "torch" in reg.names("searcher")
    assert reg.plugins["broken"].error == "RuntimeError: boom at import"
    assert "'broken' (brokenplug) failed and was skipped" in capsys.readouterr().err


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
    assert "'badreg' (badreg) failed and was skipped" in capsys.readouterr().err


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


# -- safe loading: nothing a third party installs replaces a built-in or stops acnkit ------

def listed(cli, name):
    r = CliRunner().invoke(cli, ["plugins", "--json"])
    assert r.exit_code == 0, r.output
    return next(p for p in json.loads(r.stdout)["plugins"] if p["name"] == name)


def test_an_entry_point_named_like_a_builtin_does_not_shadow_it(make_plugin, cli, tmp_path):
    make_plugin("evilpkg", TINY, entry="datasets")
    r = CliRunner().invoke(cli, ["run", "--epochs", "1", "--train-limit", "200",
                                 "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    info = listed(cli, "evilpkg:datasets")
    assert info["registers"] == {"searcher": ["tiny"]}
    assert "entry point name 'datasets' is taken" in info["warnings"][0]
    assert listed(cli, "datasets")["registers"] == {"dataset": [
        "digits", "mnist", "fashion-mnist", "cifar10", "images", "sample-patches"]}


def test_a_clashing_component_keeps_the_builtin_and_names_both(make_plugin, cli, tmp_path):
    make_plugin("dupplug", TINY.replace('"tiny"', '"torch"'), entry="dup")
    r = CliRunner().invoke(cli, ["run", "--epochs", "1", "--train-limit", "200",
                                 "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    assert "searcher 'torch' is already registered by plugin 'search_torch' (acnkit)" in r.stderr
    assert "plugin 'dup' (dupplug)" in r.stderr
    assert get_registry().get("searcher", "torch").plugin == "search_torch"
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0


def test_two_third_party_plugins_clash_first_wins(make_plugin, cli):
    make_plugin("aplug", TINY, entry="a")
    make_plugin("bplug", TINY, entry="b")
    reg = get_registry()
    owners = {reg.get("searcher", "tiny").plugin}
    assert owners <= {"a", "b"}
    loser = ({"a", "b"} - owners).pop()
    assert any("searcher 'tiny' is already registered" in w
               for w in reg.plugins[loser].warnings)


COMMAND_RUN = """
    import click
    import acnkit

    @acnkit.hookimpl
    def register_commands(cli):
        @cli.command()
        def run():
            click.echo("hijacked")

        @cli.command()
        def extra():
            click.echo("extra")
"""


def test_a_plugin_command_named_like_a_builtin_is_skipped_and_reported(make_plugin, cli,
                                                                      tmp_path):
    make_plugin("hijack", COMMAND_RUN, entry="hijack")
    r = CliRunner().invoke(cli, ["run", "--epochs", "1", "--train-limit", "200",
                                 "--out", str(tmp_path / "r")])
    assert r.exit_code == 0 and "hijacked" not in r.output
    assert "command 'run' is one of acnkit's own commands" in r.stderr
    assert CliRunner().invoke(cli, ["extra"]).output.strip() == "extra"
    info = listed(cli, "hijack")
    assert info["commands"] == ["extra"]
    assert any("command 'run'" in w for w in info["warnings"])


@pytest.mark.parametrize("source, error", [
    ("""
    import acnkit
    @acnkit.hookimpl
    def register_commands(cli):
        raise RuntimeError("commands broke")
    """, "RuntimeError in register_commands: commands broke"),
    ("""
    import acnkit
    @acnkit.hookimpl
    def register_priors(register):
        register(42, "not callable")
    """, "PluginError in register_priors: register(42, ...)"),
    ("""
    import acnkit
    @acnkit.hookimpl
    def register_priors(register):
        register("fine", dict)
        register("fine", dict)
    """, "prior 'fine' is registered twice by this plugin"),
])
def test_a_plugin_failing_in_a_hook_is_skipped_and_the_cli_works(make_plugin, cli, source,
                                                                  error):
    make_plugin("breaks", source, entry="breaks")
    for args in (["--help"], ["plugins"], ["run", "--help"]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0 and "Traceback" not in r.output, (args, r.output)
    assert error in listed(cli, "breaks")["error"]


def test_a_plugin_failing_in_one_hook_keeps_nothing_from_the_others(make_plugin, cli):
    make_plugin("half", """
        import acnkit
        from acnkit_plugins.search_torch import TorchSearcher

        @acnkit.hookimpl
        def register_searchers(register):
            register("half-searcher", TorchSearcher)

        @acnkit.hookimpl
        def register_priors(register):
            raise ValueError("second hook fails")
    """, entry="half")
    assert "half-searcher" not in get_registry().names("searcher")


@pytest.mark.parametrize("source, hint", [
    ("""
    import acnkit
    @acnkit.hookimpl
    def register_searcher(register):
        register("x", dict)
    """, "register_searcher is not an acnkit hook; did you mean register_searchers?"),
    ("""
    def register_priors(register):
        register("x", dict)
    """, "function register_priors is not decorated with @acnkit.hookimpl"),
    ("x = 1\n", "no function decorated with @acnkit.hookimpl"),
])
def test_a_plugin_that_registers_nothing_is_flagged(make_plugin, cli, source, hint):
    make_plugin("quiet", source, entry="quiet")
    warnings = listed(cli, "quiet")["warnings"]
    assert warnings and warnings[0].startswith("registers nothing") and hint in warnings[0]
    r = CliRunner().invoke(cli, ["plugins"])
    assert "registers nothing" in r.stdout


def test_an_unknown_name_points_to_a_plugin_that_registers_nothing(make_plugin, cli):
    """A loss named from a package that registers nothing: the error names the package and
    the command that says why, and spells the plural of 'loss' right."""
    make_plugin("betabinom", "x = 1\n", entry="betabinom")
    r = CliRunner().invoke(cli, ["run", "--loss", "betabinom", "--epochs", "1"])
    assert r.exit_code == 2 and "registered losses: " in r.stderr, r.output
    assert "plugin 'betabinom'" in r.stderr and "registers nothing: acnkit plugins says why" \
        in r.stderr, r.stderr


def test_tables_in_a_pipe_keep_their_full_width(cli):
    """Output that is not a terminal (a file, a pipe) gets every table whole, never cut to
    80 columns with an ellipsis."""
    r = CliRunner().invoke(cli, ["plugins"])  # CliRunner's output is no terminal
    assert r.exit_code == 0 and "\u2026" not in r.stdout, r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) > 80


def test_load_plugins_environment_variable(make_plugin, monkeypatch):
    make_plugin("tinyplug", TINY, entry="tiny")
    monkeypatch.setenv("ACNKIT_LOAD_PLUGINS", "")
    reset_registry()
    assert "tiny" not in get_registry().names("searcher")
    assert "torch" in get_registry().names("searcher")  # built-ins always load
    for value in ("tiny", "tinyplug", "other, tinyplug"):
        monkeypatch.setenv("ACNKIT_LOAD_PLUGINS", value)
        reset_registry()
        assert "tiny" in get_registry().names("searcher"), value


# -- factory options: the real flag, and the plugin blamed for its own signature -----------

PRIOR = """
    import torch
    import acnkit
    from acnkit.distributions import DiagGaussian
    from acnkit.interfaces import Prior

    class Flat(Prior):
        def __init__(self, latent_dim{params}):
            super().__init__()
            self.latent_dim = latent_dim
            self.scale = torch.nn.Parameter(torch.zeros(()))

        def distribution(self, context, batch_size):
            zeros = torch.zeros(batch_size, self.latent_dim) + 0 * self.scale
            return DiagGaussian(zeros, zeros)

    @acnkit.hookimpl
    def register_priors(register):
        register("flat", Flat)
"""


@pytest.mark.parametrize("params, args, code, words", [
    ("", [], 0, None),                                  # takes no option: none passed
    (", hidden=8", [], 0, None),
    ("", ["--mixtures", "3"], 2, "prior 'flat' (plugin 'flat') does not take --mixtures"),
    (", layers=1", ["--prior-hidden", "64"], 2, "does not take --prior-hidden"),
    (", temperature", [], 1, "its factory requires 'temperature', which acnkit does not give"),
])
def test_factory_options_follow_its_signature(make_plugin, cli, tmp_path, params, args, code,
                                              words):
    make_plugin("flat", PRIOR.format(params=params), entry="flat")
    r = CliRunner().invoke(cli, ["run", "--prior", "flat", *args, "--epochs", "1",
                                 "--train-limit", "200", "--out", str(tmp_path / "r")])
    assert r.exit_code == code, r.output
    if words:
        assert words in r.stderr and "Traceback" not in r.stderr


SIZED = """
import torch
import acnkit
from acnkit.distributions import DiagGaussian
from acnkit.interfaces import Prior

class Sized(Prior):
    conditional = True

    def __init__(self, latent_dim, hidden=4, layers=1):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = torch.nn.Sequential(torch.nn.Linear(latent_dim, hidden),
                                       torch.nn.Linear(hidden, 2 * latent_dim))

    def distribution(self, context, batch_size):
        mean, log_std = self.net(context).chunk(2, -1)
        return DiagGaussian(mean, log_std.clamp(-5, 2))

@acnkit.hookimpl
def register_priors(register):
    register("sized", Sized)
"""


@pytest.mark.parametrize("args, hidden", [([], 4), (["--prior-hidden", "512"], 512)])
def test_only_options_the_user_gave_reach_a_factory(make_plugin, cli, tmp_path, args, hidden):
    """A factory's own defaults stand unless the user sets the option (even to the value
    that once was acnkit's default)."""
    from acnkit import load_run

    make_plugin("sized", SIZED, entry="sized")
    out = tmp_path / "r"
    r = CliRunner().invoke(cli, ["run", "--prior", "sized", *args, "--epochs", "1",
                                 "--train-limit", "200", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert load_run(out).model.prior.net[0].out_features == hidden  # rebuilt the same way
    assert json.loads((out / "config.json").read_text())["prior_hidden"] == (
        512 if args else None)


def test_builtin_defaults_are_the_documented_sizes():
    import torch

    from acnkit import RunConfig
    from acnkit.model import build_model

    model = build_model(RunConfig().validate(), (1, 8, 8), torch.device("cpu"))
    prior = model.prior
    assert len(prior.hidden) == 3 and prior.hidden[0].out_features == 512
    assert prior.mixtures == 1
