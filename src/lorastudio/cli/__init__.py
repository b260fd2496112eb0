"""The `lorastudio` command: thin typer commands over the engine, with rich progress bars.

With --json a command prints exactly one JSON document on stdout (errors too); progress goes to stderr.
"""

from __future__ import annotations

# Importing a command module registers its commands; --help lists them in this order.
import lorastudio.cli.commands_train
import lorastudio.cli.commands_generate
import lorastudio.cli.commands_toyworld
from lorastudio.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="lorastudio")
