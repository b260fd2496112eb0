"""LoRA kinds: the one table of what a character, fighting style, pose or visual style LoRA means to the
rest of LoRA Studio: its name, its words (labels in sentences, forms and section headings), the guide's
strength and data-set checklist. Adding a kind means a row here and its preset in training/presets.py
(keyed by the row's name; importing presets checks that every kind has one). Code that treats one kind
apart names it by its row (`CHARACTER.name`), never by a string."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lorastudio.engine.models.families import get_family
from lorastudio.errors import Invalid


@dataclass(frozen=True)
class Kind:
    """One kind of LoRA."""

    name: str
    label: str  # in sentences: "a fighting style LoRA"
    title: str  # a choice in a form: "Fighting style"
    plural: str  # a heading over LoRAs of this kind: "Fighting styles"
    class_words: str  # caption words used with the trigger when an image has no caption
    recommended_strength: float  # guide, "Strength balance": character 0.8 + style 0.6 + pose 0.4
    strength_range: str  # the guide's range around that strength, said beside the Studio's sliders
    character: bool  # a person: regional LoRAs let characters stand in for each other; two in one place bleed
    good_images: tuple[str, ...] = ()  # the guide's checklist for a data set of this kind
    avoid_images: tuple[str, ...] = ()


# fmt: off
CHARACTER = Kind(
    name="character", label="character", title="Character", plural="Characters", class_words="a person",
    recommended_strength=0.8, strength_range="0.7-0.9; 0.6-0.8 each with two characters", character=True,
    good_images=("High resolution (768x768+)", "Clear face/body visibility", "Different poses and angles",
                 "Varied lighting conditions", "Same character consistently"),
    avoid_images=("Blurry or low-resolution images", "Heavy shadows obscuring features",
                  "Different characters mixed in", "Heavily filtered/stylized images", "Cropped faces or bodies"),
)
FIGHTING_STYLE = Kind(
    name="fighting_style", label="fighting style", title="Fighting style", plural="Fighting styles",
    class_words="martial arts fighting technique", recommended_strength=0.6, strength_range="about 0.6",
    character=False,
    good_images=("Clear technique demonstration", "Full body visibility", "Various martial art poses",
                 "Different practitioners OK", "Action shots and stances"),
    avoid_images=("Static poses", "Poor technique examples", "Unclear body positioning", "Single practitioner only",
                  "Non-martial art content"),
)
POSE = Kind(
    name="pose", label="pose", title="Action pose", plural="Poses", class_words="action pose",
    recommended_strength=0.4, strength_range="about 0.4", character=False,
    good_images=("The same pose from several angles", "Full body visibility", "Different people and outfits",
                 "Clear limb positions"),
    avoid_images=("Other poses mixed in", "Cropped limbs", "Motion blur hiding the pose"),
)
VISUAL_STYLE = Kind(
    name="visual_style", label="visual style", title="Visual style", plural="Visual styles",
    class_words="cinematic visual style", recommended_strength=0.6, strength_range="about 0.6", character=False,
    good_images=("The look across varied subjects", "Consistent lighting and colour grading",
                 "Different scenes and framings"),
    avoid_images=("One subject only", "Mixed looks", "Watermarks and text"),
)
# fmt: on

KINDS: dict[str, Kind] = {k.name: k for k in (CHARACTER, FIGHTING_STYLE, POSE, VISUAL_STYLE)}
DEFAULT_KIND = CHARACTER.name  # what a form starts at, and what a LoRA from elsewhere without one is taken for

# The kinds as a type for pydantic models (the studio's forms and API): made from the table, never typed again.
KindName = Literal[tuple(KINDS)]  # type: ignore[valid-type]


def kind_list(field: str = "name", last: str = "or") -> str:
    """The kinds in words, e.g. "character, fighting_style, pose or visual_style" (for help texts)."""
    words = [str(getattr(kind, field)) for kind in KINDS.values()]
    return f"{', '.join(words[:-1])} {last} {words[-1]}" if len(words) > 1 else "".join(words)


def check_kind(name: str) -> Kind:
    """The kind called `name`, or Invalid listing the kinds."""
    if name not in KINDS:
        raise Invalid(f"unknown kind {name!r}; choose one of: {', '.join(KINDS)}")
    return KINDS[name]


def kind_label(name: str | None) -> str:
    """A kind's words for sentences; an unknown kind's own name."""
    kind = KINDS.get(name) if name else None
    return kind.label if kind else (name or "unknown kind")


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
