"""Training presets from the guide's "Advanced Training Settings", plus pose and visual style.

Character and fighting style are the guide's numbers. Pose and visual style are ours:
- pose: a body configuration is a structural concept like a character, but narrower, so the
  character's learning rate and step range at half the rank (32/16) to avoid baking in faces;
- visual style: lighting and colour grading spread over whole images like a fighting style, so the
  fighting style's gentler rate and batch 2 with the longer step range.
Every value can be overridden ("custom configuration"); the `-hires` variants train at 1024.
The resolution (and bucket step) follow the base model's family: the guide's 768 on SD1.5, 1024 on
SDXL, 32 on the toy world, whose CPU recipe also replaces steps, rate and rank (models/families.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lorastudio.engine.kinds import CHARACTER, FIGHTING_STYLE, KINDS, POSE, VISUAL_STYLE, Kind, check_kind
from lorastudio.engine.models.families import get_family
from lorastudio.errors import Invalid


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
    bucket_step: int = 64  # bucket sides are multiples of this
    target: str = "attn"  # which layers get a LoRA


def _base(kind: Kind, *values) -> Preset:
    """A kind's own preset: named after the kind."""
    return Preset(kind.name, kind.name, *values)


# Each kind's preset, keyed by its name in the kinds table (engine/kinds.py): one row per kind, no more, no less.
BASE_PRESETS: dict[str, Preset] = {
    p.kind: p
    for p in (
        _base(CHARACTER, 1200, (1000, 1500), 1e-4, 64, (64, 64), 32, 768, 1, (15, 25), 5),
        _base(FIGHTING_STYLE, 1750, (1500, 2000), 8e-5, 32, (32, 48), 16, 768, 2, (20, 40), 10),
        _base(POSE, 1200, (1000, 1500), 1e-4, 32, (16, 32), 16, 768, 1, (15, 30), 5),
        _base(VISUAL_STYLE, 1750, (1500, 2000), 8e-5, 32, (32, 48), 16, 768, 2, (20, 40), 10),
    )
}
if set(BASE_PRESETS) != set(KINDS):  # a kind added to the table without its preset (or a preset without a kind)
    raise RuntimeError(f"presets and kinds differ: {sorted(set(BASE_PRESETS) ^ set(KINDS))}")


def _hires(p: Preset) -> Preset:
    return Preset(**{**p.__dict__, "name": f"{p.name}-hires", "resolution": 1024})


PRESETS: dict[str, Preset] = {**BASE_PRESETS, **{f"{k}-hires": _hires(p) for k, p in BASE_PRESETS.items()}}


def get_preset(name: str | None, kind: str, family: str | None = None) -> Preset:
    """The named preset (or the kind's own), fitted to a base-model family when one is given: its
    resolution and bucket step, and on the toy world its CPU recipe."""
    check_kind(kind)
    name = name or kind
    if name not in PRESETS:
        raise Invalid(f"unknown preset {str(name)[:40]!r}; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    fam = get_family(family)
    if fam is None:
        return preset
    hires = name.endswith("-hires")
    fitted = replace(
        preset,
        resolution=fam.hires_resolution if hires else fam.train_resolution,
        bucket_step=min(preset.bucket_step, fam.bucket_step),
    )
    return replace(fitted, **fam.recipe) if fam.recipe else fitted
