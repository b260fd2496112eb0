"""LoRA kinds: the one table of what a character, fighting style, pose or visual style LoRA means to the
rest of the engine. Adding a kind means a row here (and its preset in training/presets.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lorastudio.engine.models.families import get_family
from lorastudio.errors import Invalid


@dataclass(frozen=True)
class Kind:
    """One kind of LoRA."""

    name: str
    label: str
    class_words: str  # caption words used with the trigger when an image has no caption
    recommended_strength: float  # guide, "Strength balance": character 0.8 + style 0.6 + pose 0.4
    character: bool  # a person: regional LoRAs let characters stand in for each other; two in one place bleed


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("character", "character", "a person", 0.8, True),
        Kind("fighting_style", "fighting style", "martial arts fighting technique", 0.6, False),
        Kind("pose", "pose", "action pose", 0.4, False),
        Kind("visual_style", "visual style", "cinematic visual style", 0.6, False),
    )
}

# The kinds as a type for pydantic models (the studio's forms and API): made from the table, never typed again.
KindName = Literal[tuple(KINDS)]  # type: ignore[valid-type]


def check_kind(name: str) -> Kind:
    """The kind called `name`, or Invalid listing the kinds."""
    if name not in KINDS:
        raise Invalid(f"unknown kind {name!r}; choose one of: {', '.join(KINDS)}")
    return KINDS[name]


def acts_as_character(name: str | None) -> bool:
    """True for character LoRAs, and for LoRAs from elsewhere whose kind is not recorded (most are people)."""
    kind = KINDS.get(name) if name else None
    return kind.character if kind else name is None


def recommended_strength(kind: str | None, family: str | None) -> float:
    """The strength a LoRA of this kind is used at on this family: the family's own (the toy world's), else
    the kind's (the guide's), else 1.0."""
    fam = get_family(family)
    if fam is not None and fam.recommended_strength is not None:
        return fam.recommended_strength
    return KINDS[kind].recommended_strength if kind in KINDS else 1.0
