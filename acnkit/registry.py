"""The one place where plugins are loaded and components are looked up by name.

acnkit registers its built-in plugins itself (``BUILTINS``), first, through the same hooks a
third-party plugin implements; third-party plugins are found through the ``acnkit``
entry-point group. Loading is safe: nothing a third party installs can replace a built-in
or stop acnkit from working.

- A plugin that fails at import, or raises in any of its hooks, is skipped whole (none of
  its components or commands are kept) and reported.
- A component or command name that is already taken is kept by its first owner (built-ins
  come first); the newcomer's registration is skipped and reported, naming both packages.
- An entry point whose name is already taken is loaded under ``distribution:name``.
- ``register`` called with a bad name, a factory that is not callable or a description
  that is not a string is that plugin's error.
- ``ACNKIT_LOAD_PLUGINS`` (comma-separated plugin or distribution names) restricts which
  third-party plugins load; set it empty to load none. Built-ins always load.

Problems are listed by ``acnkit plugins``; a failure or clash also prints one warning line
on stderr when the registry loads, and every command keeps working."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UsageError, out_of_memory

ENTRY_POINT_GROUP = "acnkit"
LOAD_PLUGINS_ENV = "ACNKIT_LOAD_PLUGINS"

#: the built-in plugins: name -> module, registered by acnkit itself before any other
BUILTINS: dict[str, str] = {
    name: f"acnkit_plugins.{name}"
    for name in ("vae", "acn", "mlp", "conv", "pixelcnn", "bernoulli", "logistic", "categorical",
                 "datasets", "search_torch", "search_pruned", "search_sklearn", "search_annoy",
                 "search_faiss", "search_random")
}

#: kind of component -> name of the hook that registers it
KINDS: dict[str, str] = {
    "encoder": "register_encoders",
    "decoder": "register_decoders",
    "prior": "register_priors",
    "searcher": "register_searchers",
    "loss": "register_losses",
    "dataset": "register_datasets",
}
HOOKS = (*KINDS.values(), "register_commands")

#: for each kind, the options acnkit may pass to a factory by keyword, and the flag each
#: comes from (hookspecs.py says which positional arguments come first)
OPTION_FLAGS: dict[str, dict[str, str]] = {
    "encoder": {"posterior": "--posterior", "hidden": "--encoder-hidden",
                "channels": "--channels"},
    "decoder": {"hidden": "--decoder-hidden", "channels": "--channels",
                "param_channels": "the loss's parameters (param_channels: a decoder "
                                  "that follows the loss)"},
    "prior": {"hidden": "--prior-hidden", "layers": "--prior-layers",
              "mixtures": "--mixtures"},
    "searcher": {"refresh": "--refresh", "trees": "--trees", "search_k": "--search-k"},
    "loss": {"levels": "the data's levels", "channels": "the images' channels"},
    "dataset": {"data_dir": "--data-dir", "seed": "--data-seed", "pixels": "--pixels",
                "crop": "--crop"},
}

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def flag(kind: str, option: str) -> str:
    """The command-line flag of a factory option (search options from a config file have
    none: they are named as the option)."""
    return OPTION_FLAGS.get(kind, {}).get(option, f"option {option!r}")


@dataclass
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str
    distribution: str


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    builtin: bool = False
    registers: dict[str, list[str]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    error: str | None = None  # failed at import or in a hook: skipped whole
    warnings: list[str] = field(default_factory=list)  # clashes, registers nothing, ...

    @property
    def label(self) -> str:
        return f"plugin {self.name!r} ({self.distribution})"


class Registry:
    """Components and commands registered by plugins, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, plugins: dict[str, PluginInfo]):
        self.pm = pm
        self.plugins = plugins
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        #: command name -> (click command, plugin info), in registration order
        self.commands: dict[str, tuple[Any, PluginInfo]] = {}
        for name in [*plugins, *(n for n, _ in pm.list_name_plugin() if n not in plugins)]:
            info = self.plugins.setdefault(name, PluginInfo(name, "(registered in code)", ""))
            if info.error is None and pm.get_plugin(name) is not None:
                self._collect(info)

    # ------------------------------------------------------------------ loading
    def _collect(self, info: PluginInfo) -> None:
        """Run every hook of one plugin into a staging area; keep the result only if all of
        them succeed, then commit it name by name (first owner wins)."""
        module = self.pm.get_plugin(info.name)
        staged: list[Entry] = []
        commands: dict[str, Any] = {}
        impls = {hook: impl for hook in HOOKS
                 for impl in getattr(self.pm.hook, hook).get_hookimpls()
                 if impl.plugin_name == info.name}
        for hook, impl in impls.items():
            try:
                if hook == "register_commands":
                    commands.update(_staged_commands(impl.function))
                else:
                    impl.function(register=self._register(hook_kind(hook), info, staged))
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop acnkit
                info.error = f"{type(exc).__name__} in {hook}: {exc}".splitlines()[0]
                return
        for entry in staged:
            other = self.entries[entry.kind].get(entry.name)
            if other is not None:
                info.warnings.append(
                    f"{entry.kind} {entry.name!r} is already registered by plugin "
                    f"{other.plugin!r} ({other.distribution}); this one was skipped")
                continue
            self.entries[entry.kind][entry.name] = entry
            info.registers.setdefault(entry.kind, []).append(entry.name)
        for name, command in commands.items():
            if name in self.commands:
                owner = self.commands[name][1]
                info.warnings.append(f"command {name!r} is already registered by "
                                     f"{owner.label}; this one was skipped")
                continue
            self.commands[name] = (command, info)
            info.commands.append(name)
        if not info.builtin:
            info.warnings.extend(_hook_hints(module, bool(staged or commands)))

    def _register(self, kind: str, info: PluginInfo, staged: list[Entry]) -> Callable:
        def register(name: str, factory: Callable[..., Any], description: str = "") -> None:
            if not isinstance(name, str) or not NAME.match(name):
                raise PluginError(f"register({name!r}, ...): a {kind} name must be a string of "
                                  f"letters, digits, '-', '_' or '.'")
            if not callable(factory):
                raise PluginError(f"register({name!r}, {factory!r}): the factory must be "
                                  f"callable (a class or a function)")
            if not isinstance(description, str):
                raise PluginError(f"register({name!r}, ...): the description must be a string")
            if any(e.kind == kind and e.name == name for e in staged):
                raise PluginError(f"{kind} {name!r} is registered twice by this plugin")
            staged.append(Entry(kind, name, factory, description, info.name, info.distribution))
        return register

    def add_commands(self, cli: Any) -> None:
        """Add the plugins' commands to ``cli``; a name the CLI already has is kept by it."""
        for name, (command, info) in self.commands.items():
            if name in cli.commands:
                warning = (f"command {name!r} is one of acnkit's own commands; the plugin's "
                           f"was skipped")
                info.warnings.append(warning)
                info.commands.remove(name)
                print(f"warning: {info.label}: {warning} (see acnkit plugins)", file=sys.stderr)
                continue
            cli.add_command(command, name)

    def problems(self) -> list[str]:
        """One line per plugin that failed or clashed (what the loader warns about)."""
        lines = []
        for info in self.plugins.values():
            if info.error:
                lines.append(f"{info.label} failed and was skipped: {info.error}")
            lines.extend(f"{info.label}: {w}" for w in info.warnings if "skipped" in w)
        return lines

    # ------------------------------------------------------------------ look-ups
    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def nearest_searchers(self) -> list[str]:
        """Searchers meant to find near rows: what benchmarks compare when none is named."""
        return [n for n in self.names("searcher")
                if getattr(self.entries["searcher"][n].factory, "nearest", True)]

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self.entries[kind][name]
        except KeyError:
            import difflib

            known = ", ".join(self.names(kind)) or "none"
            close = difflib.get_close_matches(str(name), self.names(kind), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            # a plugin that failed, or registers nothing, may be the one that was meant
            troubled = [i.label for i in self.plugins.values()
                        if i.error or any(w.startswith("registers nothing") for w in i.warnings)]
            why = (f"; {', '.join(troubled)} failed or registers nothing: acnkit plugins "
                   f"says why" if troubled else "")
            plural = kind + ("es" if kind.endswith("s") else "s")
            raise UsageError(
                f"unknown {kind} {name!r}{hint}; registered {plural}: {known}{why}"
            ) from None

    def create(self, kind: str, name: str, *args: Any, given: Iterable[str] | None = None,
               **options: Any) -> Any:
        """Call the factory of ``kind`` ``name`` with ``args`` and those ``options`` its
        signature accepts. An option it does not take is an error only if the user gave it
        (``given``: the options set on purpose; None means all); a parameter it requires
        that acnkit does not give is the plugin's error."""
        entry = self.get(kind, name)
        given = set(options) if given is None else set(given)
        who = f"{kind} {name!r} (plugin {entry.plugin!r})"
        options = self._accepted(entry, who, args, options, given)
        try:
            return entry.factory(*args, **options)
        except (UsageError, PluginError):
            raise
        except ValueError as exc:
            raise UsageError(f"{who} rejected its options: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - the plugin's own failure, named as such
            if out_of_memory(exc):
                raise  # the sizes the user chose, not the plugin: the engine says so
            first = (str(exc).strip().splitlines() or [""])[0]
            raise PluginError(f"{who} failed to build: {type(exc).__name__}: {first}") from exc

    def _accepted(self, entry: Entry, who: str, args: tuple, options: dict[str, Any],
                  given: set[str]) -> dict[str, Any]:
        try:
            params = inspect.signature(entry.factory).parameters.values()
        except (TypeError, ValueError):  # a builtin or C callable: pass everything
            return options
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return options
        takes = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unwanted = [k for k in options if k not in takes]
        for key in unwanted:
            if key in given:
                raise UsageError(f"{who} does not take {flag(entry.kind, key)}; drop it or "
                                 f"choose another {entry.kind}")
        kept = {k: v for k, v in options.items() if k in takes}
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                      p.POSITIONAL_OR_KEYWORD)]
        has_var_args = any(p.kind is p.VAR_POSITIONAL for p in params)
        if len(args) > len(positional) and not has_var_args:
            raise PluginError(f"{who}: its factory takes {len(positional)} positional "
                              f"arguments, but acnkit passes {len(args)} to every {entry.kind} "
                              f"(see the {KINDS[entry.kind]} hook's documentation)")
        filled = {p.name for p in positional[: len(args)]} | set(kept)
        missing = [p.name for p in params if p.default is p.empty and p.name not in filled
                   and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if missing:
            offered = ", ".join(OPTION_FLAGS[entry.kind]) or "none"
            raise PluginError(f"{who}: its factory requires {', '.join(map(repr, missing))}, "
                              f"which acnkit does not give (options it gives a {entry.kind}: "
                              f"{offered}); the plugin must give it a default")
        return kept


def hook_kind(hook: str) -> str:
    return next(kind for kind, name in KINDS.items() if name == hook)


def _staged_commands(function: Callable[..., Any]) -> dict[str, Any]:
    """The commands a ``register_commands`` hook adds, gathered on a group of their own so
    that none can replace a command acnkit already has."""
    import click

    staging = click.Group("staging")
    function(cli=staging)
    return dict(staging.commands)


def _hook_hints(module: Any, registered: bool) -> list[str]:
    """Misspelled hook names and hook-like functions missing ``@acnkit.hookimpl``: the usual
    reasons why a plugin registers nothing."""
    hints = []
    for attr in dir(module):
        value = getattr(module, attr, None)
        if not callable(value) or not attr.startswith("register"):
            continue
        decorated = hasattr(value, "acnkit_impl")
        if decorated and attr not in HOOKS:
            close = difflib.get_close_matches(attr, HOOKS, n=1)
            hints.append(f"{attr} is not an acnkit hook" +
                         (f"; did you mean {close[0]}?" if close else f" (hooks: "
                          f"{', '.join(HOOKS)})"))
        elif not decorated and (attr in HOOKS or difflib.get_close_matches(attr, HOOKS, n=1)):
            hints.append(f"function {attr} is not decorated with @acnkit.hookimpl, so acnkit "
                         f"never calls it")
    if not registered:
        hints.insert(0, "registers nothing" + (": " + "; ".join(hints) if hints else
                                               " (no function decorated with @acnkit.hookimpl)"))
        return hints[:1]
    return hints


def _selected(names: Iterable[str]) -> bool:
    wanted = os.environ.get(LOAD_PLUGINS_ENV)
    if wanted is None:
        return True
    allowed = {w.strip() for w in wanted.split(",") if w.strip()}
    return bool(allowed & set(names))


def _load_builtins(pm: pluggy.PluginManager, plugins: dict[str, PluginInfo]) -> None:
    version = _version()
    for name, module in BUILTINS.items():
        info = plugins[name] = PluginInfo(name, "acnkit", version, builtin=True)
        try:
            pm.register(importlib.import_module(module), name=name)
        except Exception as exc:  # noqa: BLE001 - e.g. a missing optional dependency
            info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]


def _version() -> str:
    try:
        return md.version("acnkit")
    except md.PackageNotFoundError:
        return ""


def _third_party_entry_points() -> Iterable[tuple[Any, Any]]:
    """(distribution, entry point) of every third-party plugin that is to load."""
    seen: set[tuple[str, str]] = set()
    for dist in md.distributions():
        dist_name = dist.metadata["Name"] or "?"
        if dist_name == "acnkit":  # the built-ins are loaded by module
            continue
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or (ep.name, ep.value) in seen:
                continue
            # One distribution can sit on sys.path twice (editable installs); load it once.
            seen.add((ep.name, ep.value))
            if _selected((ep.name, dist_name)):
                yield dist, ep


def may_add_commands() -> bool:
    """Whether plugins could add commands: only third-party ones (or ones registered in
    code), as no built-in does (a test holds this); so ``--help`` often needs no plugin."""
    return _REGISTRY is not None or next(iter(_third_party_entry_points()), None) is not None


def _load_entry_points(pm: pluggy.PluginManager, plugins: dict[str, PluginInfo]) -> None:
    for dist, ep in _third_party_entry_points():
        dist_name = dist.metadata["Name"] or "?"
        name, note = ep.name, None
        if name in plugins or pm.has_plugin(name):
            name = f"{dist_name}:{ep.name}"
            note = (f"entry point name {ep.name!r} is taken by another plugin; loaded as "
                    f"{name!r}")
        info = PluginInfo(name, dist_name, dist.version or "")
        if note:
            info.warnings.append(note)
        plugins[name] = info
        try:
            pm.register(ep.load(), name=name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop acnkit
            info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]


def make_plugin_manager() -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    pm = pluggy.PluginManager("acnkit")
    pm.add_hookspecs(hookspecs)
    plugins: dict[str, PluginInfo] = {}
    _load_builtins(pm, plugins)
    _load_entry_points(pm, plugins)
    return pm, plugins


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        pm, plugins = make_plugin_manager()
        _REGISTRY = Registry(pm, plugins)
        for line in _REGISTRY.problems():
            print(f"warning: {line} (see acnkit plugins)", file=sys.stderr)
    return _REGISTRY


def reset_registry() -> None:
    """Forget the loaded plugins (tests that install new ones call this)."""
    global _REGISTRY
    _REGISTRY = None
