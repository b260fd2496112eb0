"""The base of every response model: built from ORM rows."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Out(BaseModel):
    """Base of every response: built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)
