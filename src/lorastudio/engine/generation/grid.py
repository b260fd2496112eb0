"""Strength grids (a no-LoRA baseline row, then one row per strength, one column per seed) and the
"LoRA not affecting generation" diagnosis: how much a LoRA changes the same-seed image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lorastudio.engine.generation.generate import GenerateRequest, LoraChoice, generate
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.errors import Invalid

LABEL_W, HEADER_H, MIN_CELL = 150, 28, 160


@dataclass
class Grid:
    """The composed grid image and what each row and column was."""

    image: Image.Image
    rows: list[str]
    seeds: list[int]
    warnings: list[str]
    params: dict


def strength_grid(cache: PipelineCache, req: GenerateRequest, strengths: list[float], seeds: list[int]) -> Grid:
    """Render req's LoRAs at each strength (all LoRAs together) for each seed, under a no-LoRA row."""
    if not req.loras:
        raise Invalid("a strength grid needs at least one --lora")
    if not strengths or not seeds:
        raise Invalid("give at least one strength and one seed, e.g. --strengths 0,0.5,1 --seeds 1,2")
    rows: list[tuple[str, list[LoraChoice]]] = [("no LoRA", [])]
    for s in strengths:
        rows.append((f"strength {s:g}", [c.model_copy(update={"strength": s}) for c in req.loras]))
    cells, warnings = [], []
    for _, loras in rows:
        row = []
        for seed in seeds:
            result = generate(cache, req.model_copy(update={"loras": loras, "seed": seed, "n": 1}))
            warnings += [w for w in result.warnings if w not in warnings]
            row.append(result.images[0])
        cells.append(row)
    names = ", ".join(Path(c.lora).stem for c in req.loras)
    image = compose([label for label, _ in rows], seeds, cells, title=names)
    params = {"grid": {"prompt": req.prompt, "loras": names, "strengths": strengths, "seeds": seeds,
                       "base": req.base, "steps": req.steps, "sampler": req.sampler}}  # fmt: skip
    return Grid(image, [label for label, _ in rows], seeds, warnings, params)


def compose(row_labels: list[str], seeds: list[int], cells: list[list[Image.Image]], title: str) -> Image.Image:
    """Lay images out in a labelled grid; small images are enlarged (nearest) so they stay readable."""
    w, h = cells[0][0].size
    scale = max(1, -(-MIN_CELL // max(w, h)))
    cw, ch = w * scale, h * scale
    grid = Image.new("RGB", (LABEL_W + cw * len(seeds), HEADER_H + ch * len(row_labels)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=14)
    draw.text((6, 6), title[:18], fill="black", font=font)
    for j, seed in enumerate(seeds):
        draw.text((LABEL_W + j * cw + 6, 6), f"seed {seed}", fill="black", font=font)
    for i, label in enumerate(row_labels):
        draw.text((6, HEADER_H + i * ch + ch // 2 - 8), label, fill="black", font=font)
        for j, img in enumerate(cells[i]):
            grid.paste(img.resize((cw, ch), Image.Resampling.NEAREST), (LABEL_W + j * cw, HEADER_H + i * ch))
    return grid


@dataclass
class Effect:
    """How much one LoRA (or the whole stack) moves the same-seed image, in 0-255 pixel units."""

    lora: str
    strength: float
    mean_abs_diff: float
    verdict: str


def diagnose(cache: PipelineCache, req: GenerateRequest) -> tuple[list[Effect], list[str]]:
    """Compare each selected LoRA alone, and the stack, against the no-LoRA image with the same seed."""
    seed = req.seed if req.seed is not None else 1
    single = req.model_copy(update={"seed": seed, "n": 1})
    first = generate(cache, single)
    chosen = [(lora["path"], lora["name"], lora["strength"], lora.get("region")) for lora in first.params[0]["loras"]]
    if not chosen:
        raise Invalid("nothing to diagnose: select a LoRA with --lora or <lora:name:weight>")
    plain = _pixels(generate(cache, single.model_copy(update={"loras": []})).images[0])
    effects = []
    for path, name, strength, region in chosen:
        choice = LoraChoice(lora=path, strength=strength, region=region)
        alone = generate(cache, single.model_copy(update={"loras": [choice]}))
        effects.append(_effect(name, strength, plain, _pixels(alone.images[0])))
    if len(chosen) > 1:
        effects.append(_effect("all together", sum(s for _, _, s, _ in chosen), plain, _pixels(first.images[0])))
    return effects, first.warnings


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def _effect(name: str, strength: float, plain: np.ndarray, other: np.ndarray) -> Effect:
    diff = float(np.abs(other - plain).mean())
    if diff < 1.0:
        verdict = ("no visible effect: check the trigger word is in the prompt, raise the strength to 0.8-1.0, "
                   "and check the LoRA trained (lorastudio lora inspect)")  # fmt: skip
    elif diff < 4.0:
        verdict = "weak effect: add the trigger word or raise the strength (guide: 0.8-1.0)"
    else:
        verdict = "clear effect"
    return Effect(name, strength, round(diff, 2), verdict)
