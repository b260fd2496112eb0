"""Who owns what. On loopback the studio runs as one local user with no login (accounts: a later issue)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.studio.db import User, writes

LOCAL_USER = "local"


def local_user(session: Session) -> int:
    """The id of the single local user, created on first use."""
    found = session.scalar(select(User.id).where(User.name == LOCAL_USER))
    return found if found is not None else _add_local_user(session)


@writes
def _add_local_user(session: Session) -> int:
    found = session.scalar(select(User.id).where(User.name == LOCAL_USER))  # again, under the write lock
    if found is not None:
        return found
    user = User(name=LOCAL_USER)
    session.add(user)
    session.flush()
    return user.id
