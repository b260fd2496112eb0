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
    # The evaluation set's scenes (engine/evaluation/evalset.py): "{trigger}" stands for the trigger word. Varied
    # actions, places and framings, so a LoRA that only reproduces its training pictures scores low on CLIP-T.
    eval_scenes: tuple[str, ...] = ()


# fmt: off
CHARACTER = Kind(
    name="character", label="character", title="Character", plural="Characters", class_words="a person",
    recommended_strength=0.8, strength_range="0.7-0.9; 0.6-0.8 each with two characters", character=True,
    good_images=("High resolution (768x768+)", "Clear face/body visibility", "Different poses and angles",
                 "Varied lighting conditions", "Same character consistently"),
    avoid_images=("Blurry or low-resolution images", "Heavy shadows obscuring features",
                  "Different characters mixed in", "Heavily filtered/stylized images", "Cropped faces or bodies"),
    eval_scenes=("{trigger}, a person fighting in a dojo, full body",
                 "{trigger}, a person sitting at a desk in an office", "{trigger}, close-up portrait of a person",
                 "{trigger}, a person running down a street at night",
                 "{trigger}, a person reading a book in a library",
                 "{trigger}, a person standing on a beach at sunset"),
)
FIGHTING_STYLE = Kind(
    name="fighting_style", label="fighting style", title="Fighting style", plural="Fighting styles",
    class_words="martial arts fighting technique", recommended_strength=0.6, strength_range="about 0.6",
    character=False,
    good_images=("Clear technique demonstration", "Full body visibility", "Various martial art poses",
                 "Different practitioners OK", "Action shots and stances"),
    avoid_images=("Static poses", "Poor technique examples", "Unclear body positioning", "Single practitioner only",
                  "Non-martial art content"),
    eval_scenes=("{trigger}, a young woman fighting in a park", "{trigger}, an old man fighting in a dojo",
                 "{trigger}, two fighters sparring in a boxing ring",
                 "{trigger}, a knight in armour fighting in a castle",
                 "{trigger}, a child training on a beach at sunset", "{trigger}, a robot fighting on a city street"),
)
POSE = Kind(
    name="pose", label="pose", title="Action pose", plural="Poses", class_words="action pose",
    recommended_strength=0.4, strength_range="about 0.4", character=False,
    good_images=("The same pose from several angles", "Full body visibility", "Different people and outfits",
                 "Clear limb positions"),
    avoid_images=("Other poses mixed in", "Cropped limbs", "Motion blur hiding the pose"),
    eval_scenes=("{trigger}, a knight in armour in a castle", "{trigger}, a woman in a red dress on a street",
                 "{trigger}, an astronaut on the moon", "{trigger}, an old man in a forest"),
)
VISUAL_STYLE = Kind(
    name="visual_style", label="visual style", title="Visual style", plural="Visual styles",
    class_words="cinematic visual style", recommended_strength=0.6, strength_range="about 0.6", character=False,
    good_images=("The look across varied subjects", "Consistent lighting and colour grading",
                 "Different scenes and framings"),
    avoid_images=("One subject only", "Mixed looks", "Watermarks and text"),
    eval_scenes=("{trigger}, a city street at night", "{trigger}, portrait of an old fisherman",
                 "{trigger}, a bowl of fruit on a table", "{trigger}, a mountain lake at dawn",
                 "{trigger}, a cat sleeping on a sofa"),
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
