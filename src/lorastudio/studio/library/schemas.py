"""The library area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from lorastudio.engine import CheckpointScore, kind_list
from lorastudio.studio.db import Out


class VersionScores(BaseModel):
    """How a version's file (or an alternative) scored in its training's evaluation, and why it was chosen."""

    model_config = ConfigDict(extra="ignore")
    score: CheckpointScore = Field(description="This checkpoint's scores")
    chosen: bool = Field(description="True: the evaluation chose this checkpoint; False: another one (or you did)")
    by: str = Field(description="What ranked the checkpoints: dino, clip_i, toy detectors, or none")
    overtrained_after: int | None = Field(
        default=None, description="The run's over-training step: identity kept rising while prompt adherence fell"
    )
    message: str = Field(default="", description="Why this checkpoint, in words")
    scorers: list[str] = Field(default_factory=list, description="Scoring models used, by name")
    note: str | None = Field(default=None, description="What was missing (no scorer configured), in words")


class LoraVersionOut(Out):
    """One trained (or imported) file of a LoRA."""

    id: int = Field(description="Version id")
    version: int = Field(description="1 for the first file, then 2, 3, ...")
    size: int = Field(description="File size in bytes")
    rank: int | None = Field(description="Network dim (rank)")
    training_seconds: float | None = Field(description="How long training took")
    job_id: int | None = Field(description="The training job that made it")
    step: int | None = Field(default=None, description="The training step of the checkpoint this file is")
    scores: VersionScores | None = Field(default=None, description="Its checkpoint's evaluation (scored runs)")
    created_at: datetime = Field(description="When it was registered (UTC)")


class LoraAlternativeOut(Out):
    """Another evaluated checkpoint of the training that made the newest version: switch to it for a new version."""

    id: int = Field(description="Alternative id")
    step: int = Field(description="The training step of this checkpoint")
    size: int = Field(description="File size in bytes")
    scores: VersionScores = Field(description="Its scores in the training's evaluation")
    expires_at: datetime = Field(description="When it is deleted unless you switch to it (UTC)")


class LoraOut(Out):
    """A library entry with the guide's metrics."""

    id: int = Field(description="Library id")
    name: str = Field(description="Name")
    kind: str = Field(description=kind_list())
    family: str | None = Field(description="Base-model family it was made for")
    trigger_words: list[str] = Field(description="Trigger words")
    description: str = Field(description="What it looks like")
    recommended_strength: float | None = Field(description="Strength recorded at training")
    source: str = Field(description="trained, imported or prebuilt")
    public: bool = Field(default=False, description="Shared with every user (read-only for them)")
    character_id: int | None = Field(description="Character it belongs to")
    style_id: int | None = Field(description="Fighting style it belongs to")
    usage_count: int = Field(description="Generation jobs that used it")
    kept_count: int = Field(description="Images kept from those jobs")
    judged_count: int = Field(description="Images kept or rejected from those jobs")
    success_rate: float | None = Field(description="kept / judged (None until an image is judged)")
    rating_avg: float | None = Field(description="Average user rating, 1-5")
    rating_count: int = Field(description="How many users rated it")
    training_seconds: float | None = Field(description="Training time of the newest version")
    versions: list[LoraVersionOut] = Field(default_factory=list, description="Files, newest last")
    alternatives: list[LoraAlternativeOut] = Field(
        default_factory=list,
        description="The newest version's training's other evaluated checkpoints, by step, kept for a while",
    )
    created_at: datetime = Field(description="When it entered the library (UTC)")


class LoraUpdate(BaseModel):
    """What a user may change on a LoRA of their own (all optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str | None = Field(default=None, min_length=1, max_length=120, description="Library name")
    description: str | None = Field(
        default=None,
        max_length=300,
        description="What it looks like, in plain words (a regional scene describes the character with it)",
        examples=["red gi, yellow hair, white headband"],
    )


class LoraPage(BaseModel):
    """One page of the library."""

    items: list[LoraOut] = Field(description="The LoRAs on this page")
    total: int = Field(description="How many match the search and filters")
    page: int = Field(description="This page (1-based)")
    per_page: int = Field(description="Page size")


class RatingIn(BaseModel):
    """A rating of a LoRA: one per user, a new one replaces the old."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    stars: int = Field(ge=1, le=5, description="1 to 5 stars")


class PublicIn(BaseModel):
    """Share a LoRA with every user (read-only for them) or take it back."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    public: bool = Field(description="True: in everyone's library; False: yours only")
