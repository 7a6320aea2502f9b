"""The root command's group, whose commands are imported when first used.

Each command group module imports what it needs (the SDK's families, their schemas), so
importing all of them costs every command the start-up time of all of them. The root names
each command by `module:attribute` instead (`main.py`), and imports a module only when its
command runs, or when help lists every command.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from difflib import get_close_matches
from typing import Any

import typer
import typer.core
import typer.main


def _load(name: str, where: str) -> Any:
    """The click command for `module:attribute`: a Typer app (a group), or a function (one
    command)."""
    module, _, attribute = where.partition(":")
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        command: Any = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


def lazy_group(commands: Mapping[str, str]) -> type[typer.core.TyperGroup]:
    """A group class (for `typer.Typer(cls=...)`) with `commands`, name -> `module:attribute`,
    listed in that order."""

    class LazyGroup(typer.core.TyperGroup):
        def list_commands(self, ctx: Any) -> list[str]:
            return [
                *commands,
                *(name for name in super().list_commands(ctx) if name not in commands),
            ]

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            if cmd_name in commands and cmd_name not in self.commands:
                self.commands[cmd_name] = _load(cmd_name, commands[cmd_name])
            return super().get_command(ctx, cmd_name)

        def resolve_command(self, ctx: Any, args: list[str]) -> Any:
            name = args[0] if args else ""
            if name and not name.startswith("-") and name not in self.list_commands(ctx):
                # a typo: suggest from the names, without importing every command's module
                matches = get_close_matches(name, self.list_commands(ctx))
                hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
                ctx.fail(f"No such command {name!r}.{hint}")
            return super().resolve_command(ctx, args)

    return LazyGroup
