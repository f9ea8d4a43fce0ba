"""What `pip install .` (not only `pip install -e .`) puts on a machine."""

from __future__ import annotations

from pathlib import Path

from acnkit.config import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_installed():
    """pyproject lists packages by hand (``plugins/`` installs as ``acnkit_plugins``), so a
    new subpackage left off the list is missing from a wheel and its imports fail only there,
    never in an editable install."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    dirs = setuptools["package-dir"]
    on_disk = {"acnkit_plugins", "acnkit.models"} | {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "acnkit").rglob("__init__.py")}
    assert listed == on_disk, f"pyproject's packages: add {sorted(on_disk - listed)}, " \
                              f"drop {sorted(listed - on_disk)}"
    assert dirs["acnkit_plugins"] == "plugins" and (ROOT / "plugins" / "__init__.py").exists()
    # the shipped models: `models/` installs as acnkit.models, its files as package data
    assert dirs["acnkit.models"] == "models" and (ROOT / "models" / "__init__.py").exists()
    data = setuptools["package-data"]["acnkit.models"]
    shipped = {p.relative_to(ROOT / "models").as_posix()
               for p in (ROOT / "models").glob("*/*") if p.name != "__pycache__"}
    import fnmatch
    missed = {f for f in shipped if not any(fnmatch.fnmatch(f, pattern) for pattern in data)}
    assert not missed, f"files of models/ a wheel would leave out: {sorted(missed)}"
