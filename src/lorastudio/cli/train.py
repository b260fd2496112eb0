"""`lorastudio train` and `lorastudio presets`."""

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
    out,
    run_command,
    settings_from_env,
    warn_if_builtin,
)


@app.command()
def train(
    images: Annotated[Path, typer.Argument(help="Folder of training images")],
    kind: KindOpt,
    trigger: Annotated[str, typer.Option(help="Trigger word, e.g. johnhero")],
    description: Annotated[
        str | None, typer.Option(help="What the subject looks like, e.g. 'red gi, yellow hair, white headband'")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="Preset (see `lorastudio presets`)")] = None,
    base: Annotated[
        str | None, typer.Option(help="Base model: a name from `lorastudio models list`, a folder or .safetensors")
    ] = None,
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
    quantize_base: Annotated[
        str | None, typer.Option(help="none or int8: hold the frozen base in 8 bits (FLUX.1, Qwen-Image, ...)")
    ] = None,
    blocks_to_swap: Annotated[
        int | None, typer.Option(help="Transformer blocks kept in host memory until they run (small cards)")
    ] = None,
    lora_format: Annotated[str | None, typer.Option(help="kohya (ComfyUI/Forge/A1111) or diffusers keys")] = None,
    flip: Annotated[bool, typer.Option("--flip", help="Add mirrored copies (not for asymmetric characters)")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed, 0 to 2**64-1; -1 picks one (recorded)")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps (0: off)")] = None,
    sample_every: Annotated[int | None, typer.Option(help="Render sample prompts every N steps")] = None,
    sample_prompt: Annotated[list[str] | None, typer.Option(help="Sample prompt (repeatable)")] = None,
    evaluate: Annotated[
        bool, typer.Option("--eval", help="Score every checkpoint and keep the best as the LoRA (table at the end)")
    ] = False,
    eval_prompts: Annotated[int | None, typer.Option(help="Evaluation prompts per checkpoint (default 4)")] = None,
    eval_share: Annotated[
        float | None, typer.Option(help="Most of the run's time the evaluation may take (default 0.1)")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Folder for checkpoints and samples")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps")] = None,
    devices: Annotated[
        int | None,
        typer.Option(
            help="Train on N GPUs at once (data parallel, started by torchrun): each step takes N x --batch-size "
            "images; the learning rate is used as given"
        ),
    ] = None,
    profile: Annotated[bool, typer.Option(help="Print the time each phase of a step took (slower on a GPU)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA from a folder of images and write a kohya-format .safetensors file."""

    def work() -> dict:
        from lorastudio.engine import TrainConfig, base_family, check_trigger, train_lora

        settings = settings_from_env()
        spec = base or settings.default_base_model
        output = out_file or settings.loras_dir / f"{check_trigger(trigger)}-{kind}.safetensors"
        cfg = TrainConfig.from_preset(
            kind=kind,
            preset=preset,
            family=base_family(spec, settings),
            images=images,
            trigger=trigger,
            description=description,
            base=spec,
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
            quantize_base=quantize_base,
            blocks_to_swap=blocks_to_swap,
            lora_format=lora_format,
            flip_augment=flip,
            seed=seed,
            checkpoint_every=checkpoint_every,
            sample_every=sample_every,
            sample_prompts=sample_prompt,
            evaluate=evaluate,
            eval_prompts=eval_prompts,
            eval_share=eval_share,
            device=device,
            devices=devices,
            profile=profile,
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
        return result.to_dict() | {
            "run_dir": str(cfg.run_dir),
            "seed": cfg.seed,
            "resolution": cfg.resolution,
            "devices": cfg.devices,
            "global_batch": cfg.devices * cfg.batch_size * cfg.gradient_accumulation,
        }

    run_command(as_json, work, _render_train)


def _render_train(result: dict) -> None:
    if result["stopped"]:
        out.print(f"Stopped at step {result['steps']}; resume with --resume. Run folder: {result['run_dir']}")
        return
    out.print(f"[green]LoRA written:[/] {result['lora']}", highlight=False)
    out.print(
        f"{result['steps']} steps on {result['images_used']} images in {result['seconds']} s, "
        f"final loss {result['final_loss']:.4f}, family {result['family']}"
        + (f", on {result['devices']} devices (global batch {result['global_batch']})" if result["devices"] > 1 else "")
    )
    if result.get("evaluation"):
        from lorastudio.engine import Evaluation, scores_table

        out.print(scores_table(Evaluation.model_validate(result["evaluation"])), highlight=False)
        if result.get("alternatives"):
            out.print(f"other scored checkpoints: {', '.join(result['alternatives'].values())}", highlight=False)
    if result.get("phase_seconds"):
        total = sum(result["phase_seconds"].values()) or 1.0
        out.print(
            "time per phase: "
            + ", ".join(f"{k} {v:.2f} s ({v / total:.0%})" for k, v in result["phase_seconds"].items())
        )


@app.command()
def presets(as_json: JsonOpt = False) -> None:
    """Show the training presets (the guide's optimal settings, plus pose, visual style and -hires)."""

    def work() -> list[dict]:
        from dataclasses import asdict

        from lorastudio.engine import PRESETS

        return [asdict(p) for p in PRESETS.values()]

    def render(rows: list[dict]) -> None:
        table = Table(title="Training presets")
        for col in ("name", "steps", "lr", "dim/alpha", "resolution", "batch", "images"):
            table.add_column(col)
        for p in rows:
            lo, hi = p["steps_range"]
            table.add_row(
                p["name"],
                f"{p['steps']} ({lo}-{hi})",
                f"{p['learning_rate']:g}",
                f"{p['network_dim']}/{p['network_alpha']:g}",
                str(p["resolution"]),
                str(p["batch_size"]),
                "{}-{}".format(*p["images_range"]),
            )
        out.print(table)

    run_command(as_json, work, render)
