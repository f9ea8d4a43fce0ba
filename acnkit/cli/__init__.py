"""The ``acnkit`` command line: :mod:`~acnkit.cli.options` (the training options),
:mod:`~acnkit.cli.group` (the group: one-line errors, plugin commands),
:mod:`~acnkit.cli.commands` (every command but ``bench``), :mod:`~acnkit.cli.bench` (the
bench commands) and :mod:`~acnkit.cli.reference` (docs/cli.md from the commands' help)."""

from .commands import main

__all__ = ["main"]
