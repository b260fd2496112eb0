"""`lorastudio dataset ...`: check training images before training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lorastudio.cli.common import JsonOpt, KindOpt, app, out, run_command, settings_from_env
from lorastudio.engine import DEFAULT_KIND

dataset_app = typer.Typer(help="Check training images before you train.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("check")
def dataset_check(
    folder: Annotated[Path, typer.Argument(help="Folder of PNG/JPEG images (optional .txt captions)")],
    kind: KindOpt = DEFAULT_KIND,
    trigger: Annotated[str, typer.Option(help="Trigger word to check captions against")] = "trigger",
    resolution: Annotated[int | None, typer.Option(help="Training resolution (default: the preset's)")] = None,
    preset: Annotated[str | None, typer.Option(help="Preset name (default: the kind's)")] = None,
    base: Annotated[str | None, typer.Option(help="Base model you will train on")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate every image: format, corruption, size, duplicates, blur, and the image count.

    The verdicts are the ones `train` will reach with the same --kind, --preset, --base and --resolution."""

    def work() -> dict:
        from lorastudio.engine import base_family, get_preset, scan_dataset

        settings = settings_from_env()
        spec = base or settings.default_base_model
        p = get_preset(preset, kind, base_family(spec, settings))
        size = p.resolution if resolution is None else resolution
        report, _ = scan_dataset(
            folder,
            kind=kind,
            trigger=trigger,
            preset=p,
            resolution=size,
            max_pixels=settings.max_image_pixels,
            bucket_step=p.bucket_step,
        )
        return report.to_dict() | {"base": spec, "resolution": size}

    run_command(as_json, work, _render_report)


def _render_report(report: dict) -> None:
    table = Table(title=f"{report['kind']} dataset - {report['counts']['valid']} usable image(s)")
    for col in ("image", "status", "size", "caption / problems"):
        table.add_column(col)
    colours = {"ok": "green", "warning": "yellow", "skipped": "red"}
    for img in report["images"]:
        size = f"{img['width']}x{img['height']}" if img["width"] else "-"
        lines = [f"{p['code']}: {p['message']}" for p in img["problems"]] or [img["caption"] or ""]
        status = f"[{colours[img['status']]}]{img['status']}[/]"
        table.add_row(Path(img["path"]).name, status, size, "\n".join(lines))
    out.print(table)
    for note in report["notes"]:
        colour = "red" if note["severity"] == "error" else "yellow"
        out.print(f"[{colour}]{note['severity']}:[/] {note['message']}", highlight=False)
    out.print("[green]Ready to train.[/]" if report["usable"] else "[red]Not trainable yet - see above.[/]")
