"""The styles area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lorastudio.engine import FIGHTING_STYLE
from lorastudio.studio.db import Out


class StyleIn(BaseModel):
    """A custom fighting style ("Create Custom Fighting Style")."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=120, description="Style name", examples=["Capoeira"])
    description: str = Field(default="", max_length=300, description="What the technique looks like")
    trigger: str | None = Field(default=None, max_length=64, description="Trigger word; suggested when left out")
    recommended_strength: float = Field(
        default=FIGHTING_STYLE.recommended_strength,
        ge=0.05,
        le=2,
        allow_inf_nan=False,
        description=f"Strength the guide suggests (style {FIGHTING_STYLE.recommended_strength:g})",
    )
    phrases: list[str] = Field(
        default_factory=list, max_length=12, description="Words the trigger stands for when the style has no LoRA file"
    )


class StyleOut(Out):
    """A fighting style: one of the four pre-built ones or a custom one."""

    id: int = Field(description="Style id")
    name: str = Field(description="Style name", examples=["Kung Fu Martial Arts"])
    description: str = Field(description="What the technique looks like")
    trigger: str = Field(description="Trigger word", examples=["kungfustyle"])
    recommended_strength: float = Field(description="Suggested LoRA strength")
    phrases: list[str] = Field(description="Words the trigger expands to when no LoRA file is attached")
    builtin: bool = Field(description="One of the guide's pre-built styles")
    lora_id: int | None = Field(default=None, description="Library id of its LoRA, if it has one for some base")
