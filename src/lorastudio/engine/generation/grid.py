"""Strength grids (a no-LoRA baseline row, then one row per strength, one column per seed) and the
"LoRA not affecting generation" diagnosis: how much a LoRA changes the same-seed image."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lorastudio.engine.generation.generate import GenerateRequest, generate, prepare
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.seeds import check_seed
from lorastudio.engine.selection import LoraSelection, parse_strength
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

    def to_dict(self) -> dict:
        """JSON-able form (the image is left out; the caller saves it)."""
        return {"rows": self.rows, "seeds": self.seeds, "warnings": self.warnings, "params": self.params}


def strength_grid(cache: PipelineCache, req: GenerateRequest, strengths: list[float], seeds: list[int]) -> Grid:
    """Render req's LoRAs at each strength (all LoRAs together) for each seed, under a no-LoRA row."""
    if not req.loras:
        raise Invalid("a strength grid needs at least one LoRA in $loras", setting="loras")
    if not strengths or not seeds:
        raise Invalid(
            "give at least one strength and one seed, e.g. $strengths 0,0.5,1 and $seeds 1,2", setting="strengths"
        )
    if len(strengths) > 16 or len(seeds) > 16:
        raise Invalid("a grid has at most 16 strengths and 16 seeds; split it into several grids")
    strengths = [parse_strength(str(s), "$strengths", setting="strengths") for s in strengths]
    seeds = [check_seed(seed, "$seeds: seed", setting="seeds") for seed in seeds]
    if any(seed is None for seed in seeds):
        raise Invalid("$seeds: a grid compares fixed seeds; give seeds from 0 to 2**64-1 (not -1)", setting="seeds")
    rows: list[tuple[str, list[LoraSelection]]] = [("no LoRA", [])]
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
    params = {
        "grid": {
            "prompt": req.prompt,
            "loras": names,
            "strengths": strengths,
            "seeds": seeds,
            "base": req.base,
            "steps": req.steps,
            "sampler": req.sampler,
        }
    }
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


def diagnosis_to_dict(effects: list[Effect], warnings: list[str]) -> dict:
    """What `diagnose --json` prints and the HTTP API returns."""
    return {"effects": [asdict(e) for e in effects], "warnings": warnings}


def diagnose(cache: PipelineCache, req: GenerateRequest) -> tuple[list[Effect], list[str]]:
    """Compare each selected LoRA alone, and the stack, against the no-LoRA image with the same seed."""
    seed = req.seed if req.seed is not None else 1
    single = req.model_copy(update={"seed": seed, "n": 1})
    chosen = prepare(cache, single).loras  # every selection (options and prompt tags), strengths settled
    if not chosen:
        raise Invalid("nothing to diagnose: select a LoRA in $loras or with <lora:name:weight>", setting="loras")
    first = generate(cache, single)
    prompt_only = single.model_copy(update={"loras": [], "prompt": prepare(cache, single).prompt})
    plain = _pixels(generate(cache, prompt_only).images[0])
    effects = []
    for sel, lora in chosen:
        alone = generate(
            cache, prompt_only.model_copy(update={"loras": [sel.model_copy(update={"lora": str(lora.path)})]})
        )
        effects.append(_effect(lora.name, sel.strength, plain, _pixels(alone.images[0])))
    if len(chosen) > 1:
        effects.append(_effect("all together", sum(sel.strength for sel, _ in chosen), plain, _pixels(first.images[0])))
    return effects, first.warnings


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def _effect(name: str, strength: float, plain: np.ndarray, other: np.ndarray) -> Effect:
    diff = float(np.abs(other - plain).mean())
    if diff < 1.0:
        verdict = (
            "no visible effect: check the trigger word is in the prompt, raise the strength to 0.8-1.0, "
            "and check the LoRA trained (lorastudio lora inspect)"
        )
    elif diff < 4.0:
        verdict = "weak effect: add the trigger word or raise the strength (guide: 0.8-1.0)"
    else:
        verdict = "clear effect"
    return Effect(name, strength, round(diff, 2), verdict)
