"""The request dependencies over what the app holds for its lifetime: the StudioContext (database, blob
store, queue, local user; built by lorastudio.studio.context.open_studio) in app.state.studio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request, Response
from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from lorastudio.config import Settings
from lorastudio.errors import Forbidden, Unauthorized
from lorastudio.studio.context import StudioContext
from lorastudio.web import urls


async def studio(request: Request) -> StudioContext:
    """The app's StudioContext."""
    return request.app.state.studio


def session(request: Request) -> Iterator[Session]:
    """One session per request."""
    with request.app.state.studio.factory() as s:
        yield s


async def read_session(request: Request) -> AsyncIterator[Session]:
    """A session for a quick read served on the event loop itself. A thread-pool hop costs more than such
    a query, and under 100 clients the hops' GIL contention tripled the CPU a request took
    (benchmarks/api_load.py); WAL readers never wait for a lock, so the loop is not held up."""
    with request.app.state.studio.factory() as s:
        yield s


COOKIE = "lorastudio_session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def set_login_cookie(response: Response, request: Request, settings: Settings, cookie: str) -> None:
    """The login cookie: HttpOnly, SameSite=Lax, Secure behind HTTPS (or when the settings say so)."""
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=settings.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies or request.url.scheme == "https",
        path="/",
    )


async def current_user(request: Request) -> int:
    """The user a request acts for: the local user when accounts are off; else the user of the Bearer
    token or of the login cookie (whose writes must carry the login's X-CSRF-Token)."""
    return user_for(request, request.headers.get("x-csrf-token"))


def user_for(request: Request, csrf_token: str | None) -> int:
    """current_user with the CSRF token given (a page's plain form sends it as a field, not a header)."""
    from lorastudio.studio import accounts

    studio: StudioContext = request.app.state.studio
    if not studio.settings.accounts:
        return studio.local_user
    header = request.headers.get("authorization")
    with studio.factory() as session:  # a keyed lookup: quicker on the loop than a thread hop
        if header is not None:
            scheme, _, secret = header.partition(" ")
            user = accounts.token_user(session, secret.strip()) if scheme.lower() == "bearer" else None
            if user is None:
                raise Unauthorized("this API token is not valid (revoked, mistyped, or its user is disabled)")
            return user
        cookie = request.cookies.get(COOKIE)
        found = accounts.session_user(session, cookie) if cookie else None
    if found is None:
        raise Unauthorized(f"log in first (POST {urls.LOGIN}) or send `Authorization: Bearer <token>`")
    user, csrf = found
    if request.method not in SAFE_METHODS and not accounts.csrf_ok(csrf, csrf_token):
        raise Forbidden("this write lacks the login's CSRF token: send it as the X-CSRF-Token header")
    return user


StudioDep = Annotated[StudioContext, Depends(studio)]
SessionDep = Annotated[Session, Depends(session)]
ReadSessionDep = Annotated[Session, Depends(read_session)]
UserDep = Annotated[int, Depends(current_user)]


def plain_digits(value: object) -> object:
    """Refuse number text that Python would read but a person would not write ('1_0', '+5', ' 5', '٣')."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written with the digits 0-9 only")
    return value


def as_id(text: str | None) -> int | None:
    """A form or query field read as a row id: plain digits from 1 to 2**62, else None."""
    text = (text or "").strip()
    if text.isascii() and text.isdigit() and len(text) <= 19 and 1 <= int(text) <= 2**62:
        return int(text)
    return None


Digits = BeforeValidator(plain_digits)
# Ids in paths are row ids: bounded so no number reaches the database that it cannot hold.
Id = Annotated[int, Path(ge=1, le=2**62, description="Id"), Digits]
