"""Account routes: login and logout (accounts on), who am I, credits and the ledger, API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from lorastudio.errors import Conflict
from lorastudio.studio import accounts, credits
from lorastudio.studio.accounts import LoginIn, MeOut, TokenCreated, TokenIn, TokenOut, UserOut
from lorastudio.studio.credits import CreditsOut
from lorastudio.studio.db import User
from lorastudio.web.clients import client_host
from lorastudio.web.state import COOKIE, Digits, Id, SessionDep, StudioDep, UserDep, set_login_cookie

router = APIRouter(tags=["Account"])


def _me(session, studio, user_id: int, csrf: str | None = None) -> MeOut:
    out = UserOut.model_validate(session.get(User, user_id))
    out.balance = credits.balance(session, user_id)
    return MeOut(user=out, accounts=studio.settings.accounts, csrf_token=csrf)


@router.post("/auth/login", summary="Log in: sets the session cookie and returns the CSRF token for writes")
def login(data: LoginIn, request: Request, response: Response, session: SessionDep, studio: StudioDep) -> MeOut:
    settings = studio.settings
    if not settings.accounts:
        raise Conflict("accounts are off: this studio runs as its one local user, no login needed")
    client = client_host(request, settings.trusted_proxies)
    done = accounts.login(
        session, name=data.name, password=data.password, client=client, session_days=settings.session_days
    )
    set_login_cookie(response, request, settings, done.cookie)
    return _me(session, studio, done.user.id, done.csrf_token)


@router.post("/auth/logout", status_code=204, summary="Log out (ends this login)")
def logout(request: Request, response: Response, session: SessionDep, user: UserDep) -> None:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        accounts.logout(session, cookie=cookie)
    response.delete_cookie(COOKIE, path="/")


@router.get("/auth/me", summary="Who the request acts for, with the balance")
def me(request: Request, session: SessionDep, studio: StudioDep, user: UserDep) -> MeOut:
    cookie = request.cookies.get(COOKIE)
    found = accounts.session_user(session, cookie) if cookie and studio.settings.accounts else None
    return _me(session, studio, user, found[1] if found else None)


@router.get("/credits", summary="Your balance and ledger (grants, holds, captures, releases), newest first")
def ledger(
    session: SessionDep,
    user: UserDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many entries"), Digits] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="Entries older than this id (paging)"), Digits
    ] = None,
) -> CreditsOut:
    return CreditsOut(
        balance=credits.balance(session, user),
        entries=credits.history(session, user_id=user, limit=limit, before=before),
    )


@router.get("/auth/tokens", summary="Your API tokens (names and prefixes)")
def list_tokens(session: SessionDep, user: UserDep) -> list[TokenOut]:
    return accounts.list_tokens(session, user_id=user)


@router.post("/auth/tokens", status_code=201, summary="A new API token (its secret is shown this once)")
def create_token(data: TokenIn, session: SessionDep, user: UserDep) -> TokenCreated:
    token, secret = accounts.create_token(session, user_id=user, name=data.name)
    return TokenCreated(**token.model_dump(), token=secret)


@router.delete("/auth/tokens/{token_id}", summary="Revoke a token")
def revoke_token(token_id: Id, session: SessionDep, user: UserDep) -> TokenOut:
    return accounts.revoke_token(session, user_id=user, token_id=token_id)
