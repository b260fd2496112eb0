"""`lorastudio demo`: what `make demo` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorastudio.cli.common import TrainProgress, app, run_command, settings_from_env


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo's files")] = Path("demo-output"),
    steps: Annotated[int, typer.Option(help="Training steps")] = 600,
) -> None:
    """Action Hero John vs Villain Kane on the toyworld model: references, LoRAs, a 3-scene storyboard."""

    def work() -> dict:
        from lorastudio.demo import run_demo

        return run_demo(settings_from_env(), out_dir, steps, progress=TrainProgress)

    run_command(False, work, lambda r: None)
