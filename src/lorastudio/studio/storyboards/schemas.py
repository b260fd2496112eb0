"""Plain data in and out of the storyboard services (pydantic), every field described: the API schema too."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lorastudio.studio.db import Out
from lorastudio.studio.generation import IdentityScore
from lorastudio.studio.jobs import JobOut

MAX_SCENES = 100  # a fight sequence, not a film: keeps exports and reorders small
ExportFormat = Literal["pdf", "png", "zip"]


class StoryboardIn(BaseModel):
    """A new storyboard (an ordered fight sequence)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    title: str = Field(min_length=1, max_length=120, description="Title", examples=["Epic Fight Sequence"])
    description: str = Field(
        default="", max_length=2000, description="What happens, in plain words", examples=["John vs Kane in the dojo"]
    )


class StoryboardUpdate(BaseModel):
    """Fields of a storyboard that can be changed (all optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    title: str | None = Field(default=None, min_length=1, max_length=120, description="Title")
    description: str | None = Field(default=None, max_length=2000, description="What happens")


class SceneIn(BaseModel):
    """A scene added from one of your generation jobs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    job_id: int = Field(ge=1, le=2**62, description="The generation job the scene's images come from")
    title: str = Field(default="", max_length=120, description="Scene title", examples=["faces"])
    notes: str = Field(default="", max_length=2000, description="Notes (action, camera, dialogue)")


class SceneUpdate(BaseModel):
    """Fields of a scene that can be changed (all optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    title: str | None = Field(default=None, max_length=120, description="Scene title")
    notes: str | None = Field(default=None, max_length=2000, description="Notes")
    image_id: int | None = Field(default=None, ge=1, le=2**62, description="The chosen image: one of the job's images")


class ReorderIn(BaseModel):
    """The storyboard's scenes in their new order."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    scene_ids: list[int] = Field(
        max_length=MAX_SCENES, description="Every scene id of the storyboard, each once, in the new order"
    )


class MoveIn(BaseModel):
    """Move one scene a place up or down (keyboard reordering)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    direction: Literal["up", "down"] = Field(description="up: one place earlier; down: one place later")


class ExportIn(BaseModel):
    """An export of the storyboard (runs as a job)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    format: ExportFormat = Field(
        description="pdf: cover + one panel per page; png: contact sheet; zip: PNGs, LoRA files and manifest.json"
    )


class SceneLora(BaseModel):
    """A LoRA a scene uses, as recorded."""

    name: str = Field(description="LoRA name")
    strength: float | None = Field(description="Strength (null: the LoRA's recommended one, until rendered)")
    region: str | None = Field(default=None, description="Region it is confined to, if any")
    lora_id: int | None = Field(default=None, description="Its library id (null: not from this library)")
    version: int | None = Field(default=None, description="The library version used")


class PanelIdentity(IdentityScore):
    """A panel's identity score for one character, judged against that character's other panels on the board."""

    text: str = Field(description="The score in words, e.g. 'johnhero 0.74 (DINO)'")
    drifted: bool = Field(description="Clearly less like the character than its other panels (see `reason`)")
    reason: str | None = Field(default=None, description="Why it is flagged as drifted")


class CharacterConsistency(BaseModel):
    """One character across the storyboard: how many panels were scored for it and which drifted."""

    character_id: int = Field(description="The character")
    name: str = Field(description="Its trigger word")
    panels: int = Field(description="Panels scored against its references")
    drifted: list[int] = Field(description="Scene numbers (from 1) flagged as drifted")
    text: str = Field(description="In words, e.g. 'johnhero: 5 panels, 1 drifted (scene 3)'")


class SceneOut(Out):
    """One panel of a storyboard."""

    id: int = Field(description="Scene id")
    position: int = Field(description="Place in the storyboard, from 0")
    title: str = Field(description="Scene title")
    notes: str = Field(description="Notes")
    job_id: int = Field(description="The generation job its images come from")
    job_status: str = Field(description="That job's status")
    image_id: int | None = Field(description="The chosen image (null until the job has images)")
    image_url: str | None = Field(description="Where to download the chosen PNG")
    prompt: str = Field(description="The scene's prompt")
    seed: str | None = Field(description="Seed of the chosen image (text: seeds reach 2**64)")
    loras: list[SceneLora] = Field(description="LoRAs with strengths and regions")
    identity: list[PanelIdentity] | None = Field(
        default=None,
        description="The chosen image's identity score per character it shows (null: not scored, an image made "
        "before scoring or none yet; empty: no character in the scene)",
    )
    created_at: datetime = Field(description="Added (UTC)")


class StoryboardOut(Out):
    """A storyboard with its scenes in order."""

    id: int = Field(description="Storyboard id")
    title: str = Field(description="Title")
    description: str = Field(description="What happens")
    scenes: list[SceneOut] = Field(description="Scenes in order")
    consistency: list[CharacterConsistency] = Field(
        default_factory=list, description="Each scored character across the panels: how many, which drifted"
    )
    not_scored: int = Field(default=0, description="Panels whose image has no identity score (made before scoring)")
    created_at: datetime = Field(description="Created (UTC)")
    updated_at: datetime = Field(description="Last changed (UTC)")


class StoryboardSummary(Out):
    """A storyboard in a list."""

    id: int = Field(description="Storyboard id")
    title: str = Field(description="Title")
    description: str = Field(description="What happens")
    scene_count: int = Field(description="How many scenes it has")
    updated_at: datetime = Field(description="Last changed (UTC)")


class RerollOut(BaseModel):
    """A re-rolled scene and the generation job rendering it."""

    storyboard: StoryboardOut = Field(description="The storyboard, the scene pointing at the new job")
    job: JobOut = Field(description="The new generation job (same request, new seed)")
