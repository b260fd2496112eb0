"""The `lorastudio` command: thin typer commands over the engine, with rich progress bars.

One module per command group. With --json a command prints exactly one JSON document on stdout
(errors and usage errors too); progress goes to stderr.
"""

from __future__ import annotations

# Importing a command module registers its commands; --help lists them in this order.
import lorastudio.cli.dataset
import lorastudio.cli.train
import lorastudio.cli.lora
import lorastudio.cli.generate
import lorastudio.cli.models
import lorastudio.cli.toyworld
import lorastudio.cli.demo
import lorastudio.cli.studio
import lorastudio.cli.accounts
import lorastudio.cli.storyboard
import lorastudio.cli.cluster
from lorastudio.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="lorastudio")
