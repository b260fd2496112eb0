"""What every HTML page shares: the templates, who the visitor is, and rendering with the header's
user and balance. Pages call the same studio services as the JSON API; nothing here holds a rule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError

from lorastudio.engine import KINDS, kind_label
from lorastudio.errors import LoraStudioError, Unauthorized
from lorastudio.studio import accounts, credits
from lorastudio.studio.context import StudioContext
from lorastudio.studio.db import User
from lorastudio.studio.disk import as_disk_full
from lorastudio.studio.generation import GenerationIn
from lorastudio.web import urls
from lorastudio.web.state import COOKIE, SAFE_METHODS, user_for

M = TypeVar("M", bound=BaseModel)
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")  # autoescapes .html
TEMPLATES.env.globals["urls"] = urls  # links to the JSON API's files: {{ urls.image_file(image.id) }}
# Every template sees the kinds table (names, words, the guide's checklists): no page types a kind again.
TEMPLATES.env.globals.update(kinds=KINDS, kind_label=kind_label)


def field_limits(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each field's bounds as HTML attributes (min, max, maxlength), read from the model's own fields: a form
    offers exactly what the API accepts, with no second copy of a limit."""
    words = {"ge": "min", "gt": "min", "le": "max", "lt": "max", "max_length": "maxlength"}
    limits: dict[str, dict[str, Any]] = {}
    for name, field in model.model_fields.items():
        attrs = limits.setdefault(name, {})
        for rule in field.metadata:
            for attr, html in words.items():
                if (value := getattr(rule, attr, None)) is not None:
                    attrs[html] = value - 1 if attr == "lt" and isinstance(value, int) else value
    return limits


TEMPLATES.env.globals["limits"] = {"generation": field_limits(GenerationIn)}  # {{ limits.generation.n.max }}

NAV = [
    (
        "LoRA Studio",
        [
            ("Train New LoRA", "/train"),
            ("Character Manager", "/characters"),
            ("Fighting Styles", "/styles"),
            ("LoRA Library", "/library"),
        ],
    ),
    ("Production Studio", [("Studio", "/studio"), ("Storyboard", "/storyboards")]),
]


class LoginNeeded(Exception):
    """A page was asked for without a login (accounts on): the handler redirects to /login."""


async def page_user(request: Request) -> int:
    """The visitor's user id; without a login (accounts on) they are sent to the login page."""
    token = request.headers.get("x-csrf-token")
    if token is None and request.method not in SAFE_METHODS and _is_form(request):
        token = str((await request.form()).get("csrf_token") or "")  # parsed once: the route's Form()s reuse it
    try:
        user = user_for(request, token)
    except Unauthorized as exc:
        raise LoginNeeded from exc
    request.state.page_user = user
    return user


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


PageUser = Annotated[int, Depends(page_user)]


def studio_of(request: Request) -> StudioContext:
    """The app's StudioContext."""
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
    if (full := as_disk_full(exc)) is not None:
        return str(full)
    return "something went wrong on the server; it has been logged"


def is_htmx(request: Request) -> bool:
    """Whether htmx sent the request (then a fragment is answered, not a whole page)."""
    return request.headers.get("hx-request") == "true"


def field_errors(exc: ValidationError) -> dict[str, str]:
    """A validation error as {field: words for the user}, to show next to each field."""
    out: dict[str, str] = {}
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "form"
        message = err.get("msg", "is not valid").removeprefix("Value error, ")
        out.setdefault(field, message)
    return out


def parse_form(model: type[M], data: dict[str, Any]) -> tuple[M | None, dict[str, str]]:
    """The model built from form fields (empty strings dropped), or the field errors."""
    try:
        return model.model_validate({k: v for k, v in data.items() if v != ""}), {}
    except ValidationError as exc:
        return None, field_errors(exc)


def redirect(request: Request, target: str) -> Response:
    """Go to target after a write: a 303 for a plain form, HX-Redirect for htmx (which ignores a 303's page)."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
