"""`make demo`: Action Hero John on the built-in toyworld model, from reference pictures to a storyboard.

Character -> 20 reference renders -> dataset check -> character LoRA (and his opponent Kane's) -> the
guide's Epic Fight Sequence (faces, attacks, blocks, with kungfustyle; each character confined to his half
of the picture) -> contact-sheet storyboard -> identity hit rate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from lorastudio.config import Settings
from lorastudio.engine import (
    HELD_OUT_CHARACTERS,
    GenerateRequest,
    PipelineCache,
    find_character,
    generate,
    get_preset,
    save_png,
    save_result,
    scan_dataset,
    strength_grid,
    train_lora,
)
from lorastudio.engine.toyworld.consistency import (
    TOY_STRENGTH,
    Prompt,
    character_prompts,
    character_references,
    hit_rate,
    identity_hit,
    pair_loras,
    toy_lora_config,
)
from lorastudio.export.contact_sheet import contact_sheet
from lorastudio.fileio import check_writable_dir

SEQUENCE = [
    ("John faces Kane", "johnhero facing kanehero, kungfustyle, horse stance, in a dojo"),
    ("John attacks Kane", "johnhero facing kanehero, kungfustyle, crane kick, in a dojo"),
    ("Kane blocks John", "johnhero facing kanehero, kungfustyle, horse stance, at night"),
]


def run_demo(settings: Settings, out_dir: Path, steps: int, progress: Callable[[int], object]) -> dict:
    """Run the demo end to end and print where every file is; `progress(total)` makes a progress bar."""
    console = Console(soft_wrap=True)
    out_dir = check_writable_dir(out_dir.resolve(), "--out folder")
    john, kane = HELD_OUT_CHARACTERS["johnhero"], HELD_OUT_CHARACTERS["kanehero"]
    console.print(
        f"1. Character 'Action Hero John' (trigger johnhero): {john.words()}; his opponent 'Villain "
        f"Kane' (kanehero): {kane.words()}. The toyworld base model never saw these colour pairings, so "
        "it cannot draw them from words alone."
    )
    console.print("   Base model: toyworld, the built-in 32x32 toy-world model (not Stable Diffusion).")
    images = out_dir / "johnhero-references"
    character_references(john, images, n=20, seed=7)
    report, _ = scan_dataset(
        images,
        kind="character",
        trigger="johnhero",
        preset=get_preset("character", "character"),
        resolution=32,
        max_pixels=settings.max_image_pixels,
        bucket_step=32,
    )
    counts = report.to_dict()["counts"]
    console.print(
        f"2. 20 reference renders with captions in {images}: {counts['valid']} usable, {counts['skipped']} skipped"
    )
    console.print(f"3. Training his character LoRA ({steps} steps, the guide's character preset scaled for a CPU)")
    john_lora = _train(settings, john.name, images, out_dir, steps, progress, console)
    # Kane only plays the opponent here, so half the steps do (measured: 20 of 20 pair scenes right).
    kane_images = out_dir / "kanehero-references"
    character_references(kane, kane_images, n=20, seed=8)
    console.print(f"   ... and Kane's, from 20 references in {kane_images} ({steps // 2} steps)")
    kane_lora = _train(settings, kane.name, kane_images, out_dir, steps // 2, progress, console)

    cache = PipelineCache(settings)
    # Each character confined to his half of the picture (regional LoRAs), so neither bleeds into the other.
    loras = pair_loras(str(john_lora), str(kane_lora), TOY_STRENGTH)
    panels, captions, both, paths = [], [], 0, []
    for title, prompt in SEQUENCE:
        req = GenerateRequest.build(prompt=prompt, base="toyworld", seed=42, steps=25, loras=loras)
        shot = generate(cache, req)
        paths += save_result(shot, out_dir / "scenes")
        found = [c.name for c in (john, kane) if find_character(shot.images[0], c)]
        both += identity_hit(shot.images[0], Prompt(prompt, (john, kane), "kungfu"))
        panels.append(shot.images[0])
        captions.append(f"{title} - found: {', '.join(found) or 'neither'}")
    console.print(
        f"4. Epic Fight Sequence (seed 42, johnhero@left and kanehero@right at {TOY_STRENGTH}): {out_dir / 'scenes'}"
    )
    for path, caption in zip(paths, captions, strict=True):
        console.print(f"   {path.name}: {caption}")
    sheet = contact_sheet(panels, captions, "Epic Fight Sequence - johnhero vs kanehero")
    board = save_png(out_dir / "storyboard.png", sheet, {"storyboard": [p for _, p in SEQUENCE]}, a1111=False)
    console.print(f"5. Storyboard contact sheet: {board}")

    prompts = character_prompts(john, 10)  # 10 keep the demo under 5 minutes; the benchmark runs 20
    john_only = [{"lora": str(john_lora), "strength": TOY_STRENGTH}]
    with_lora = hit_rate(cache, prompts, john_only, identity_hit, first_seed=100)
    without = hit_rate(cache, prompts, [], identity_hit, first_seed=100)
    console.print(
        f"6. John's identity hit rate over 10 scene prompts: {with_lora:.0%} with his LoRA, "
        f"{without:.0%} prompt-only; both fighters right in the sequence above: {both}/3"
    )
    grid = strength_grid(
        cache,
        GenerateRequest.build(prompt=prompts[0].text, base="toyworld", steps=20, loras=john_only),
        [0.6, 1.0, 1.2, 1.4],
        [42, 43],
    )
    grid_path = save_png(out_dir / "strength-grid.png", grid.image, grid.params, a1111=False)
    console.print(f"7. Strength grid for John's LoRA (no-LoRA row, then 0.6/1.0/1.2/1.4): {grid_path}")
    console.print(f"   Reproduce a scene: lorastudio generate --from-png {paths[0]}")
    return {"lora": str(john_lora), "storyboard": str(board), "hit_rate": with_lora, "pair_scenes_right": both}


def _train(settings: Settings, name: str, images: Path, out_dir: Path, steps: int, progress, console) -> Path:
    cfg = toy_lora_config(
        "character", images, name, out_dir / f"{name}.safetensors", out_dir / f"run-{name}", steps=steps
    )
    with progress(steps) as bar:
        result = train_lora(cfg, settings=settings, on_progress=bar.update)
    console.print(f"   LoRA: {result.lora_path} ({result.seconds:.0f}s)")
    return result.lora_path
