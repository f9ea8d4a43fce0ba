"""The ``acnkit`` command group: every error as one line with its exit code, and the
commands plugins add (loaded only when a third-party plugin could add one, so that
``acnkit --help`` imports neither torch nor the built-in plugins)."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from .. import signals
from ..errors import AcnkitError
from ..registry import get_registry, may_add_commands


class AcnkitGroup(click.Group):
    """Turns every acnkit error into one line on stderr and its exit code (``--debug`` shows
    the traceback), and adds the commands that plugins register."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        # click's own usage errors become one line too, like acnkit's.
        signals.raise_on_stop()  # SIGTERM and SIGHUP clean up as Ctrl-C does
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.exceptions.NoArgsIsHelpError as exc:  # a bare `acnkit`: its help
            click.echo(exc.format_message())
            sys.exit(0)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except KeyboardInterrupt as exc:  # a signal outside a command (loading plugins)
            click.echo(f"interrupted ({signals.name(signals.exit_code(exc) - 128)})", err=True)
            sys.exit(signals.exit_code(exc))
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AcnkitError as exc:
            self._fail(ctx, f"error: {exc}", exc.exit_code)
        except OSError as exc:  # a full disk, a vanished folder: the system's words, one line
            where = f"{exc.filename}: " if exc.filename else ""
            self._fail(ctx, f"error: {where}{exc.strerror or exc}", 1)
        except EOFError:  # click would call it an interruption (exit 130): it is not one
            self._fail(ctx, "error: an input ended before it was complete (an empty or "
                            "truncated file, or a closed standard input)", 1)
        except KeyboardInterrupt as exc:
            code = signals.exit_code(exc)
            self._fail(ctx, f"interrupted ({signals.name(code - 128)}); nothing half-written "
                            f"was left", code)

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int) -> None:
        if ctx.obj and ctx.obj.get("debug"):
            traceback.print_exc()
        click.echo(" ".join(message.split()), err=True)  # always one line
        ctx.exit(code)

    def _ensure_plugin_commands(self) -> None:
        if not getattr(self, "_plugin_commands_added", False):
            self._plugin_commands_added = True
            if not may_add_commands():
                return
            try:
                get_registry().add_commands(self)
            except AcnkitError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(exc.exit_code)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._ensure_plugin_commands()
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._ensure_plugin_commands()
        return super().list_commands(ctx)
