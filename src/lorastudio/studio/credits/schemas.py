"""The credits area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from lorastudio.studio.db import Out


class Estimate(BaseModel):
    """What a training will take: at the speed measured on this studio's devices, or on the reference GPU."""

    minutes: tuple[float, float] = Field(description="Time range on `device`")
    credits: tuple[int, int] = Field(description="Credits range; the upper figure is held at submit")
    dollars: float = Field(description="Device cost of the minutes at the configured hourly rent")
    images: int = Field(description="Usable images")
    steps: int = Field(description="Training steps")
    resolution: int = Field(description="Training resolution")
    breakdown: list[str] = Field(description="How the numbers were reached")
    device: str = Field(
        default="", description="What the minutes are for: a device measured here, or the reference GPU"
    )
    measured_minutes: float | None = Field(default=None, description="From training speeds measured here")
    rule: str = Field(default="", description="How the training is charged")
    devices: int = Field(
        default=1,
        description="GPUs it trains on at once: the minutes are the run's, the credits and dollars every GPU's",
    )


class CreditEntryOut(Out):
    """One line of the credit ledger."""

    id: int = Field(description="Entry id")
    kind: str = Field(description="grant, hold, capture (what a hold cost) or release (what it gave back)")
    amount: int = Field(description="Credits (always >= 0)")
    delta: int = Field(description="Change to the balance")
    hold_id: int | None = Field(description="The hold a capture or release settles")
    job_id: int | None = Field(description="The job it is for")
    note: str = Field(description="Why")
    created_at: datetime = Field(description="When (UTC)")


class CreditsOut(BaseModel):
    """A balance and the newest ledger lines."""

    balance: int = Field(description="Credits available")
    entries: list[CreditEntryOut] = Field(description="Ledger, newest first")
