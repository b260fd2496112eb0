"""The generation area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo

from lorastudio.engine import SEED_LIMIT, STRENGTH_LIMIT, GenerateRequest
from lorastudio.studio.db import Out


class ImageVerdictIn(BaseModel):
    """Keep or reject a generated image (feeds the LoRAs' success rate)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    verdict: Literal["kept", "rejected"] | None = Field(description="kept, rejected, or null to undo")


_ENGINE = GenerateRequest.model_fields


def _engine(name: str, **change: object) -> FieldInfo:
    """The engine's own field (type, default, limits, description): one set of limits for the API, the pages
    and the CLI; `change` is where the studio deliberately differs (a default)."""
    return FieldInfo.merge_field_infos(_ENGINE[name], **change)


class GenerationIn(BaseModel):
    """A scene to generate: prompt, LoRA selection (strengths, regions), seed, size, sampler, batch. Every
    setting but the LoRAs (library ids here) and the base (a name) is the engine's GenerateRequest field."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    prompt: str = _engine(
        "prompt",
        description="Prompt; trigger words of characters and styles, <lora:name:0.8> tags of library LoRAs",
        examples=["johnhero faces kanehero, kungfustyle, fighting stance"],
    )
    negative_prompt: str = _engine("negative_prompt")
    loras: list[LibrarySelection] = Field(default_factory=list, max_length=8, description="LoRAs from the library")
    base: str | None = Field(default=None, max_length=1000, description="Base model (default: the server's)")
    seed: int | None = _engine("seed")
    n: int = _engine("n")
    steps: int = _engine("steps")
    cfg_scale: float | None = _engine("cfg_scale")  # None: the base's family's (7 on SD, 3.5 on FLUX.1)
    width: int | None = _engine("width")
    height: int | None = _engine("height")
    sampler: str = _engine("sampler")
    # The Studio adds a chosen LoRA's missing trigger words unless told not to; the CLI leaves prompts alone.
    add_triggers: bool = _engine("add_triggers", default=True)

    @field_validator("prompt")
    @classmethod
    def _words(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("describe the scene in words (the prompt is empty)")
        if any(ord(c) < 32 and c not in "\t\n\r" for c in v):
            raise ValueError("the prompt contains control characters (a NUL?); type the scene in words")
        return v


class LibrarySelection(BaseModel):
    """A library LoRA as a user picks it (by id): which one, how strong, where. `generation.resolve` turns it
    into the engine's LoraSelection once, carrying the library's name, description, id and version."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    lora_id: int = Field(ge=1, le=2**62, description="Library id")
    version: int | None = Field(default=None, ge=1, le=2**62, description="Version (default: the newest)")
    strength: float | None = Field(
        default=None,
        ge=-STRENGTH_LIMIT,
        le=STRENGTH_LIMIT,
        allow_inf_nan=False,
        description="Strength (default: the LoRA's recommended one)",
    )
    region: str | None = Field(default=None, max_length=60, description="left, right, ... or x0,y0,x1,y1")


GenerationIn.model_rebuild()


class ImageOut(Out):
    """A generated image."""

    id: int = Field(description="Image id")
    job_id: int = Field(description="The generation job")
    seed: str = Field(description="Its seed (text: seeds reach 2**64)")
    params: dict = Field(description="Everything that reproduces it")
    verdict: str | None = Field(description="kept, rejected or null")
    identity: list[dict] | None = Field(
        default=None,
        description="Per character the scene shows, how much the image looks like its references (lora_id, "
        "character_id, name, score, by: dino, clip_i, toy detectors or none; note); null: made before scoring",
    )
    url: str = Field(default="", description="Where to download the PNG")


class RecipeIn(BaseModel):
    """A saved LoRA combination ("Save LoRA settings")."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=120, description="Recipe name", examples=["John vs Kane, kung fu"])
    loras: list[LibrarySelection] = Field(default_factory=list, max_length=8, description="LoRAs with strengths")
    prompt_template: str = Field(default="", max_length=2000, description="Prompt; {action} is replaced on apply")
    base: str | None = Field(
        default=None, max_length=1000, description="Base model its LoRAs are for (null: the server's default)"
    )
    negative_prompt: str = Field(default="", max_length=2000, description="Negative prompt")
    sampler: str = Field(default="DPM++ 2M Karras", max_length=40, description="Sampler")
    seed: int | None = Field(default=None, ge=-1, lt=SEED_LIMIT, description="Seed (null: random)")
    steps: int = Field(default=20, ge=1, le=150, description="Steps")
    cfg_scale: float | None = Field(
        default=None, ge=0, le=30, allow_inf_nan=False, description="CFG scale (null: the base's family's)"
    )


class RecipeOut(Out):
    """A saved recipe."""

    id: int = Field(description="Recipe id")
    name: str = Field(description="Recipe name")
    settings: dict = Field(description="The recipe's LoRAs, prompt template and sampler settings")
    created_at: datetime = Field(description="Saved (UTC)")


class ApplyRecipeIn(BaseModel):
    """Apply a recipe to a new scene."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    action: str = Field(
        default="", max_length=1000, description="Replaces {action} in the prompt template", examples=["punch sequence"]
    )
    seed: int | None = Field(default=None, ge=-1, lt=SEED_LIMIT, description="Seed (default: the recipe's)")
    n: int = Field(default=1, ge=1, le=8, description="Images")


IdentityBy = Literal["dino", "clip_i", "toy detectors", "none"]


class IdentityScore(BaseModel):
    """How much one generated image looks like one character's references, as the worker that drew it scored it
    (stored on the image: `Image.identity` is a list of these)."""

    lora_id: int | None = Field(default=None, description="The character's LoRA the scene used (null: only named)")
    character_id: int = Field(description="The character scored against")
    name: str = Field(description="The character's trigger word")
    score: float | None = Field(
        description="dino / clip_i: cosine similarity to the references' embeddings (mean over them); toy "
        "detectors: 1.0 found, 0.0 not found; null: not measured"
    )
    by: IdentityBy = Field(description="What measured it: dino, clip_i, toy detectors, or none")
    note: str | None = Field(default=None, description="Why there is no score, when there is none")
