"""A LoRA selection: which LoRA, how strong, and where in the picture. The one shape it has from the
`--lora hero:0.8@left` option and `<lora:hero:0.8>` tags through the pipeline into the PNG record."""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lorastudio.errors import Invalid

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the width and height

NAMED_REGIONS: dict[str, Box] = {
    "full": (0.0, 0.0, 1.0, 1.0),
    "left": (0.0, 0.0, 0.5, 1.0),
    "right": (0.5, 0.0, 1.0, 1.0),
    "top": (0.0, 0.0, 1.0, 0.5),
    "bottom": (0.0, 0.5, 1.0, 1.0),
    "left-third": (0.0, 0.0, 1 / 3, 1.0),
    "middle-third": (1 / 3, 0.0, 2 / 3, 1.0),
    "right-third": (2 / 3, 0.0, 1.0, 1.0),
}
_NUMERIC = re.compile(r"[-+]?(\d|\.)[\d.eE+-]*|[-+]?(nan|inf|infinity)", re.IGNORECASE)
STRENGTH_LIMIT = 4.0  # |strength| above this is refused: no LoRA is meant to be used that hard


def parse_region(text: str) -> str:
    """A region's canonical spelling: a name (left, right, top, bottom, left-third, ...) or a box of
    fractions 'x0,y0,x1,y1'; raises Invalid with the choices otherwise."""
    name = str(text).strip().lower()
    if name in NAMED_REGIONS:
        return name
    try:
        box = tuple(float(x) for x in name.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
        raise Invalid(
            f"region {str(text)[:40]!r} is not one of {', '.join(NAMED_REGIONS)} nor a box 'x0,y0,x1,y1' of "
            "fractions with x0 < x1 and y0 < y1 (e.g. 0,0,0.5,1 is the left half)"
        )
    return ",".join(f"{x:g}" for x in box)


def region_box(region: str) -> Box:
    """The box (fractions) of a region spelled as parse_region returns it."""
    return NAMED_REGIONS.get(region) or tuple(float(x) for x in region.split(","))  # type: ignore[return-value]


def _looks_like_file(tail: str) -> bool:
    return any(c in tail for c in "/\\") or tail.lower().endswith(".safetensors")


def parse_strength(text: str, where: str, *, setting: str | None = None) -> float:
    """A strength written as text ('0.8'): a finite number from -4 to 4, or Invalid naming `where`."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or abs(value) > STRENGTH_LIMIT:
        raise Invalid(f"{where}: strength {str(text)[:20]!r} is not a number from -4 to 4 (e.g. 0.8)", setting=setting)
    return value


class LoraSelection(BaseModel):
    """One selected LoRA: a file path or library name, a strength (None: the file's recommended one)
        and a region (None: the whole picture). `name` and `description`, when given, are what the caller knows
        the LoRA as (a studio's library entry) and replace the file's name and description in prompts and records;
    `lora_id` and `version` name that library entry, and the PNG record carries them beside the file's hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lora: str = Field(min_length=1, max_length=4096, description="LoRA file path or library name")
    strength: float | None = Field(
        default=None,
        ge=-STRENGTH_LIMIT,
        le=STRENGTH_LIMIT,
        allow_inf_nan=False,
        description="Strength (null: the file's recommended one)",
    )
    region: str | None = Field(default=None, description="left, right, ..., or x0,y0,x1,y1 fractions")
    name: str | None = Field(default=None, max_length=120, description="How the user knows it (records, tags)")
    description: str | None = Field(default=None, max_length=300, description="What it looks like (regions)")
    lora_id: int | None = Field(default=None, ge=1, le=2**62, description="Its library id, when a library knows it")
    version: int | None = Field(default=None, ge=1, le=2**31, description="Which version of that library entry")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            region = parse_region(v)
        except Invalid as exc:
            raise ValueError(str(exc)) from exc
        return None if region == "full" else region

    @classmethod
    def parse(cls, text: str) -> LoraSelection:
        """'hero.safetensors:0.8@left' -> LoraSelection; no number -> recommended strength, no region ->
        the whole picture. A path may itself contain ':' or '@' (only the last of each is read)."""
        value, region = text, None
        head, sep, tail = value.rpartition("@")
        if sep and head and not _looks_like_file(tail):
            value, region = head, parse_region(tail)
        strength = None
        head, sep, tail = value.rpartition(":")
        if sep and head and _NUMERIC.fullmatch(tail.strip()):
            strength = parse_strength(tail, f"$loras {text[:60]}", setting="loras")
            value = head
        if not value.strip():
            raise Invalid(f"$loras {text[:60]!r}: give a LoRA file or name before ':' or '@'", setting="loras")
        return cls(lora=value.strip(), strength=strength, region=region)

    def label(self) -> str:
        """As a user would type it: name[:strength][@region]."""
        text = self.lora
        if self.strength is not None:
            text += f":{self.strength:g}"
        return text + (f"@{self.region}" if self.region else "")
