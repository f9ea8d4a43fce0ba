from pathlib import Path

from acnkit.cli_reference import render

DOCS = Path(__file__).parent.parent / "docs"


def test_cli_reference_matches_help():
    assert (DOCS / "cli.md").read_text() == render(), (
        "docs/cli.md is out of date: python -m acnkit.cli_reference > docs/cli.md")


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
