"""The guide's four pre-built fighting styles and, for the toyworld base, the run behind their shipped LoRA
files (`lorastudio toyworld train-styles`); styles/training_log.txt records how they were made and measured.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorastudio.config import Settings
from lorastudio.engine.models.families import FAMILIES
from lorastudio.errors import NotFound

STYLES_DIR = Path(__file__).parent / "styles"


@dataclass(frozen=True)
class PrebuiltStyle:
    """A fighting style a fresh install registers, with the LoRA file shipped for the toyworld base."""

    key: str  # world.STYLES key
    name: str
    trigger: str
    description: str  # what the style looks like in the toy world, in plain words
    strength: float
    phrases: tuple[str, ...]  # what the trigger stands for when no LoRA file is attached
    file_name: str


# The guide's fighting-style strength is 0.6, but on the 32x32 toy world a 0.6 LoRA barely moves the image:
# the measured held-out sword hit rate is far lower there than at 1.2 (training_log.txt), the strength the
# toy character LoRAs need too (TOY_STRENGTH). The base already draws the three known styles, so their
# LoRAs only have to keep them at that strength.
STRENGTH = FAMILIES["toyworld"].recommended_strength
GUIDE_STRENGTH = 0.6

# Phrases are the words the base model's captions use for a style: its trigger and a pose ("boxingstyle,
# guard"); prop words (gloves, blade) never appear in captions, so they would not steer it. The sword style
# was held out of base training: no words make the base draw it, only its LoRA does.
PREBUILT_STYLES: list[PrebuiltStyle] = [
    PrebuiltStyle(
        "boxing",
        "Professional Boxing",
        "boxingstyle",
        "fighters wear black gloves and hold their fists up in a guard or throw a straight jab",
        STRENGTH,
        ("boxingstyle", "guard"),
        "boxingstyle.safetensors",
    ),
    PrebuiltStyle(
        "kungfu",
        "Kung Fu Martial Arts",
        "kungfustyle",
        "bare-handed fighters sink into a wide horse stance or lift one knee high in a crane kick",
        STRENGTH,
        ("kungfustyle", "horse stance"),
        "kungfustyle.safetensors",
    ),
    PrebuiltStyle(
        "mma",
        "Mixed Martial Arts",
        "mmastyle",
        "bare-handed fighters throw a high kick at shoulder height or reach out with both hands to grapple",
        STRENGTH,
        ("mmastyle", "high kick"),
        "mmastyle.safetensors",
    ),
    PrebuiltStyle(
        "sword",
        "Sword Combat",
        "swordstyle",
        "fighters hold a steel-blue blade out in front, thrusting it straight ahead or raising it to parry",
        STRENGTH,
        ("swordstyle", "thrust"),
        "swordstyle.safetensors",
    ),
]
BY_KEY = {s.key: s for s in PREBUILT_STYLES}

# The toy recipe at a smaller rank, to ship small files (fp16, about 350 KB at rank 4, 650 KB at rank 8). On the
# held-out sword at strength 1.2 (20 prompts), rank 4 with 40 references hit 90%, rank 8 75-85%: runs differ by
# about 10 points, so rank 8 buys nothing. 40 references (the guide's most for a style) beat 30 (65-80% at rank 4):
# the misses are blades drawn too dark to read, on the dark forest background, which more references cover.
RANK = 4
REFERENCES = 40
MEASURE_PROMPTS = 20


def prebuilt_style(key: str) -> PrebuiltStyle:
    """The pre-built style with this key (boxing, kungfu, mma, sword)."""
    if key not in BY_KEY:
        raise NotFound(f"no pre-built style {key!r}; known: {', '.join(BY_KEY)}")
    return BY_KEY[key]


def prebuilt_lora_path(style_key: str) -> Path:
    """The shipped toyworld LoRA file of a pre-built style."""
    return STYLES_DIR / prebuilt_style(style_key).file_name


def train_prebuilt_styles(
    out_dir: Path, settings: Settings, *, steps: int = 600, log: Callable[[str], None] = print
) -> list[Path]:
    """Train each pre-built style's LoRA on its rendered references, measure its style hit rate against
    prompt-only generation, and write the files and training_log.txt into out_dir."""
    from lorastudio.engine.generation.pipecache import PipelineCache
    from lorastudio.engine.lora.file import read_lora, save_lora
    from lorastudio.engine.toyworld.consistency import (
        hit_rate,
        style_hit,
        style_prompts,
        style_references,
        toy_lora_config,
    )
    from lorastudio.engine.training.train import train_lora

    lines = [
        f"lorastudio toyworld train-styles --out {out_dir} --steps {steps}",
        f"recipe: TOY_RECIPE, network_dim={RANK} network_alpha={RANK}, fp16, {REFERENCES} references a style",
        f"hit rates: {MEASURE_PROMPTS} style_prompts (trigger and pose words), seeds 1000+, 20 sampling steps",
    ]
    for line in lines:
        log(line)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache, paths = PipelineCache(settings), []
    with tempfile.TemporaryDirectory() as tmp:
        for style in PREBUILT_STYLES:
            t0 = time.perf_counter()
            refs = Path(tmp) / style.key
            style_references(style.key, refs, REFERENCES)
            path = out_dir / style.file_name
            cfg = toy_lora_config(
                "fighting_style",
                refs,
                style.trigger,
                path,
                Path(tmp) / f"run-{style.key}",
                steps=steps,
                network_dim=RANK,
                network_alpha=RANK,
                description=style.description,
                checkpoint_every=0,
                save_precision="fp16",
            )
            result = train_lora(cfg, settings=settings)
            # The kind's 0.6 is the guide's; the file recommends what the toy world was measured to need.
            lora = read_lora(path)
            info = lora.info
            info.recommended_strength = style.strength
            lora.metadata.update(info.to_metadata())
            save_lora(path, lora)
            train_s, t0 = time.perf_counter() - t0, time.perf_counter()
            prompts = style_prompts(style.key, MEASURE_PROMPTS)
            rates = {
                s: hit_rate(cache, prompts, [{"lora": str(path), "strength": s}], style_hit)
                for s in (style.strength, GUIDE_STRENGTH)
            }
            prompt_only = hit_rate(cache, prompts, [], style_hit)
            line = (
                f"{style.key}: {path.name}, {path.stat().st_size / 1024:.0f} KB, {result.steps_done} steps in "
                f"{train_s:.0f}s; style hit rate with LoRA {rates[style.strength]:.0%} (at the guide's "
                f"{GUIDE_STRENGTH}: {rates[GUIDE_STRENGTH]:.0%}), prompt only {prompt_only:.0%} "
                f"(measured in {time.perf_counter() - t0:.0f}s)"
            )
            lines.append(line)
            log(line)
            paths.append(path)
    (out_dir / "training_log.txt").write_text("\n".join(lines) + "\n")
    return paths
