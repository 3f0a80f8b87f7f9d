"""Help that shows flags as flags: ``--yes``, not ``--yes <bool>``.

typer (0.2x) prints a type for every option, a flag's too, which reads as if ``--yes`` took
a value. :class:`FlagGroup`, the root command's class, gives every boolean flag of every
command below it (sub-apps such as ``mock`` included, and each ``--help``) an empty
metavar, so help shows nothing after a flag. Options that take a value keep theirs.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

__all__ = ["FlagGroup", "flags_as_flags"]


def _blank(param: Any) -> None:
    if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""


def flags_as_flags(command: Any, ctx: Any = None) -> None:
    """Blank the metavar of every boolean flag of ``command`` and of its subcommands (with
    ``ctx``, their ``--help`` too: click creates it on demand, then keeps it)."""
    for param in command.params:
        _blank(param)
    if ctx is not None:
        _blank(command.get_help_option(ctx))
    for sub in (getattr(command, "commands", None) or {}).values():
        flags_as_flags(sub, ctx)


class FlagGroup(TyperGroup):
    """The root group: flags shown as flags in every command's help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        flags_as_flags(self)

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)  # typer adds --install-completion after __init__
        for param in params:
            _blank(param)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            flags_as_flags(command, ctx)
        return command
