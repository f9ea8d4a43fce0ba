"""The core's modules form layers: each imports only modules below it, counting imports
inside functions too, and the core imports no plugin."""

import ast
from pathlib import Path

import acnkit

ROOT = Path(acnkit.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The acnkit modules a file imports, wherever the import statement stands."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    modules = {_module(p) for p in ROOT.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # ``from . import x`` may name a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in ROOT.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_of_the_core_imports_one_above_it():
    graph = import_graph()
    # The package's own __init__ re-exports the public API: it sits on top of everything,
    # and nothing inside the core may import it.
    importers = sorted(m for m, deps in graph.items() if "acnkit" in deps and m != "acnkit")
    assert not importers, f"modules importing the acnkit package itself: {importers}"
    graph.pop("acnkit")
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from acnkit.engine import Trainer\n")
    # the parser sees imports inside functions (what let the old cycle hide)
    found = [n for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.ImportFrom)]
    assert found and found[0].module == "acnkit.engine"


def test_the_core_imports_no_plugin():
    offenders = [_module(p) for p in ROOT.rglob("*.py")
                 if "acnkit_plugins" in p.read_text() and p.name != "registry.py"]
    assert not offenders, f"core modules naming the plugins package: {offenders}"


def test_the_architecture_table_lists_every_module_below_what_imports_it():
    """docs/architecture.md's table of modules is in layer order: it names every module
    of the core, and no module imports one listed after it."""
    import re

    graph = import_graph()
    table = (ROOT.parent / "docs" / "architecture.md").read_text().split("| layer |")[1]
    order: list[str] = []
    for line in table.split("\n\n")[0].splitlines():
        cells = line.split("|")
        for name in re.findall(r"`([\w/]+?)(?:\.py|/)?`", cells[2] if len(cells) > 2 else ""):
            module = "acnkit" if name == "__init__" else f"acnkit.{name}"
            if module in graph:
                order.append(module)

    def home(module: str) -> str:  # a package's modules sit where the package is listed
        for package in ("acnkit.codec", "acnkit.data", "acnkit.bench", "acnkit.cli",
                        "acnkit.testing", "acnkit.exact"):
            if module.startswith(package + "."):
                return package
        return module

    missing = sorted({home(m) for m in graph} - set(order))
    assert not missing, f"modules missing from docs/architecture.md: {missing}"
    pos = {m: i for i, m in enumerate(order)}
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                    if home(m) != home(d) and pos[home(d)] > pos[home(m)])
    assert not upward, f"imports of modules listed below the importer: {upward}"
