"""Commands for data and training: dataset check, train, lora inspect/convert, models, presets, demo."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lorastudio.cli.common import (
    JsonOpt,
    KindOpt,
    TrainProgress,
    app,
    dataset_app,
    lora_app,
    models_app,
    out,
    run_command,
    settings_from_env,
    warn_if_builtin,
)
from lorastudio.errors import Invalid, LoraStudioError


@dataset_app.command("check")
def dataset_check(
    folder: Annotated[Path, typer.Argument(help="Folder of PNG/JPEG images (optional .txt captions)")],
    kind: KindOpt = "character",
    trigger: Annotated[str, typer.Option(help="Trigger word to check captions against")] = "trigger",
    resolution: Annotated[int | None, typer.Option(help="Training resolution (default: the preset's)")] = None,
    preset: Annotated[str | None, typer.Option(help="Preset name (default: the kind's)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate every image: format, corruption, size, duplicates, blur, and the image count."""

    def work() -> dict:
        from lorastudio.engine.data.dataset import scan_dataset
        from lorastudio.engine.training.presets import get_preset

        settings = settings_from_env()
        p = get_preset(preset, kind)
        report, _ = scan_dataset(
            folder,
            kind=kind,
            trigger=trigger,
            preset=p,
            resolution=resolution or p.resolution,
            max_pixels=settings.max_image_pixels,
        )
        return report.to_dict()

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


@app.command()
def train(
    images: Annotated[Path, typer.Argument(help="Folder of training images")],
    kind: KindOpt,
    trigger: Annotated[str, typer.Option(help="Trigger word, e.g. johnhero")],
    description: Annotated[
        str | None, typer.Option(help="What the subject looks like, e.g. 'red gi, yellow hair, white headband'")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="Preset (see `lorastudio presets`)")] = None,
    base: Annotated[str | None, typer.Option(help="Base model: tiny-sd15, tiny-sdxl, folder, .safetensors")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps")] = None,
    resolution: Annotated[int | None, typer.Option(help="Training resolution (bucket area)")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Output .safetensors file")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run's latest checkpoint")] = False,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate")] = None,
    dim: Annotated[int | None, typer.Option("--dim", help="Network dim (rank)")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Network alpha")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Gradient accumulation steps")] = None,
    target: Annotated[str | None, typer.Option(help="attn, attn-ff or all (adds conv layers)")] = None,
    train_text_encoder: Annotated[bool, typer.Option(help="Also train text-encoder LoRA")] = False,
    optimizer: Annotated[str | None, typer.Option(help="adamw, adamw8bit (CUDA) or prodigy")] = None,
    scheduler: Annotated[str | None, typer.Option(help="LR schedule, e.g. cosine")] = None,
    warmup: Annotated[int | None, typer.Option(help="Warm-up steps")] = None,
    min_snr_gamma: Annotated[float | None, typer.Option(help="Min-SNR gamma (default 5)")] = None,
    noise_offset: Annotated[float | None, typer.Option(help="Noise offset, e.g. 0.05")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, no, fp16 or bf16")] = None,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade speed for memory")] = False,
    flip: Annotated[bool, typer.Option("--flip", help="Add mirrored copies (not for asymmetric characters)")] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps (0: off)")] = None,
    sample_every: Annotated[int | None, typer.Option(help="Render sample prompts every N steps")] = None,
    sample_prompt: Annotated[list[str] | None, typer.Option(help="Sample prompt (repeatable)")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Folder for checkpoints and samples")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA from a folder of images and write a kohya-format .safetensors file."""

    def work() -> dict:
        from lorastudio.engine.training.config import TrainConfig
        from lorastudio.engine.training.train import train_lora

        settings = settings_from_env()
        output = out_file or settings.loras_dir / f"{trigger}-{kind}.safetensors"
        cfg = TrainConfig.from_preset(
            kind=kind,
            preset=preset,
            images=images,
            trigger=trigger,
            description=description,
            base=base or settings.default_base_model,
            output=output,
            run_dir=run_dir or settings.runs_dir / output.stem,
            resume=resume,
            steps=steps,
            resolution=resolution,
            learning_rate=lr,
            network_dim=dim,
            network_alpha=alpha,
            batch_size=batch_size,
            gradient_accumulation=grad_accum,
            target=target,
            train_text_encoder=train_text_encoder,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            warmup_steps=warmup,
            min_snr_gamma=min_snr_gamma,
            noise_offset=noise_offset,
            precision=precision,
            gradient_checkpointing=gradient_checkpointing,
            flip_augment=flip,
            seed=seed,
            checkpoint_every=checkpoint_every,
            sample_every=sample_every,
            sample_prompts=sample_prompt,
            device=device,
        )
        warn_if_builtin(cfg.base)
        stop = threading.Event()
        # Ctrl-C asks the loop to stop after the current step and write a checkpoint for --resume.
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            with TrainProgress(cfg.steps) as progress:
                result = train_lora(cfg, settings=settings, on_progress=progress.update, should_stop=stop.is_set)
        finally:
            signal.signal(signal.SIGINT, previous)
        return {
            "lora": str(result.lora_path) if result.lora_path else None,
            "stopped": result.stopped,
            "steps": result.steps_done,
            "family": result.family,
            "images_used": result.images_used,
            "seconds": round(result.seconds, 2),
            "final_loss": result.loss_history[-1][1] if result.loss_history else None,
            "checkpoints": [str(p) for p in result.checkpoints],
            "samples": [str(p) for p in result.samples],
            "run_dir": str(cfg.run_dir),
        }

    run_command(as_json, work, _render_train)


def _render_train(result: dict) -> None:
    if result["stopped"]:
        out.print(f"Stopped at step {result['steps']}; resume with --resume. Run folder: {result['run_dir']}")
        return
    out.print(f"[green]LoRA written:[/] {result['lora']}", highlight=False)
    out.print(f"{result['steps']} steps on {result['images_used']} images in {result['seconds']} s, "
              f"final loss {result['final_loss']:.4f}, family {result['family']}")  # fmt: skip


@lora_app.command("inspect")
def lora_inspect(
    file: Annotated[Path, typer.Argument(help="A .safetensors LoRA (kohya or diffusers/peft format)")],
    base: Annotated[str | None, typer.Option(help="Also check it fits this base model")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a LoRA's family, rank, alpha, modules, trigger words and metadata."""

    def work() -> dict:
        from lorastudio.engine.lora.file import inspect_lora

        info = inspect_lora(file)
        if base:
            from lorastudio.engine.lora.fit import check_lora_fits

            settings = settings_from_env()
            check_lora_fits(file, base, settings)
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
        from lorastudio.engine.generation.pipecache import resolve_lora
        from lorastudio.engine.lora.file import describe_lora

        if description is None and trigger is None:
            raise Invalid("give a description, --trigger WORD, or both")
        path = resolve_lora(name, [settings_from_env().loras_dir])
        lora = describe_lora(path, description, trigger)
        return {"file": str(path), "description": lora.description, "trigger_words": lora.trigger_words}

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
        from lorastudio.engine.lora.file import read_lora, save_lora

        lora = read_lora(file)
        save_lora(out_file, lora)
        return {"from": lora.source_format, "to": "kohya", "file": str(out_file), "modules": len(lora.stems)}

    run_command(as_json, work, lambda r: out.print(f"Wrote {r['file']} ({r['modules']} modules, kohya format)"))


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """List built-in and installed base models."""

    def work() -> list[dict]:
        from lorastudio.engine.models.basemodel import TOYWORLD, detect_family, family_label
        from lorastudio.engine.models.tiny import TINY_NAMES

        settings = settings_from_env()
        rows = []
        for name in (TOYWORLD, *TINY_NAMES):
            built = name == TOYWORLD or (settings.models_dir / name / "model_index.json").exists()
            fam = name
            rows.append({"name": name, "family": fam, "label": family_label(fam), "built_in": True,
                         "ready": built, "default": name == settings.default_base_model})  # fmt: skip
        if settings.models_dir.is_dir():
            for path in sorted(settings.models_dir.iterdir()):
                if path.name in TINY_NAMES or path.name.startswith("."):
                    continue
                try:
                    fam = detect_family(path)
                except LoraStudioError:
                    continue
                rows.append({"name": str(path), "family": fam, "label": family_label(fam), "built_in": False,
                             "ready": True, "default": str(path) == settings.default_base_model})  # fmt: skip
        return rows

    def render(rows: list[dict]) -> None:
        table = Table(title="Base models (pass a name or any path with --base)")
        for col in ("name", "family", "ready", "default"):
            table.add_column(col)
        for r in rows:
            ready = "yes" if r["ready"] else "built on first use"
            table.add_row(r["name"], r["label"], ready, "*" if r["default"] else "")
        out.print(table)

    run_command(as_json, work, render)


@app.command()
def presets(as_json: JsonOpt = False) -> None:
    """Show the training presets (the guide's optimal settings, plus pose, visual style and -hires)."""

    def work() -> list[dict]:
        from dataclasses import asdict

        from lorastudio.engine.training.presets import PRESETS

        return [asdict(p) for p in PRESETS.values()]

    def render(rows: list[dict]) -> None:
        table = Table(title="Training presets")
        for col in ("name", "steps", "lr", "dim/alpha", "resolution", "batch", "images"):
            table.add_column(col)
        for p in rows:
            lo, hi = p["steps_range"]
            table.add_row(p["name"], f"{p['steps']} ({lo}-{hi})", f"{p['learning_rate']:g}",
                          f"{p['network_dim']}/{p['network_alpha']:g}", str(p["resolution"]),
                          str(p["batch_size"]), "{}-{}".format(*p["images_range"]))  # fmt: skip
        out.print(table)

    run_command(as_json, work, render)


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
