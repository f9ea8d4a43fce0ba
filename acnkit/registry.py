"""The one place where plugins are loaded and components are looked up by name.

Plugins are found through the ``acnkit`` entry-point group, the built-ins included. A plugin
that fails to import is reported (name, distribution, error) and skipped: the others keep
working. A name registered twice for the same kind is an error naming both plugins.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UsageError

ENTRY_POINT_GROUP = "acnkit"

#: kind of component -> name of the hook that registers it
KINDS: dict[str, str] = {
    "encoder": "register_encoders",
    "decoder": "register_decoders",
    "prior": "register_priors",
    "searcher": "register_searchers",
    "loss": "register_losses",
    "dataset": "register_datasets",
}


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
    registers: dict[str, list[str]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    error: str | None = None


class Registry:
    """Components registered by plugins, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, plugins: dict[str, PluginInfo]):
        self.pm = pm
        self.plugins = plugins
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind, hook in KINDS.items():
            for impl in getattr(pm.hook, hook).get_hookimpls():
                self._collect(kind, impl)

    def _collect(self, kind: str, impl: pluggy.HookImpl) -> None:
        info = self.plugins.setdefault(
            impl.plugin_name, PluginInfo(impl.plugin_name, "(registered in code)", "")
        )

        def register(name: str, factory: Callable[..., Any], description: str = "") -> None:
            other = self.entries[kind].get(name)
            if other is not None:
                raise PluginError(
                    f"{kind} {name!r} is registered twice: by plugin {other.plugin!r} "
                    f"({other.distribution}) and by plugin {info.name!r} ({info.distribution}); "
                    f"uninstall one of them"
                )
            self.entries[kind][name] = Entry(
                kind, name, factory, description, info.name, info.distribution
            )
            info.registers.setdefault(kind, []).append(name)

        try:
            impl.function(register=register)
        except PluginError:
            raise
        except Exception as exc:  # a plugin broken at registration is skipped, as at import
            info.error = f"{type(exc).__name__} in {impl.function.__name__}: {exc}".splitlines()[0]
            print(f"warning: plugin {info.name!r} ({info.distribution}) failed to register: "
                  f"{info.error}", file=sys.stderr)

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self.entries[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise UsageError(
                f"unknown {kind} {name!r}; registered {kind}s: {known}"
            ) from None

    def create(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        entry = self.get(kind, name)
        try:
            return entry.factory(*args, **kwargs)
        except (UsageError, PluginError):
            raise
        except (TypeError, ValueError) as exc:
            unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
            if unexpected:
                option = "--" + unexpected.group(1).replace("_", "-")
                raise UsageError(f"{kind} {name!r} (plugin {entry.plugin!r}) does not take "
                                 f"{option}; drop it or choose another {kind}") from exc
            raise UsageError(
                f"{kind} {name!r} (plugin {entry.plugin!r}) rejected its options: {exc}"
            ) from exc

    def add_commands(self, cli: Any) -> None:
        for impl in self.pm.hook.register_commands.get_hookimpls():
            before = set(cli.commands)
            impl.function(cli=cli)
            info = self.plugins.get(impl.plugin_name)
            if info is not None:
                info.commands.extend(sorted(set(cli.commands) - before))


def _load_entry_points(pm: pluggy.PluginManager) -> dict[str, PluginInfo]:
    plugins: dict[str, PluginInfo] = {}
    seen: set[tuple[str, str]] = set()
    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or (ep.name, ep.value) in seen:
                continue
            # One distribution can sit on sys.path twice (editable installs); load it once.
            seen.add((ep.name, ep.value))
            dist_name = dist.metadata["Name"] or "?"
            info = PluginInfo(ep.name, dist_name, dist.version or "")
            plugins[ep.name] = info
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin must not take the others down
                info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return plugins


def make_plugin_manager() -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    pm = pluggy.PluginManager("acnkit")
    pm.add_hookspecs(hookspecs)
    return pm, _load_entry_points(pm)


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        pm, plugins = make_plugin_manager()
        _REGISTRY = Registry(pm, plugins)
        for info in plugins.values():
            if info.error:
                print(
                    f"warning: plugin {info.name!r} ({info.distribution}) failed to load and "
                    f"was skipped: {info.error}",
                    file=sys.stderr,
                )
    return _REGISTRY


def reset_registry() -> None:
    """Forget the loaded plugins (tests that install new ones call this)."""
    global _REGISTRY
    _REGISTRY = None
