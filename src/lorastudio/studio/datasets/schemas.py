"""The datasets area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lorastudio.engine import KindName
from lorastudio.studio.db import Out


class DatasetIn(BaseModel):
    """A new dataset (a set of training images)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=120, description="Dataset name", examples=["John references"])
    kind: KindName = Field(description="What it will train")
    trigger: str = Field(min_length=1, max_length=64, description="Trigger word its captions carry")
    character_id: int | None = Field(default=None, ge=1, le=2**62, description="Character it is for")
    style_id: int | None = Field(default=None, ge=1, le=2**62, description="Fighting style it is for")


class DatasetImageOut(Out):
    """One uploaded file and its verdict."""

    id: int = Field(description="Image id")
    filename: str = Field(description="The uploaded file's name (cleaned)")
    status: str = Field(description="ok, warning or skipped (skipped files are kept but not trained on)")
    problems: list[dict] = Field(description="What the checks found: code, severity, message")
    caption: str | None = Field(description="Caption used for training")
    caption_source: str = Field(
        default="user",
        description="Who wrote the caption: user (typed, or a .txt uploaded beside the image) or auto (written for "
        "you; Auto-caption may replace it)",
    )
    width: int | None = Field(description="Width in pixels")
    height: int | None = Field(description="Height in pixels")


class DatasetOut(Out):
    """A dataset with every image's verdict."""

    id: int = Field(description="Dataset id")
    name: str = Field(description="Name")
    kind: str = Field(description="What it will train")
    trigger: str = Field(description="Trigger word")
    character_id: int | None = Field(description="Character it is for")
    style_id: int | None = Field(description="Fighting style it is for")
    images: list[DatasetImageOut] = Field(default_factory=list, description="Every uploaded file")
    usable: int = Field(default=0, description="Images training will use")
    notes: list[dict] = Field(default_factory=list, description="Dataset-level findings (image count vs the guide)")


class CaptionIn(BaseModel):
    """A new caption for one image."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    caption: str = Field(min_length=1, max_length=1000, description="Caption; the trigger word is added if missing")
