"""`lorastudio dataset ...`: check training images before training, and caption them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lorastudio.cli.common import JsonOpt, KindOpt, app, err, out, run_command, settings_from_env
from lorastudio.engine import DEFAULT_KIND
from lorastudio.errors import Invalid

dataset_app = typer.Typer(help="Check and caption training images before you train.", no_args_is_help=True)
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


@dataset_app.command("caption")
def dataset_caption(
    folder: Annotated[Path, typer.Argument(help="Folder of PNG/JPEG images; name.txt is written beside name.png")],
    trigger: Annotated[str, typer.Option(help="Trigger word every caption starts with")],
    kind: KindOpt = DEFAULT_KIND,
    captioner: Annotated[
        str | None,
        typer.Option(
            help="toyworld (exact on toy-world pictures) or model (LORASTUDIO_CAPTIONER); default: model "
            "when one is configured, else toyworld"
        ),
    ] = None,
    description: Annotated[
        str, typer.Option(help="What the subject looks like (words a character's captions leave out)")
    ] = "",
    keep_identity: Annotated[
        bool, typer.Option("--keep-identity", help="Keep the words that make a character who they are")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace captions that are already there")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a caption beside each image: the trigger word first, then what varies (pose, place, others).

    For a character the captions leave out what makes it who it is (its colours, outfit, accessory): the
    trigger word learns what the captions leave out (--keep-identity to keep them). A caption already
    there is never replaced unless --overwrite; an image that cannot be read is counted and skipped."""

    def work() -> dict:
        from lorastudio.engine import caption_folder, captioner_for, check_kind, check_trigger, default_captioner

        settings = settings_from_env()
        check_kind(kind)
        word = check_trigger(trigger)
        if not folder.is_dir():
            raise Invalid(f"{folder} is not a folder of images; give the folder that holds them")
        chosen = captioner_for(captioner or default_captioner(settings), settings)

        def progress(event) -> None:
            if event.total and not as_json:
                err.print(f"captioning {event.step}/{event.total} with {chosen.name}", highlight=False)

        report = caption_folder(
            folder,
            chosen,
            trigger=word,
            kind=kind,
            leave_out_identity=not keep_identity,
            description=description,
            overwrite=overwrite,
            on_progress=progress,
        )
        return report.to_dict()

    run_command(as_json, work, _render_captions)


def _render_captions(report: dict) -> None:
    for name, text in report["captions"].items():
        out.print(f"[bold]{name}[/]: {text}", highlight=False, soft_wrap=True)
    for name, why in report["problems"].items():
        out.print(f"[red]{name}[/]: {why}", highlight=False, soft_wrap=True)
    out.print(
        f"[green]{report['captioned']} captioned[/] with {report['captioner']}, {report['kept']} kept (already "
        f"captioned; --overwrite replaces them), {report['failed']} could not be read.",
        highlight=False,
    )
