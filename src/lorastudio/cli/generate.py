"""Commands for pictures: generate (and --from-png), grid, diagnose."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lorastudio.cli.common import (
    JsonOpt,
    StepProgress,
    app,
    err,
    out,
    run_command,
    settings_from_env,
    warn_if_builtin,
)
from lorastudio.errors import Invalid

LoraOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--lora",
        "-l",
        help="LoRA file or library name, then optionally :STRENGTH and @REGION (left, right, top, bottom, "
        "left-third, ... or x0,y0,x1,y1 fractions), e.g. johnhero:0.8@left (repeatable)",
    ),
]
BaseOpt = Annotated[str | None, typer.Option(help="Base model (default: LORASTUDIO_DEFAULT_BASE_MODEL)")]
StepsOpt = Annotated[int | None, typer.Option(help="Sampling steps (default 20)")]
SamplerOpt = Annotated[str | None, typer.Option(help="Euler a, Euler, DPM++ 2M, DPM++ 2M Karras, DDIM, ...")]
CfgOpt = Annotated[
    float | None, typer.Option("--cfg", help="CFG scale (default: the family's, 7 on SD, 3.5 guidance on FLUX.1)")
]
NegOpt = Annotated[str | None, typer.Option("--negative", help="Negative prompt")]
SizeOpt = Annotated[int | None, typer.Option(help="Pixels, a multiple of 8 (default: the model's native size)")]


def _request(prompt: str, loras: list[str] | None, base: str | None, settings, **values):
    from lorastudio.engine import GenerateRequest, LoraSelection

    return GenerateRequest.build(
        prompt=prompt,
        loras=[LoraSelection.parse(v) for v in loras or []],
        base=base or settings.default_base_model,
        **values,
    )


@app.command()
def generate(
    prompt: Annotated[str | None, typer.Argument(help="Prompt; A1111 <lora:name:0.8> tags work too")] = None,
    lora: LoraOpt = None,
    base: BaseOpt = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed, 0 to 2**64-1 (default, -1: random); image i uses seed+i")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Number of images (batch)")] = None,
    steps: StepsOpt = None,
    width: SizeOpt = None,
    height: SizeOpt = None,
    negative: NegOpt = None,
    sampler: SamplerOpt = None,
    cfg: CfgOpt = None,
    add_triggers: Annotated[bool, typer.Option(help="Put missing LoRA trigger words into the prompt")] = False,
    variation_seed: Annotated[int | None, typer.Option(help="Blend toward this seed's noise")] = None,
    variation_strength: Annotated[float | None, typer.Option(help="0-1, how far to blend (e.g. 0.1)")] = None,
    fuse: Annotated[
        bool | None,
        typer.Option(
            "--fuse/--no-fuse",
            help="Fold LoRAs into the weights (default: on for fp32 weights, as on a CPU; off for fp16)",
        ),
    ] = None,
    region_blend: Annotated[
        float | None,
        typer.Option(help="With LoRAs @REGION: share of the last steps the regions paint together (default 0.1)"),
    ] = None,
    from_png: Annotated[Path | None, typer.Option(help="Reproduce an image from its own parameters")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default: <home>/outputs)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate images with stacked LoRAs; every PNG carries the parameters that reproduce it."""

    def work() -> dict:
        from lorastudio.engine import PipelineCache, save_result
        from lorastudio.engine import generate as run
        from lorastudio.fileio import check_writable_dir

        settings = settings_from_env()
        keep = None  # --from-png re-runs the image's whole batch and keeps just that image
        if from_png is not None:
            from lorastudio.engine import request_from_png

            req, keep = request_from_png(from_png, base=base, default_base=settings.default_base_model)
        elif not prompt:
            raise Invalid("give a prompt, or --from-png IMAGE to reproduce an image")
        else:
            req = _request(
                prompt,
                lora,
                base,
                settings,
                seed=seed,
                n=n,
                steps=steps,
                width=width,
                height=height,
                negative_prompt=negative,
                sampler=sampler,
                cfg_scale=cfg,
                add_triggers=add_triggers,
                variation_seed=variation_seed,
                variation_strength=variation_strength,
                fuse=fuse,
                region_blend=region_blend,
            )
        warn_if_builtin(req.base)
        target = out_dir or settings.home / "outputs"
        check_writable_dir(target, "--out folder")
        with StepProgress("generating") as progress:
            result = run(PipelineCache(settings), req, on_progress=progress.update)
        if keep is not None:
            result.images, result.params = [result.images[keep]], [result.params[keep]]
        save_result(result, target)
        return result.to_dict()

    run_command(as_json, work, _render_generate)


def _render_generate(result: dict) -> None:
    for warning in result["warnings"]:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for path, seed in zip(result["images"], result["seeds"], strict=True):
        out.print(f"[green]{path}[/]  seed {seed}", highlight=False)
    out.print(f"{len(result['images'])} image(s) in {result['seconds']} s", highlight=False)


def _numbers(text: str, kind: type, what: str) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise Invalid(f"{what} must be a comma-separated list like 0,0.5,1 (got {text[:60]!r})") from exc


@app.command()
def grid(
    prompt: Annotated[str, typer.Argument(help="Prompt (include the trigger word)")],
    lora: LoraOpt = None,
    strengths: Annotated[str, typer.Option(help="Comma-separated strengths")] = "0.4,0.6,0.8,1.0",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds")] = "1,2,3",
    out_file: Annotated[Path, typer.Option("--out", help="Grid PNG to write")] = Path("grid.png"),
    base: BaseOpt = None,
    steps: StepsOpt = None,
    sampler: SamplerOpt = None,
    cfg: CfgOpt = None,
    negative: NegOpt = None,
    width: SizeOpt = None,
    height: SizeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One labelled image: a no-LoRA baseline row, then a row per strength, a column per seed."""

    def work() -> dict:
        from lorastudio.engine import PipelineCache, save_png, strength_grid
        from lorastudio.fileio import check_writable_file

        settings = settings_from_env()
        check_writable_file(out_file, "--out file")
        req = _request(
            prompt,
            lora,
            base,
            settings,
            steps=steps,
            sampler=sampler,
            cfg_scale=cfg,
            negative_prompt=negative,
            width=width,
            height=height,
        )
        warn_if_builtin(req.base)
        result = strength_grid(
            PipelineCache(settings), req, _numbers(strengths, float, "--strengths"), _numbers(seeds, int, "--seeds")
        )
        save_png(out_file, result.image, result.params, a1111=False)
        return {"grid": str(out_file)} | result.to_dict()

    def render(r: dict) -> None:
        for warning in r["warnings"]:
            err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        out.print(f"[green]{r['grid']}[/]: rows {', '.join(r['rows'])}; seeds {r['seeds']}", highlight=False)

    run_command(as_json, work, render)


@app.command()
def diagnose(
    prompt: Annotated[str, typer.Argument(help="The prompt you use")],
    lora: LoraOpt = None,
    seed: Annotated[int, typer.Option(help="Seed for the comparison")] = 1,
    base: BaseOpt = None,
    steps: StepsOpt = None,
    sampler: SamplerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """ "LoRA not affecting generation?" Measures how much each LoRA changes the same-seed image."""

    def work() -> dict:
        from lorastudio.engine import PipelineCache, diagnosis_to_dict
        from lorastudio.engine import diagnose as run

        settings = settings_from_env()
        req = _request(prompt, lora, base, settings, seed=seed, steps=steps, sampler=sampler)
        effects, warnings = run(PipelineCache(settings), req)
        return diagnosis_to_dict(effects, warnings)

    def render(r: dict) -> None:
        table = Table(title="Effect against the no-LoRA image (same seed), mean |difference| in 0-255")
        for col in ("LoRA", "strength", "difference", "verdict"):
            table.add_column(col)
        for e in r["effects"]:
            table.add_row(e["lora"], f"{e['strength']:g}", f"{e['mean_abs_diff']:.2f}", e["verdict"])
        out.print(table)
        for warning in r["warnings"]:
            out.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)

    run_command(as_json, work, render)
