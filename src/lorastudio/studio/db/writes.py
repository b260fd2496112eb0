"""A service that writes declares it: `@writes` on a function whose first argument is the Session.

The outermost write takes SQLite's write lock first (BEGIN IMMEDIATE, what `begin_write` does), so the
checks the function makes and the writes that depend on them see the same database; it commits when the
function returns and rolls back when it raises. A write called inside another (a service calling a
service, or any service inside `write_transaction`) joins it: it runs in a SAVEPOINT, so when it raises
only its own writes are undone, and the outermost write commits everything once."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session

from lorastudio.studio.db.engine import OPEN_WRITE, begin_write

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def writing(session: Session) -> Iterator[Session]:
    """The block as one write (the decorator's rule, for code that is not a whole function): the
    outermost takes the write lock and commits or rolls back; one inside another is a savepoint."""
    if session.info.get(OPEN_WRITE):
        with session.begin_nested():
            yield session
        return
    begin_write(session)
    session.info[OPEN_WRITE] = True
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info.pop(OPEN_WRITE, None)


def writes(fn: Callable[Concatenate[Session, P], R]) -> Callable[Concatenate[Session, P], R]:
    """Declare a service that writes: it runs as one write transaction on its session (see the module)."""

    @functools.wraps(fn)
    def write(session: Session, *args: P.args, **kwargs: P.kwargs) -> R:
        if not isinstance(session, Session):
            raise TypeError(f"{fn.__qualname__}: a @writes service takes the Session first, not {type(session)}")
        with writing(session):
            return fn(session, *args, **kwargs)

    return write
