"""The captioning area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lorastudio.engine import TOY_CAPTIONER


class AutoCaptionIn(BaseModel):
    """Caption a dataset's images for you (a job on a worker)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    captioner: str = Field(
        default=TOY_CAPTIONER,
        min_length=1,
        max_length=40,
        description="toyworld (exact on toy-world pictures) or model (the studio's LORASTUDIO_CAPTIONER)",
    )
    overwrite: bool = Field(default=False, description="Replace captions you wrote too (default: only empty or auto)")
    leave_out_identity: bool = Field(
        default=True,
        description="For a character: leave out what makes it who it is (the trigger word learns what captions omit)",
    )


class CaptionerOut(BaseModel):
    """A captioner the studio offers."""

    name: str = Field(description="Its name, as `captioner` takes it")
    label: str = Field(description="How the page says it")
    available: bool = Field(description="It can caption here now")
    note: str | None = Field(default=None, description="Why it cannot, and how to make it available")
