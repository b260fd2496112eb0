"""`lorastudio storyboard list|export|regenerate`: the studio's storyboards from the command line. Export runs
in this process on the studio database of $LORASTUDIO_HOME (no worker needed); regenerate redoes every
panel of an unzipped ZIP export and says whether each matches pixel for pixel."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorastudio.cli.common import JsonOpt, app, err, out, run_command, settings_from_env
from lorastudio.errors import Invalid

storyboard_app = typer.Typer(
    help="Storyboards: list, export (PDF, contact sheet, ZIP), regenerate.", no_args_is_help=True
)
app.add_typer(storyboard_app, name="storyboard")


def _studio():
    from lorastudio.studio.context import open_studio

    return open_studio(settings_from_env())


@storyboard_app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """The studio's storyboards, most recently changed first."""

    def work() -> list[dict]:
        from lorastudio.studio import storyboards

        studio = _studio()
        with studio.factory() as session:
            rows = storyboards.list_storyboards(session, owner_id=studio.local_user)
            return [s.model_dump(mode="json") for s in rows]

    def render(rows: list[dict]) -> None:
        if not rows:
            out.print("no storyboards yet")
        for r in rows:
            out.print(f"{r['id']:>4}  {r['title']}  ({r['scene_count']} scenes, changed {r['updated_at'][:16]})")

    run_command(as_json, work, render)


@storyboard_app.command("export")
def export_cmd(
    storyboard_id: Annotated[int, typer.Argument(help="Storyboard id (see `lorastudio storyboard list`)", min=1)],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="File to write")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="pdf, png (contact sheet) or zip")] = "pdf",
    as_json: JsonOpt = False,
) -> None:
    """Export a storyboard to a file: PDF, contact-sheet PNG, or ZIP (PNGs, LoRA files, manifest.json)."""

    def work() -> dict:
        from lorastudio.fileio import check_writable_file
        from lorastudio.studio.storyboards import CONTENT, snapshot, write_export

        if fmt not in CONTENT:
            raise Invalid(f"--format {fmt[:20]!r} is not one of pdf, png, zip")
        check_writable_file(out_file)
        studio = _studio()
        with studio.factory() as session:
            snap = snapshot(session, studio.store, owner_id=studio.local_user, storyboard_id=storyboard_id)
        path = write_export(
            snap, fmt, out_file, studio.store, lambda i, n: err.print(f"panel {i}/{n}", highlight=False)
        )
        return {"file": str(path), "format": fmt, "panels": len(snap.panels), "size": path.stat().st_size}

    run_command(as_json, work, lambda r: out.print(f"wrote {r['file']} ({r['panels']} panels, {r['size']:,} bytes)"))


@storyboard_app.command("regenerate")
def regenerate_cmd(
    manifest: Annotated[Path, typer.Argument(help="manifest.json of an unzipped storyboard ZIP export")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the PNGs (default: next to it)")
    ] = None,
    base: Annotated[str | None, typer.Option(help="Base model to use instead of the recorded one")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Regenerate every panel of an export and report whether each matches its PNG pixel for pixel."""
    outcome: dict = {}

    def work() -> dict:
        from lorastudio.studio.storyboards import regenerate

        def each(i: int, n: int) -> None:
            err.print(f"panel {i}/{n} regenerated", highlight=False)

        outcome.update(regenerate(manifest, out_dir, settings_from_env(), base=base, on_panel=each))
        return outcome

    def render(result: dict) -> None:
        for p in result["panels"]:
            verdict = "[green]matches[/]" if p["matches"] else "[red]differs[/]"
            problems = f" - {'; '.join(p['problems'])}" if p["problems"] else ""
            out.print(f"panel {p['number']} {p['title'] or ''}: {verdict}{problems}", highlight=False)
        done = sum(p["matches"] for p in result["panels"])
        out.print(f"{done} of {len(result['panels'])} panels reproduced pixel for pixel")

    run_command(as_json, work, render)
    if outcome and not outcome["all_match"]:
        raise typer.Exit(1)  # scripts can tell a faithful regeneration from one that drifted
