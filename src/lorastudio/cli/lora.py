"""`lorastudio lora ...`: inspect, describe, convert and score LoRA files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lorastudio.cli.common import JsonOpt, app, err, out, run_command, settings_from_env
from lorastudio.engine import kind_list
from lorastudio.errors import Invalid

lora_app = typer.Typer(help="Inspect, describe, convert and score LoRA files.", no_args_is_help=True)
app.add_typer(lora_app, name="lora")


@lora_app.command("inspect")
def lora_inspect(
    file: Annotated[Path, typer.Argument(help="A .safetensors LoRA (kohya or diffusers/peft format)")],
    base: Annotated[str | None, typer.Option(help="Also check it fits this base model")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a LoRA's family, rank, alpha, modules, trigger words and metadata."""

    def work() -> dict:
        from lorastudio.engine import inspect_lora

        info = inspect_lora(file)
        if base:
            from lorastudio.engine import check_lora_fits

            check_lora_fits(file, base, settings_from_env())
            info["fits_base"] = base
        return info

    run_command(as_json, work, _render_inspect)


def _render_inspect(info: dict) -> None:
    table = Table(title=Path(info["file"]).name, show_header=False)
    rows = [
        ("format", info["format"]),
        ("family", info["family_label"]),
        ("kind", info["kind"] or "-"),
        ("trigger words", ", ".join(info["trigger_words"]) or "-"),
        ("description", info["description"] or "-"),
        ("recommended strength", str(info["recommended_strength"] or "-")),
        ("rank / alpha", f"{info['rank']} / {info['alpha']}"),
        ("modules", f"{info['modules']} " + str(info["modules_by_part"])),
        ("top tags", ", ".join(f"{t} ({n})" for t, n in info["top_tags"]) or "-"),
    ]
    if info.get("fits_base"):
        rows.append(("fits base", info["fits_base"]))
    for key in (
        "ss_sd_model_name",
        "ss_network_module",
        "ss_max_train_steps",
        "ss_resolution",
        "ss_num_train_images",
    ):
        if key in info["metadata"]:
            rows.append((key, info["metadata"][key]))
    for k, v in rows:
        table.add_row(k, str(v))
    out.print(table)


@lora_app.command("describe")
def lora_describe(
    name: Annotated[str, typer.Argument(help="A LoRA file or library name")],
    description: Annotated[str | None, typer.Argument(help="What the subject looks like, in plain words")] = None,
    trigger: Annotated[str | None, typer.Option(help="Also set its trigger word (for LoRAs from elsewhere)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a LoRA's description (used by regional LoRAs) and trigger word in the file itself."""

    def work() -> dict:
        from lorastudio.engine import describe_lora, resolve_lora

        if description is None and trigger is None:
            raise Invalid("give a description, --trigger WORD, or both")
        path = resolve_lora(name, [settings_from_env().loras_dir])
        lora = describe_lora(path, description, trigger)
        info = lora.info
        return {"file": str(path), "description": info.description, "trigger_words": info.trigger_words}

    def render(r: dict) -> None:
        out.print(
            f"{r['file']}: description {r['description'] or '-'!r}; trigger {', '.join(r['trigger_words']) or '-'}"
        )

    run_command(as_json, work, render)


@lora_app.command("convert")
def lora_convert(
    file: Annotated[Path, typer.Argument(help="A diffusers/peft or kohya .safetensors LoRA")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the kohya-format copy")],
    as_json: JsonOpt = False,
) -> None:
    """Import a LoRA in diffusers/peft format and write it in kohya format (what A1111/ComfyUI load)."""

    def work() -> dict:
        from lorastudio.engine import check_lora_path, read_lora, save_lora
        from lorastudio.fileio import check_writable_file

        check_writable_file(check_lora_path(out_file), "--out file")
        lora = read_lora(file)
        save_lora(out_file, lora)
        return {"from": lora.source_format, "to": "kohya", "file": str(out_file), "modules": len(lora.stems)}

    run_command(as_json, work, lambda r: out.print(f"Wrote {r['file']} ({r['modules']} modules, kohya format)"))


@lora_app.command("score")
def lora_score(
    file: Annotated[Path, typer.Argument(help="A .safetensors LoRA, ours or imported")],
    refs: Annotated[Path, typer.Option("--refs", help="A folder of the pictures it should look like")],
    base: Annotated[str | None, typer.Option(help="Base model (default: what the file says, else the default)")] = None,
    kind: Annotated[str | None, typer.Option("--kind", "-k", help=f"{kind_list()} (default: the file's)")] = None,
    trigger: Annotated[str | None, typer.Option(help="Its trigger word (default: the file's)")] = None,
    prompts: Annotated[int, typer.Option(min=1, max=32, help="Evaluation prompts")] = 4,
    steps: Annotated[int, typer.Option(min=1, max=150, help="Sampling steps per render")] = 20,
    strength: Annotated[float | None, typer.Option(help="LoRA strength (default: its recommended one)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a LoRA against reference pictures: DINO / CLIP-I similarity, CLIP-T prompt adherence and the change
    from the base, with and without it (scorer models: LORASTUDIO_SCORER_DINO, LORASTUDIO_SCORER_CLIP)."""

    def work() -> dict:
        from lorastudio.engine import score_lora, scores_table

        progress = None if as_json else _EvalProgress()
        try:
            evaluation = score_lora(
                file,
                refs,
                settings=settings_from_env(),
                base=base,
                kind=kind,
                trigger=trigger,
                prompts=prompts,
                steps=steps,
                strength=strength,
                on_progress=progress,
            )
        finally:
            if progress:
                progress.close()
        return evaluation.model_dump() | {"table": scores_table(evaluation)}

    run_command(as_json, work, lambda r: out.print(r["table"], highlight=False, soft_wrap=True, markup=False))


class _EvalProgress:
    """A line on stderr per rendered evaluation prompt (rendering is what takes the time)."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, event) -> None:
        if event.phase == "generate":  # the "evaluate" events carry scores the table shows at the end
            err.print(f"rendering {event.step}/{event.total}", end="\r", highlight=False)
            self.shown = True

    def close(self) -> None:
        if self.shown:
            err.print()
