"""`lorastudio toyworld ...`: the built-in toy world (renders, detectors, base-model training)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorastudio.cli.common import JsonOpt, app, err, out, run_command, settings_from_env
from lorastudio.errors import Invalid, NotFound

toyworld_app = typer.Typer(
    help="The built-in toy world: references, detection, base-model training.", no_args_is_help=True
)
app.add_typer(toyworld_app, name="toyworld")


def _character(name: str):
    from lorastudio.engine import HELD_OUT_CHARACTERS

    if name not in HELD_OUT_CHARACTERS:
        raise NotFound(f"no toy-world character {name!r}; known: {', '.join(HELD_OUT_CHARACTERS)}")
    return HELD_OUT_CHARACTERS[name]


@toyworld_app.command("references")
def references(
    name: Annotated[str, typer.Argument(help="johnhero, kanehero or mirahero; or a style: boxing, kungfu, mma, sword")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the PNGs and .txt captions")],
    n: Annotated[int, typer.Option(help="How many renders", min=1, max=1000)] = 20,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Render captioned reference pictures of a toy-world character or style, ready for `lorastudio train`."""

    def work() -> dict:
        from lorastudio.engine import STYLES, character_references, style_references
        from lorastudio.fileio import check_writable_dir

        check_writable_dir(out_dir, "--out folder")
        if name in STYLES:
            paths = style_references(name, out_dir, n, seed)
        else:
            paths = character_references(_character(name), out_dir, n, seed)
        return {"folder": str(out_dir), "images": len(paths)}

    run_command(as_json, work, lambda r: out.print(f"{r['images']} renders with captions in {r['folder']}"))


@toyworld_app.command("check")
def check(
    image: Annotated[Path, typer.Argument(help="A 32x32 toy-world image (render or generation)")],
    character: Annotated[str | None, typer.Option(help="Is this character in it?")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What the detectors see in an image: each fighter's colours, accessory and style."""

    def work() -> dict:
        from PIL import Image

        from lorastudio.engine import detect_style, find_character, find_figures

        try:
            img = Image.open(image).convert("RGB")
        except OSError as exc:
            raise Invalid(f"{image} is not a readable image ({exc})") from exc
        figures = [
            {"box": f.box, "body": f.body, "head": f.head, "accessory": f.accessory, "style": detect_style(f)}
            for f in find_figures(img)
        ]
        result: dict = {"fighters": figures}
        if character:
            result["character"] = character
            result["found_at"] = find_character(img, _character(character))
        return result

    def render(r: dict) -> None:
        for f in r["fighters"]:
            out.print(
                f"fighter at {f['box']}: {f['body']} body, {f['head']} head, {f['accessory']}, "
                f"style {f['style'] or '-'}"
            )
        if "character" in r:
            out.print(f"{r['character']}: {'found at ' + str(r['found_at']) if r['found_at'] else 'not found'}")

    run_command(as_json, work, render)


@toyworld_app.command("train-base")
def train_base(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the trained diffusers model")],
    vae_steps: Annotated[int, typer.Option(help="VAE steps")] = 3000,
    unet_steps: Annotated[int, typer.Option(help="UNet + text-encoder steps")] = 40000,
    minutes: Annotated[float | None, typer.Option(help="Stop both stages by this time budget")] = None,
    renders: Annotated[int, typer.Option(help="Training renders")] = 40000,
    batch: Annotated[int, typer.Option(help="Batch size")] = 256,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
) -> None:
    """Train the toyworld base model from scratch (the shipped weights: --minutes 8.3 on one H100)."""

    def work() -> dict:
        from lorastudio.engine import resolve_device, train_toyworld_base
        from lorastudio.fileio import check_writable_dir

        check_writable_dir(out_dir, "--out folder")
        dev = resolve_device(device if device != "auto" else settings_from_env().device)
        path = train_toyworld_base(
            out_dir,
            vae_steps=vae_steps,
            unet_steps=unet_steps,
            minutes=minutes,
            renders=renders,
            batch=batch,
            device=str(dev),
            seed=seed,
            log=lambda line: err.print(line, highlight=False),
        )
        return {"model": str(path)}

    run_command(False, work, lambda r: out.print(f"Model written: {r['model']} (use it with --base {r['model']})"))


@toyworld_app.command("train-styles")
def train_styles(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the four style LoRAs and training_log.txt")],
    steps: Annotated[int, typer.Option(help="Training steps per style", min=1, max=100_000)] = 600,
) -> None:
    """Train and measure the four pre-built fighting-style LoRAs on toyworld (the shipped ones: --steps 600)."""

    def work() -> dict:
        from lorastudio.engine import train_prebuilt_styles
        from lorastudio.fileio import check_writable_dir

        check_writable_dir(out_dir, "--out folder")
        paths = train_prebuilt_styles(
            out_dir, settings_from_env(), steps=steps, log=lambda line: err.print(line, highlight=False)
        )
        return {"folder": str(out_dir), "loras": [p.name for p in paths]}

    run_command(False, work, lambda r: out.print(f"Style LoRAs written in {r['folder']}: {', '.join(r['loras'])}"))
