"""The registry of ``inq-hw`` subcommands: each command module registers its handler with
:func:`command`; :mod:`inq_hw.cli` builds the parser from :data:`COMMANDS`. Apart from the
CLI so the commands never import it (ARCHITECTURE.md: nothing imports cli)."""

import argparse
from collections.abc import Callable
from typing import Any

from inq_hw.errors import ConfigError

__all__ = ["COMMANDS", "Handler", "command", "parse_csv"]

Handler = Callable[[argparse.Namespace], dict[str, Any]]
#: name → (help text, argument set-up, handler), in registration order.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(
    name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Handler], Handler]:
    """Register a subcommand: its help, its argument set-up and its handler."""

    def decorate(handler: Handler) -> Handler:
        COMMANDS[name] = (help_text, configure, handler)
        return handler

    return decorate


def parse_csv(text: str, kind: Callable[[str], Any], what: str) -> list[Any]:
    """``"a,b,c"`` → ``[kind(a), ...]``; a one-line ConfigError naming ``what`` otherwise."""
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be a comma-separated list, not {text!r}") from None
