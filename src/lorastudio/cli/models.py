"""`lorastudio models ...`: the base models LoRA Studio can use."""

from __future__ import annotations

import typer
from rich.table import Table

from lorastudio.cli.common import JsonOpt, app, out, run_command, settings_from_env

models_app = typer.Typer(help="Base models LoRA Studio can use.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """List built-in and installed base models."""

    def work() -> list[dict]:
        from lorastudio.engine import list_base_models

        return list_base_models(settings_from_env())

    def render(rows: list[dict]) -> None:
        table = Table(title="Base models (pass a name or any path with --base)")
        for col in ("name", "family", "ready", "default"):
            table.add_column(col)
        for r in rows:
            ready = "yes" if r["ready"] else "built on first use"
            table.add_row(r["name"], r["label"], ready, "*" if r["default"] else "")
        out.print(table)

    run_command(as_json, work, render)
