"""Idempotency keys for submits: a client that retries (a timeout, a double click) sends the same
`Idempotency-Key`; the same key and body get the first response again, never a second job or hold."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lorastudio.errors import Conflict, Invalid
from lorastudio.studio.db import IdempotencyKey, writing

MAX_KEY = 200
T = TypeVar("T", bound=BaseModel)


def check_key(key: str | None) -> str | None:
    """The key as given, or Invalid when it is not 1-200 visible ASCII characters."""
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY or not all(33 <= ord(c) < 127 for c in key):
        raise Invalid("Idempotency-Key is 1-200 visible ASCII characters (a UUID is a good one)")
    return key


def body_hash(body: BaseModel) -> str:
    """A stable hash of a request body (the same fields and values hash the same)."""
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def once(
    session: Session, *, user_id: int, key: str | None, scope: str, body: BaseModel, out: type[T], make: Callable[[], T]
) -> T:
    """Run `make` as one write (with the key row), or, for a key seen before, answer its first response.
    The same key with another body is a Conflict."""
    key = check_key(key)
    digest = body_hash(body)
    for _ in range(2):  # a second try after losing a race for the key to a concurrent submit
        try:
            with writing(session):  # the check, the job and the key row: one write, or nothing
                if key is not None:
                    seen = session.scalar(
                        select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
                    )
                    if seen is not None:
                        if seen.scope != scope or seen.body_hash != digest:
                            raise Conflict(
                                "this Idempotency-Key was used with another request; send a new key for a new request"
                            )
                        return out.model_validate(seen.response)
                result = make()
                if key is not None:
                    response = result.model_dump(mode="json")
                    session.add(
                        IdempotencyKey(user_id=user_id, key=key, scope=scope, body_hash=digest, response=response)
                    )
            return result
        except IntegrityError:  # the same key committed by a concurrent submit meanwhile: answer as it did
            continue
    raise Conflict("this Idempotency-Key is in use by a request still running; retry in a moment")
