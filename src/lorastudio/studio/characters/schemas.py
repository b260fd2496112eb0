"""The characters area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from lorastudio.studio.db import Out
from lorastudio.studio.library import LoraVersionOut


class CharacterIn(BaseModel):
    """A new character for the Character Manager."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=120, description="Character name", examples=["Action Hero John"])
    description: str = Field(
        default="",
        max_length=300,
        description="Appearance and style, in plain words",
        examples=["red gi, yellow hair, white headband"],
    )
    fighting_style: str = Field(
        default="", max_length=120, description="Fighting style (a style's trigger or words)", examples=["kungfustyle"]
    )
    trigger: str | None = Field(
        default=None,
        max_length=64,
        description="Trigger word; suggested from the name when left out",
        examples=["johnhero"],
    )


class CharacterUpdate(BaseModel):
    """Fields of a character that can be changed (all optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str | None = Field(default=None, min_length=1, max_length=120, description="Character name")
    description: str | None = Field(default=None, max_length=300, description="Appearance and style")
    fighting_style: str | None = Field(default=None, max_length=120, description="Fighting style")


class CharacterOut(Out):
    """A character with its LoRA (if trained) and versions."""

    id: int = Field(description="Character id")
    name: str = Field(description="Character name")
    description: str = Field(description="Appearance and style")
    fighting_style: str = Field(description="Fighting style")
    trigger: str = Field(description="Trigger word to put in prompts")
    reference_image: str | None = Field(default=None, description="URL of the reference image, if uploaded")
    # The studio says whether there is one; the web face writes reference_image's URL (web/urls.py).
    has_reference: bool = Field(default=False, exclude=True)
    lora_id: int | None = Field(default=None, description="Library id of the character's LoRA, once trained")
    versions: list[LoraVersionOut] = Field(default_factory=list, description="The LoRA's versions, newest last")
    created_at: datetime = Field(description="When it was created (UTC)")
