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
    total = sum(max(0.0, lora.strength) for lora in selection)
    if total > STRENGTH_BUDGET + 1e-9:
        warnings.append(
            f"total LoRA strength {total:.2f} is above {STRENGTH_BUDGET} "
            "(guide: character 0.8 + style 0.6 + pose 0.4); "
            "stacked LoRAs this strong tend to overcook - lower some strengths"
        )
    characters = [lora for lora in selection if lora.kind == "character"]
    low, high = MULTI_CHARACTER_RANGE
    if len(characters) >= 2:
        for lora in characters:
            if not low <= lora.strength <= high:
                warnings.append(
                    f"{lora.name}: with {len(characters)} characters in one scene the guide suggests "
                    f"{low}-{high} each (now {lora.strength:g}), so neither character bleeds into the other"
                )
    return warnings
