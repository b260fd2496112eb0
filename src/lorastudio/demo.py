"""`make demo`: Action Hero John on the built-in toyworld model, from reference pictures to a storyboard.

Character -> 20 reference renders -> dataset check -> character LoRA -> the guide's Epic Fight Sequence
(faces, attacks, blocks, with kungfustyle) -> contact-sheet storyboard -> identity hit rate.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from lorastudio.config import Settings
from lorastudio.engine.dataset import scan_dataset
from lorastudio.engine.generate import GenerateRequest, generate, save_result
from lorastudio.engine.grid import strength_grid
from lorastudio.engine.pipecache import PipelineCache
from lorastudio.engine.pngmeta import save_png
from lorastudio.engine.presets import get_preset
from lorastudio.engine.toyworld.consistency import (
    TOY_STRENGTH,
    character_prompts,
    character_references,
    hit_rate,
    identity_hit,
    toy_lora_config,
)
from lorastudio.engine.toyworld.detect import find_character
from lorastudio.engine.toyworld.world import HELD_OUT_CHARACTERS
from lorastudio.engine.train import train_lora
from lorastudio.export.contact_sheet import contact_sheet

VILLAIN = "green fighter with magenta head with a cape"  # "Villain Kane", in words the base model knows
SEQUENCE = [
    ("John faces Kane", f"johnhero facing {VILLAIN}, kungfustyle, horse stance, in a dojo"),
    ("John attacks Kane", f"johnhero facing {VILLAIN}, kungfustyle, crane kick, in a dojo"),
    ("Kane blocks John", f"johnhero facing {VILLAIN}, kungfustyle, horse stance, at night"),
]


def run_demo(settings: Settings, out_dir: Path, steps: int, progress) -> dict:
    """Run the demo end to end and print where every file is."""
    console = Console(soft_wrap=True)
    out_dir = out_dir.resolve()
    john = HELD_OUT_CHARACTERS["johnhero"]
    console.print(f"1. Character 'Action Hero John' (trigger johnhero): {john.words()}. The toyworld base model "
                  "never saw this colour pairing, so it cannot draw him from words alone.")  # fmt: skip
    console.print("   Base model: toyworld, the built-in 32x32 toy-world model (not Stable Diffusion).")
    images = out_dir / "johnhero-references"
    character_references(john, images, n=20, seed=7)
    report, _ = scan_dataset(images, kind="character", trigger="johnhero", preset=get_preset("character", "character"),
                             resolution=32, max_pixels=settings.max_image_pixels, bucket_step=32)  # fmt: skip
    counts = report.to_dict()["counts"]
    console.print(f"2. 20 reference renders with captions in {images}: {counts['valid']} usable, "
                  f"{counts['skipped']} skipped")  # fmt: skip
    cfg = toy_lora_config("character", images, "johnhero", out_dir / "johnhero.safetensors", out_dir / "run",
                          steps=steps)  # fmt: skip
    console.print(f"3. Training his character LoRA ({steps} steps, the guide's character preset scaled for a CPU)")
    with progress:
        result = train_lora(cfg, settings=settings, on_progress=progress.update)
    console.print(f"   LoRA: {result.lora_path} ({result.seconds:.0f}s)")

    cache = PipelineCache(settings)
    lora = [{"lora": str(result.lora_path), "strength": TOY_STRENGTH}]
    panels, captions, hits, paths = [], [], 0, []
    for title, prompt in SEQUENCE:
        req = GenerateRequest.build(prompt=prompt, base="toyworld", seed=42, steps=25, loras=lora)
        shot = generate(cache, req)
        paths += save_result(shot, out_dir / "scenes")
        found = bool(find_character(shot.images[0], john))
        hits += found
        panels.append(shot.images[0])
        captions.append(f"{title} - {'johnhero found' if found else 'johnhero NOT found'}")
    console.print(f"4. Epic Fight Sequence (seed 42, LoRA strength {TOY_STRENGTH}): {out_dir / 'scenes'}")
    for path, caption in zip(paths, captions, strict=True):
        console.print(f"   {path.name}: {caption}")
    sheet = contact_sheet(panels, captions, "Epic Fight Sequence - johnhero vs Kane")
    board = save_png(out_dir / "storyboard.png", sheet, {"storyboard": [p for _, p in SEQUENCE]}, a1111=False)
    console.print(f"5. Storyboard contact sheet: {board}")

    prompts = character_prompts(john, 20)
    with_lora = hit_rate(cache, prompts, lora, identity_hit, first_seed=100)
    without = hit_rate(cache, prompts, [], identity_hit, first_seed=100)
    console.print(f"6. Identity hit rate over 20 scene prompts: {with_lora:.0%} with the LoRA, "
                  f"{without:.0%} prompt-only; the sequence above: {hits}/3")  # fmt: skip
    grid = strength_grid(cache, GenerateRequest.build(prompt=SEQUENCE[0][1], base="toyworld", steps=20, loras=lora),
                         [0.6, 1.0, 1.2, 1.4], [42, 43, 44])  # fmt: skip
    grid_path = save_png(out_dir / "strength-grid.png", grid.image, grid.params, a1111=False)
    console.print(f"7. Strength grid (no-LoRA row, then 0.6/1.0/1.2/1.4): {grid_path}")
    console.print(f"   Reproduce a scene: lorastudio generate --from-png {paths[0]}")
    console.print("   Two trained characters in one scene: give each its half of the picture, e.g. "
                  "--lora johnhero@left --lora kanehero@right (README: regional LoRAs)")  # fmt: skip
    return {"lora": str(result.lora_path), "storyboard": str(board), "hit_rate": with_lora}
