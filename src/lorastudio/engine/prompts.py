"""Prompts: A1111 `<lora:name:weight>` tags, trigger words, and the warnings a user should see."""

from __future__ import annotations

import re
from dataclasses import dataclass

# <lora:name>, <lora:name:0.8>, <lora:name:0.8:0.5> (A1111's te:unet form; the first weight is used)
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::(-?[\d.]+))?(?::[^>]*)?>", re.IGNORECASE)

# Guide, "Strength balance": character 0.8 + style 0.6 + pose 0.4.
STRENGTH_BUDGET = 1.8
MULTI_CHARACTER_RANGE = (0.6, 0.8)


@dataclass(frozen=True)
class LoraTag:
    """One `<lora:...>` tag found in a prompt."""

    name: str
    strength: float


def parse_lora_tags(prompt: str) -> tuple[str, list[LoraTag]]:
    """Remove `<lora:...>` tags from a prompt; return the clean prompt and the tags in order."""
    tags = [LoraTag(m.group(1).strip(), float(m.group(2)) if m.group(2) else 1.0) for m in LORA_TAG.finditer(prompt)]
    clean = LORA_TAG.sub("", prompt)
    clean = re.sub(r"\s+,", ",", clean)  # "fights , style" -> "fights, style"
    clean = re.sub(r",(\s*,)+", ",", clean)  # collapse the ", ," a removed tag leaves
    clean = re.sub(r"\s{2,}", " ", clean)
    return clean.strip(" ,"), tags


def has_word(prompt: str, word: str) -> bool:
    """True when `word` appears in the prompt as a whole word (case-insensitive)."""
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", prompt, re.IGNORECASE) is not None


def add_missing_triggers(prompt: str, triggers: list[str]) -> str:
    """Put trigger words that the prompt lacks at its front, in order."""
    missing = [t for t in triggers if not has_word(prompt, t)]
    return ", ".join([*missing, prompt]) if missing else prompt


@dataclass(frozen=True)
class SelectedLora:
    """What the warnings need to know about one selected LoRA."""

    name: str
    strength: float
    kind: str | None
    triggers: tuple[str, ...]
    region: str | None = None  # None: the whole picture
    description: str = ""


def prompt_warnings(prompt: str, selection: list[SelectedLora]) -> list[str]:
    """Warnings for a prompt + LoRA selection: missing triggers, strengths off the guide's ranges."""
    warnings = []
    for lora in selection:
        if lora.triggers and not any(has_word(prompt, t) for t in lora.triggers):
            words = " or ".join(repr(t) for t in lora.triggers)
            warnings.append(
                f"{lora.name}: its trigger word {words} is not in the prompt, so the LoRA may barely show; "
                "add it (or use --add-triggers)"
            )
        if lora.strength > 1.5 or lora.strength < -1:
            warnings.append(f"{lora.name}: strength {lora.strength:g} is far outside 0-1; expect distortions")
    # LoRAs confined to a region only stack with the whole-picture ones, so the budget is per region.
    everywhere = [lora for lora in selection if lora.region is None]
    regions = {lora.region for lora in selection if lora.region is not None}
    stacks = [everywhere + [lora for lora in selection if lora.region == r] for r in regions] or [everywhere]
    total = max(sum(max(0.0, lora.strength) for lora in stack) for stack in stacks)
    if total > STRENGTH_BUDGET + 1e-9:
        where = " in one region" if regions else ""
        warnings.append(
            f"total LoRA strength {total:.2f}{where} is above {STRENGTH_BUDGET} "
            "(guide: character 0.8 + style 0.6 + pose 0.4); "
            "stacked LoRAs this strong tend to overcook - lower some strengths"
        )
    for lora in selection:
        confined_character = lora.region is not None and lora.kind in (None, "character")
        if confined_character and not lora.description and any(has_word(prompt, t) for t in lora.triggers):
            warnings.append(
                f"{lora.name}: confined to the {lora.region} region but its file has no description, so the other "
                "regions' passes read its trigger word as an unknown word (which can spoil the layout); add one "
                f"with: lorastudio lora describe {lora.name} 'what the character looks like'"
            )
    return warnings + _shared_character_warnings(selection)


def _shared_character_warnings(selection: list[SelectedLora]) -> list[str]:
    """Two character LoRAs drawn in the same place bleed into each other: say so, and how to avoid it."""
    characters = [lora for lora in selection if lora.kind == "character" and lora.strength > 0]
    sharing = [
        lora
        for lora in characters
        if any(
            o is not lora and (o.region is None or lora.region is None or o.region == lora.region) for o in characters
        )
    ]
    if len(sharing) < 2:
        return []
    low, high = MULTI_CHARACTER_RANGE
    warnings = [
        f"{len(sharing)} character LoRAs ({', '.join(lora.name for lora in sharing)}) act on the same part of the "
        "picture, so each character bleeds into the other; give each its own region "
        f"(e.g. --lora {sharing[0].name}@left --lora {sharing[1].name}@right, in the order the prompt names them)"
    ]
    for lora in sharing:
        if not low <= lora.strength <= high:
            warnings.append(
                f"{lora.name}: with {len(sharing)} characters in one place the guide suggests "
                f"{low}-{high} each (now {lora.strength:g}), so neither character bleeds into the other"
            )
    return warnings
