"""What every HTML page shares: the templates, who the visitor is, and rendering with the header's
user and balance. Pages call the same studio services as the JSON API; nothing here holds a rule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from lorastudio.errors import LoraStudioError, Unauthorized
from lorastudio.studio import accounts, credits
from lorastudio.studio.models import User
from lorastudio.web.state import COOKIE, Studio, current_user

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")  # autoescapes .html

NAV = [
    ("LoRA Studio", [("Train New LoRA", "/train"), ("Character Manager", "/characters"),
                     ("Fighting Styles", "/styles"), ("LoRA Library", "/library")]),
    ("Production Studio", [("Studio", "/studio"), ("Storyboard", "/storyboards")]),
]  # fmt: skip


class LoginNeeded(Exception):
    """A page was asked for without a login (accounts on): the handler redirects to /login."""


async def page_user(request: Request) -> int:
    """The visitor's user id; without a login (accounts on) they are sent to the login page."""
    try:
        user = await current_user(request)
    except Unauthorized as exc:
        raise LoginNeeded from exc
    request.state.page_user = user
    return user


PageUser = Annotated[int, Depends(page_user)]


def studio_of(request: Request) -> Studio:
    """The app's Studio."""
    return request.app.state.studio


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page or fragment with the header's context: user, balance, CSRF token, navigation."""
    studio = studio_of(request)
    user_id = getattr(request.state, "page_user", None)
    header: dict[str, Any] = {"nav": NAV, "path": request.url.path, "accounts": studio.settings.accounts}
    if user_id is not None:
        with studio.factory() as session:
            user = session.get(User, user_id)
            header |= {"user_name": user.name if user else "?", "balance": credits.balance(session, user_id)}
            cookie = request.cookies.get(COOKIE)
            found = accounts.session_user(session, cookie) if cookie and studio.settings.accounts else None
            header["csrf_token"] = found[1] if found else ""
    return TEMPLATES.TemplateResponse(request, template, header | context, status_code=status_code)


def error_text(exc: Exception) -> str:
    """The words to show next to what caused an error (never a traceback)."""
    if isinstance(exc, LoraStudioError):
        return str(exc)
    return "something went wrong on the server; it has been logged"


def is_htmx(request: Request) -> bool:
    """Whether htmx sent the request (then a fragment is answered, not a whole page)."""
    return request.headers.get("hx-request") == "true"
