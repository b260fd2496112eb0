"""Home, login/logout and the Account page (ledger, API tokens)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lorastudio.errors import LoraStudioError
from lorastudio.studio import accounts, credits, jobs
from lorastudio.web.clients import client_host
from lorastudio.web.pages.common import PageUser, error_text, render, studio_of
from lorastudio.web.state import COOKIE, Id, set_login_cookie

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only a path on this site: never a redirect to somewhere else.
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: PageUser) -> HTMLResponse:
    studio = studio_of(request)
    with studio.factory() as session:
        recent = jobs.list_jobs(session, owner_id=user, limit=8)
    return render(request, "home.html", recent=recent)


@router.get("/balance", response_class=HTMLResponse)
def balance(request: Request, user: PageUser) -> HTMLResponse:
    """The header's balance, refreshed after a submit or when a job ends."""
    with studio_of(request).factory() as session:
        return HTMLResponse(f"{credits.balance(session, user)} credits")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    if not studio_of(request).settings.accounts:
        return RedirectResponse("/", status_code=303)
    return render(request, "login.html", next=_safe_next(next), name="", error=None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    name: Annotated[str, Form(max_length=80)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    studio = studio_of(request)
    if not studio.settings.accounts:
        return RedirectResponse("/", status_code=303)
    client = client_host(request, studio.settings.trusted_proxies)
    try:
        with studio.factory() as session:
            done = accounts.login(
                session, name=name, password=password, client=client, session_days=studio.settings.session_days
            )
    except LoraStudioError as exc:
        return render(
            request,
            "login.html",
            status_code=401 if exc.code == "unauthorized" else 429,
            next=_safe_next(next),
            name=name,
            error=error_text(exc),
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_login_cookie(response, request, studio.settings, done.cookie)
    return response


@router.post("/logout")
def logout(request: Request, user: PageUser) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie:
        with studio_of(request).factory() as session:
            accounts.logout(session, cookie=cookie)
    response = Response(status_code=204, headers={"HX-Redirect": "/login"})
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, user: PageUser) -> HTMLResponse:
    with studio_of(request).factory() as session:
        ledger = credits.history(session, user_id=user, limit=100)
        tokens = accounts.list_tokens(session, user_id=user)
    return render(request, "account.html", ledger=ledger, tokens=tokens, new_token=None, error=None)


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(request: Request, user: PageUser, label: Annotated[str, Form(max_length=200)] = "") -> HTMLResponse:
    new_token, error = None, None
    with studio_of(request).factory() as session:
        try:
            _, new_token = accounts.create_token(session, user_id=user, name=label)
        except LoraStudioError as exc:
            error = error_text(exc)
        tokens = accounts.list_tokens(session, user_id=user)
    return render(
        request, "_tokens.html", tokens=tokens, new_token=new_token, error=error, label=label if error else ""
    )


@router.post("/account/tokens/{token_id}/revoke", response_class=HTMLResponse)
def revoke_token(request: Request, user: PageUser, token_id: Id) -> HTMLResponse:
    with studio_of(request).factory() as session:
        accounts.revoke_token(session, user_id=user, token_id=token_id)  # not found: said by the button
        tokens = accounts.list_tokens(session, user_id=user)
    return render(request, "_tokens.html", tokens=tokens, new_token=None, error=None, label="")
