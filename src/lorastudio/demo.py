"""`make demo`: pictures -> validation report -> a trained character LoRA -> scenes, grid, diagnosis."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from lorastudio.config import Settings
from lorastudio.engine.dataset import scan_dataset
from lorastudio.engine.generate import GenerateRequest, generate, save_result
from lorastudio.engine.grid import diagnose, strength_grid
from lorastudio.engine.lorafile import inspect_lora
from lorastudio.engine.pipecache import PipelineCache
from lorastudio.engine.pngmeta import save_png
from lorastudio.engine.presets import get_preset
from lorastudio.engine.synthetic import write_reference_set
from lorastudio.engine.train import train_lora
from lorastudio.engine.trainconfig import TrainConfig


def run_demo(settings: Settings, out_dir: Path, steps: int, progress) -> dict:
    """Run the demo end to end and print where every file is."""
    console = Console(soft_wrap=True)
    out_dir = out_dir.resolve()
    images = out_dir / "johnhero-images"
    write_reference_set(images, 16, seed=7, size=256, caption="johnhero, a person, fighting stance")
    console.print(f"1. Wrote 16 reference pictures of 'Action Hero John' to {images}")
    preset = get_preset("character", "character")
    report, _ = scan_dataset(
        images, kind="character", trigger="johnhero", preset=preset, resolution=64,
        max_pixels=settings.max_image_pixels,
    )  # fmt: skip
    summary = report.to_dict()["counts"]
    console.print(f"2. Dataset check: {summary['valid']} usable, {summary['skipped']} skipped, "
                  f"{summary['warnings']} with warnings")  # fmt: skip
    for note in report.notes:
        console.print(f"   {note.severity}: {note.message}")
    console.print(
        "3. Training a character LoRA on the built-in tiny-sd15 test model "
        "(a tiny random model, not Stable Diffusion: it shows the pipeline, not pretty pictures)"
    )
    cfg = TrainConfig.from_preset(
        kind="character",
        images=images,
        trigger="johnhero",
        base="tiny-sd15",
        output=out_dir / "johnhero-character.safetensors",
        run_dir=out_dir / "run",
        steps=steps,
        resolution=64,
        network_dim=8,
        network_alpha=4,
        learning_rate=1e-3,
        checkpoint_every=50,
        sample_every=steps,
        sample_prompts=["johnhero, a person, fighting stance"],
        sample_steps=10,
    )
    with progress:
        result = train_lora(cfg, settings=settings, on_progress=progress.update)
    info = inspect_lora(result.lora_path)
    first, last = result.loss_history[0][1], sum(v for _, v in result.loss_history[-20:]) / 20
    console.print(f"4. LoRA: {result.lora_path}")
    console.print(f"   family {info['family_label']}, rank {info['rank']}, alpha {info['alpha']}, "
                  f"{info['modules']} modules, trigger {info['trigger_words']}")  # fmt: skip
    console.print(
        f"   {result.steps_done} steps in {result.seconds:.1f}s; loss {first:.3f} -> {last:.3f} (last 20 avg)"
    )
    console.print(f"   checkpoints: {cfg.run_dir / 'checkpoints'}  samples: {cfg.run_dir / 'samples'}")
    console.print(f"   inspect it: lorastudio lora inspect {result.lora_path}")

    cache = PipelineCache(settings)
    scene = GenerateRequest.build(
        prompt="johnhero faces kanehero, kungfustyle, fighting stance", base="tiny-sd15", seed=42, n=3, steps=12,
        loras=[{"lora": str(result.lora_path), "strength": 0.8}],
    )  # fmt: skip
    shots = generate(cache, scene)
    paths = save_result(shots, out_dir / "scenes")
    console.print(f"5. Three scenes with the LoRA at 0.8 (seeds 42-44), parameters inside each PNG: {paths[0].parent}")
    for warning in shots.warnings:
        console.print(f"   warning: {warning}")
    grid = strength_grid(cache, scene.model_copy(update={"n": 1}), [0.4, 0.8, 1.0], [42, 43])
    grid_path = save_png(out_dir / "strength-grid.png", grid.image, grid.params, a1111=False)
    console.print(f"6. Strength grid (no-LoRA baseline row, then 0.4 / 0.8 / 1.0): {grid_path}")
    effects, _ = diagnose(cache, scene.model_copy(update={"n": 1}))
    for effect in effects:
        console.print(
            f"7. Effect of {effect.lora} at {effect.strength:g}: {effect.mean_abs_diff}/255 - {effect.verdict}"
        )
    console.print(f"   reproduce a scene: lorastudio generate --from-png {paths[0]}")
    return {"lora": str(result.lora_path)}
