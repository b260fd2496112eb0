"""One rule for reaching a user's object: by id and owner together, so another user's id is simply not
found (404, never 403: no existence leak)."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.errors import NotFound

T = TypeVar("T")


def get_owned(session: Session, model: type[T], object_id: int, owner_id: int, label: str) -> T:
    """The row of `model` with this id owned by owner_id, or NotFound naming it as `label`."""
    found = session.scalar(select(model).where(model.id == object_id, model.owner_id == owner_id))
    if found is None:
        raise NotFound(f"{label} {object_id} not found")
    return found
