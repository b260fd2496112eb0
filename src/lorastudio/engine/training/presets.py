"""Training presets from the guide's "Advanced Training Settings", plus pose and visual style.

Character and fighting style are the guide's numbers. Pose and visual style are ours:
- pose: a body configuration is a structural concept like a character, but narrower, so the
  character's learning rate and step range at half the rank (32/16) to avoid baking in faces;
- visual style: lighting and colour grading spread over whole images like a fighting style, so the
  fighting style's gentler rate and batch 2 with the longer step range.
Every value can be overridden ("custom configuration"); the `-hires` variants train at 1024.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorastudio.errors import Invalid

KINDS = ("character", "fighting_style", "pose", "visual_style")


@dataclass(frozen=True)
class Preset:
    """Hyper-parameters for one kind of LoRA, with the guide's ranges kept for validation hints."""

    name: str
    kind: str
    steps: int
    steps_range: tuple[int, int]
    learning_rate: float
    network_dim: int
    dim_range: tuple[int, int]
    network_alpha: float
    resolution: int
    batch_size: int
    images_range: tuple[int, int]  # the guide's recommended number of images
    min_images: int  # below this, training is refused
    class_words: str  # caption words used with the trigger when an image has no caption


BASE_PRESETS: dict[str, Preset] = {
    "character": Preset(
        "character", "character", 1200, (1000, 1500), 1e-4, 64, (64, 64), 32, 768, 1, (15, 25), 5,
        "a person",
    ),
    "fighting_style": Preset(
        "fighting_style", "fighting_style", 1750, (1500, 2000), 8e-5, 32, (32, 48), 16, 768, 2, (20, 40),
        10, "martial arts fighting technique",
    ),
    "pose": Preset(
        "pose", "pose", 1200, (1000, 1500), 1e-4, 32, (16, 32), 16, 768, 1, (15, 30), 5, "action pose",
    ),
    "visual_style": Preset(
        "visual_style", "visual_style", 1750, (1500, 2000), 8e-5, 32, (32, 48), 16, 768, 2, (20, 40), 10,
        "cinematic visual style",
    ),
}  # fmt: skip


def _hires(p: Preset) -> Preset:
    return Preset(**{**p.__dict__, "name": f"{p.name}-hires", "resolution": 1024})


PRESETS: dict[str, Preset] = {**BASE_PRESETS, **{f"{k}-hires": _hires(p) for k, p in BASE_PRESETS.items()}}


def check_trigger(word: str) -> str:
    """A trigger word is one token-like word: no spaces or commas (it is matched inside captions)."""
    word = word.strip()
    if not word or any(c.isspace() for c in word) or "," in word:
        raise Invalid("the trigger word must be one word without spaces or commas, e.g. 'johnhero'")
    return word


def check_kind(kind: str) -> str:
    """Return `kind` if known, else raise Invalid listing the kinds."""
    if kind not in KINDS:
        raise Invalid(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return kind


def get_preset(name: str | None, kind: str) -> Preset:
    """The named preset, or the kind's own preset when no name is given."""
    check_kind(kind)
    name = name or kind
    if name not in PRESETS:
        raise Invalid(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
