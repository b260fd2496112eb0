"""What every command shares: the typer apps, consoles, option types, error translation, progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from lorastudio.config import Settings, load_settings
from lorastudio.engine import kind_list
from lorastudio.errors import LoraStudioError, words
from lorastudio.quiet import quiet_libraries

# How the CLI names each setting an error may name (lorastudio.errors.SETTINGS): its flag.
FLAGS = {
    "add_triggers": "--add-triggers",
    "base": "--base",
    "batch_size": "--batch-size",
    "blocks_to_swap": "--blocks-to-swap",
    "device": "--device",
    "devices": "--devices",
    "fuse": "--fuse",
    "gradient_checkpointing": "--gradient-checkpointing",
    "learning_rate": "--lr",
    "loras": "--lora",
    "n": "--n",
    "optimizer": "--optimizer",
    "output": "--out",
    "precision": "--precision",
    "quantize_base": "--quantize-base",
    "sampler": "--sampler",
    "train_text_encoder": "--train-text-encoder",
    "resolution": "--resolution",
    "resume": "--resume",
    "run_dir": "--run-dir",
    "seeds": "--seeds",
    "strengths": "--strengths",
}


def _json_error(code: str, message: str, setting: str | None = None) -> None:
    error = {"code": code, "message": message} | ({"setting": setting} if setting else {})
    print(json.dumps({"error": error}))


class JsonAwareGroup(TyperGroup):
    """With --json anywhere on the line, usage errors (a bad option value, a missing argument) are one
    JSON document on stdout too, like every other error, so scripts never have to parse usage text."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or "--json" not in argv:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            _json_error("interrupted", "interrupted")
            sys.exit(1)
        except typer.TyperException as exc:  # typer's own click: a usage error (bad value, missing argument)
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            _json_error("usage", message or "missing argument or option; see --help")
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=JsonAwareGroup,
    help=f"LoRA Studio: train LoRAs for {kind_list('plural', 'and').lower()}.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
KindOpt = Annotated[str, typer.Option("--kind", "-k", help=kind_list())]


def settings_from_env() -> Settings:
    return load_settings()


def warn_if_builtin(base: str) -> None:
    """Say so when a built-in model is in use, so nobody mistakes its pictures for Stable Diffusion's."""
    from lorastudio.engine import TINY_NAMES, TOYWORLD

    if base == TOYWORLD:
        err.print(
            "[yellow]Base model: toyworld, the built-in 32x32 toy-world model (not Stable Diffusion). "
            "Use --base or LORASTUDIO_DEFAULT_BASE_MODEL for a real SD1.5/SDXL model.[/]",
            soft_wrap=True,
        )
    elif base in TINY_NAMES:
        err.print(f"[yellow]Base model {base} is a tiny built-in test model, not Stable Diffusion.[/]")


def run_command(as_json: bool, fn: Callable[[], Any], render: Callable[[Any], None]) -> None:
    """Run fn; print its result as JSON or through render; translate domain errors once, here."""
    quiet_libraries()
    try:
        result = fn()
    except LoraStudioError as exc:  # settings named as flags: "lower --batch-size"
        _fail(as_json, exc.code, words(exc, FLAGS), FLAGS.get(exc.setting or ""))
    except OSError as exc:  # a file system refusal we did not foresee: say which file and why
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _fail(as_json, "os_error", f"{exc.strerror or exc}{where}; check the path and its permissions")
    if as_json:
        print(json.dumps(result, default=str, indent=2))
    else:
        render(result)


def _fail(as_json: bool, code: str, message: str, setting: str | None = None) -> None:
    if as_json:
        _json_error(code, message, setting)
    else:
        err.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


class TrainProgress:
    """A rich progress bar on stderr fed by the engine's ProgressEvents."""

    def __init__(self, total: int):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.total = total
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self.task = self.progress.add_task("preparing", total=total, loss="-")

    def __enter__(self) -> TrainProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, event) -> None:
        """Apply one engine progress event."""
        if event.phase == "train":
            self.progress.update(self.task, description="training", completed=event.step, loss=f"{event.loss:.4f}")
        elif event.phase == "prepare" and event.step:
            self.progress.update(self.task, completed=event.step, description="resumed")
        elif event.phase == "cache" and event.total:
            self.progress.update(self.task, description=f"caching {event.step}/{event.total}")
        elif event.phase in ("prepare", "cache", "save"):
            self.progress.update(self.task, description=event.message[:40])
        elif event.phase == "sample":
            self.progress.console.print(f"sample at step {event.step}: {event.preview}")


class StepProgress:
    """A rich progress bar for generation steps (one bar per call)."""

    def __init__(self, description: str):
        from rich.progress import BarColumn, Progress, TextColumn

        columns = (TextColumn(f"[bold]{description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
        self.progress = Progress(*columns, console=err, transient=True)
        self.task = self.progress.add_task(description, total=None)

    def __enter__(self) -> StepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, event) -> None:
        """Apply one engine progress event."""
        self.progress.update(self.task, completed=event.step, total=event.total)
