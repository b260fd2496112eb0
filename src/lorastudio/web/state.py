"""What the app holds for its lifetime (database, blob store, queue), and the request dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from huey import Huey
from sqlalchemy.orm import Session, sessionmaker

from lorastudio.config import Settings
from lorastudio.studio.storage import BlobStore


@dataclass
class Studio:
    """The app's long-lived parts."""

    settings: Settings
    factory: sessionmaker[Session]
    store: BlobStore
    queue: Huey
    local_user: int


async def studio(request: Request) -> Studio:
    """The app's Studio."""
    return request.app.state.studio


def session(request: Request) -> Iterator[Session]:
    """One session per request."""
    with request.app.state.studio.factory() as s:
        yield s


async def current_user(request: Request) -> int:
    """The user a request acts for: the local user (accounts arrive with their issue)."""
    return request.app.state.studio.local_user


StudioDep = Annotated[Studio, Depends(studio)]
SessionDep = Annotated[Session, Depends(session)]
UserDep = Annotated[int, Depends(current_user)]

# Ids in paths are row ids: bounded so no number reaches the database that it cannot hold.
Id = Annotated[int, Path(ge=1, le=2**62, description="Id")]
