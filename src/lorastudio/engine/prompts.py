"""Prompts: A1111 `<lora:name:weight>` tags, trigger words, and the warnings a user should see."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Protocol

from lorastudio.engine.kinds import acts_as_character
from lorastudio.engine.selection import LoraSelection, parse_strength
from lorastudio.errors import Invalid

MAX_TRIGGER_LENGTH = 64  # a trigger is one word; longer text is a caption, not a trigger

# <lora:name>, <lora:name:0.8>, <lora:name:0.8:0.5> (A1111's te:unet form; the first weight is used)
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)

# Guide, "Strength balance": character 0.8 + style 0.6 + pose 0.4.
STRENGTH_BUDGET = 1.8
MULTI_CHARACTER_RANGE = (0.6, 0.8)


class SelectedLora(Protocol):
    """What the warnings read of a selected, loaded LoRA (generation's LoadedLora has these)."""

    name: str
    kind: str | None
    triggers: tuple[str, ...]
    description: str


def parse_lora_tags(prompt: str) -> tuple[str, list[LoraSelection]]:
    """Remove `<lora:...>` tags from a prompt; return the clean prompt and the selections in order
    (no weight: 1.0, as A1111). A weight that is not a number from -4 to 4 is refused."""
    tags = []
    for m in LORA_TAG.finditer(prompt):
        weight = m.group(2)
        strength = 1.0 if weight is None or not weight.strip() else parse_strength(weight, m.group(0)[:60])
        tags.append(LoraSelection(lora=m.group(1).strip(), strength=strength))
    clean = LORA_TAG.sub("", prompt)
    clean = re.sub(r"\s+,", ",", clean)  # "fights , style" -> "fights, style"
    clean = re.sub(r",(\s*,)+", ",", clean)  # collapse the ", ," a removed tag leaves
    clean = re.sub(r"\s{2,}", " ", clean)
    return clean.strip(" ,"), tags


def check_trigger(word: str) -> str:
    """A trigger word is one token-like word: no spaces or commas (it is matched inside captions), no
    tag brackets, at most 64 characters. Returns it stripped, or raises Invalid saying what is wrong."""
    word = word.strip() if isinstance(word, str) else ""
    if not word or any(c.isspace() for c in word) or any(c in word for c in ",<>:\x00"):
        raise Invalid("the trigger word must be one word without spaces, commas or <>: e.g. 'johnhero'")
    if len(word) > MAX_TRIGGER_LENGTH:
        raise Invalid(f"the trigger word is {len(word)} characters long; keep it to one short word (at most 64)")
    if not word.isprintable():
        raise Invalid("the trigger word contains control characters; use letters and digits, e.g. 'johnhero'")
    return word


def has_word(prompt: str, word: str) -> bool:
    """True when `word` appears in the prompt as a whole word (case-insensitive)."""
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", prompt, re.IGNORECASE) is not None


def add_missing_triggers(prompt: str, triggers: list[str]) -> str:
    """Put trigger words that the prompt lacks at its front, in order."""
    missing = [t for t in triggers if not has_word(prompt, t)]
    return ", ".join([*missing, prompt]) if missing else prompt


@dataclass(frozen=True)
class _Use:
    name: str
    strength: float
    region: str | None
    kind: str | None
    triggers: tuple[str, ...]
    description: str


def prompt_warnings(prompt: str, chosen: list[tuple[LoraSelection, SelectedLora]]) -> list[str]:
    """Warnings for a prompt + LoRA selection (each selection with its strength settled, beside the LoRA
    it loaded): missing triggers, strengths off the guide's ranges, characters sharing a region."""
    selection = [
        _Use(lora.name, sel.strength or 0.0, sel.region, lora.kind, lora.triggers, lora.description)
        for sel, lora in chosen
    ]
    warnings = []
    for lora in selection:
        if lora.triggers and not any(has_word(prompt, t) for t in lora.triggers):
            words = " or ".join(repr(t) for t in lora.triggers)
            warnings.append(
                f"{lora.name}: its trigger word {words} is not in the prompt, so the LoRA may barely show; "
                "add it (or turn on adding missing trigger words)"
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
        confined_character = lora.region is not None and acts_as_character(lora.kind)
        if confined_character and not lora.description and any(has_word(prompt, t) for t in lora.triggers):
            warnings.append(
                f"{lora.name}: confined to the {lora.region} region but it has no description, so the other regions' "
                "passes read its trigger word as an unknown word (a ghost or one blended fighter); describe what the "
                "character looks like (in the LoRA Library, on its character's card, or with "
                f"`lorastudio lora describe {shlex.quote(lora.name)} 'red gi, white headband'`)"
            )
    return warnings + _shared_character_warnings(selection)


def _shared_character_warnings(selection: list[_Use]) -> list[str]:
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
        f"(e.g. {sharing[0].name} on the left and {sharing[1].name} on the right, in the order the prompt names them)"
    ]
    for lora in sharing:
        if not low <= lora.strength <= high:
            warnings.append(
                f"{lora.name}: with {len(sharing)} characters in one place the guide suggests "
                f"{low}-{high} each (now {lora.strength:g}), so neither character bleeds into the other"
            )
    return warnings
