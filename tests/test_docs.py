from pathlib import Path

import pytest

from acnkit.cli.reference import render

DOCS = Path(__file__).parent.parent / "docs"


def test_cli_reference_matches_help():
    assert (DOCS / "cli.md").read_text() == render(), (
        "docs/cli.md is out of date: python -m acnkit.cli.reference > docs/cli.md")


def test_every_hook_is_documented_in_architecture():
    from acnkit import hookspecs

    text = (DOCS / "architecture.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert len(hooks) == 7
    for name in hooks:
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"
        assert f"`{name}" in text, f"docs/architecture.md does not mention {name}"


def test_docs_links_resolve():
    for page in [*DOCS.glob("*.md"), DOCS.parent / "README.md"]:
        for part in page.read_text().split("](")[1:]:
            target = part.split(")")[0]
            if target.startswith(("http", "#")):
                continue
            assert (page.parent / target.split("#")[0]).exists(), f"{page.name} -> {target}"


# -- the examples of docs/writing-a-plugin.md run as written ------------------------------

def examples() -> dict[str, str]:
    import re

    text = (DOCS / "writing-a-plugin.md").read_text()
    return dict(re.findall(r"```python\n# example: (\w+)\n(.*?)```", text, re.S))


def load_example(name: str):
    import types

    module = types.ModuleType(f"example_{name}")
    exec(compile(examples()[name], f"writing-a-plugin.md:{name}", "exec"), module.__dict__)
    return module


def registered(module, hook: str) -> dict:
    found = {}
    getattr(module, hook)(register=lambda name, factory, description="": found.update(
        {name: factory}))
    return found


def test_every_example_is_tested():
    assert set(examples()) == {"laplace_prior", "hnsw_searcher", "blobs_dataset",
                               "export_codes", "beta_binomial_loss"}


def train_with(cli, tmp_path, *args):
    from click.testing import CliRunner

    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["run", "--latent-dim", "4", "--encoder-hidden", "32",
                                 "--decoder-hidden", "32", "--epochs", "1",
                                 "--train-limit", "200", "--out", str(out), *args])
    assert r.exit_code == 0, r.output
    return out


def test_example_laplace_prior_passes_its_kit_and_trains(make_plugin, cli, tmp_path):
    from acnkit.testing import check_prior

    check_prior(registered(load_example("laplace_prior"), "register_priors")["laplace"])
    make_plugin("laplace-prior", examples()["laplace_prior"], entry="laplace")
    train_with(cli, tmp_path, "--prior", "laplace")


def test_example_hnsw_searcher_passes_the_contract_and_trains(make_plugin, cli, tmp_path):
    pytest.importorskip("hnswlib")
    from acnkit.testing import run_contract

    factory = registered(load_example("hnsw_searcher"), "register_searchers")["hnsw"]
    run_contract(factory, recall_floor=0.95)
    make_plugin("hnsw-search", examples()["hnsw_searcher"], entry="hnsw")
    train_with(cli, tmp_path, "--search", "hnsw")


def test_example_blobs_dataset_passes_its_kit_and_trains(make_plugin, cli, tmp_path):
    from acnkit.testing import check_dataset

    check_dataset(registered(load_example("blobs_dataset"), "register_datasets")["blobs"])
    make_plugin("blobs-data", examples()["blobs_dataset"], entry="blobs")
    train_with(cli, tmp_path, "--data", "blobs")


def test_example_export_codes_command(make_plugin, cli, tmp_path):
    import numpy as np
    from click.testing import CliRunner

    make_plugin("export-codes", examples()["export_codes"], entry="export")
    out = train_with(cli, tmp_path)
    r = CliRunner().invoke(cli, ["export-codes", str(out), "-o", str(tmp_path / "c.npy")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "c.npy").shape == (360, 4)


def test_example_beta_binomial_loss_passes_its_kit_trains_and_codes(make_plugin, cli, tmp_path):
    """The loss example: its kit at 17 and 256 levels, grey and colour; its
    log-probabilities against the textbook formula; a 17-level digits run trained with it
    compresses and decompresses exactly."""
    import numpy as np
    import torch
    from click.testing import CliRunner

    from acnkit.testing import check_loss

    factory = registered(load_example("beta_binomial_loss"), "register_losses")["betabinom"]
    for shape, levels in (((1, 8, 8), 17), ((3, 4, 4), 256)):
        check_loss(factory, shape, levels=levels)
    loss = factory(levels=17)
    params = torch.randn(2, 2, 3, 3)
    a, b = (torch.nn.functional.softplus(params.double()) + 1e-3).chunk(2, 1)
    k, n = torch.arange(17, dtype=torch.float64), 16
    a, b = a[..., None], b[..., None]
    textbook = (torch.lgamma(torch.tensor(n + 1.0)) - torch.lgamma(k + 1)
                - torch.lgamma(n - k + 1) + torch.lgamma(k + a) + torch.lgamma(n - k + b)
                - torch.lgamma(n + a + b) + torch.lgamma(a + b) - torch.lgamma(a)
                - torch.lgamma(b))
    assert torch.allclose(loss.log_probabilities(params), textbook, atol=1e-9)
    make_plugin("betabinom-loss", examples()["beta_binomial_loss"], entry="betabinom")
    out = train_with(cli, tmp_path, "--data", "digits", "--pixels", "native", "--loss",
                     "betabinom", "--test-limit", "40")
    from acnkit import load_run
    from acnkit.codec import compress, decompress

    run = load_run(out)
    images = run.data.test_x.numpy()[:20].astype(np.uint8)
    coded = compress(run.model, images, "ordered", plain_if_smaller=False)  # the loss's CDF
    assert not coded.header.get("stored")
    assert np.array_equal(decompress(run.model, coded.data), images)
    np.save(tmp_path / "x.npy", images)
    r = CliRunner().invoke(cli, ["compress", str(out), "--input", str(tmp_path / "x.npy"),
                                 "-o", str(tmp_path / "x.acnz")])
    assert r.exit_code == 0, r.output
