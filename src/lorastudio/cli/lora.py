"""`lorastudio lora ...`: inspect, describe and convert LoRA files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lorastudio.cli.common import JsonOpt, app, out, run_command, settings_from_env
from lorastudio.errors import Invalid

lora_app = typer.Typer(help="Inspect, describe and convert LoRA files.", no_args_is_help=True)
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
