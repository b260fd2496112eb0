"""One translation of domain errors into HTTP: a stable code, a message that says what to do."""

from __future__ import annotations

import logging
import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lorastudio.errors import LoraStudioError, format_validation_error, words
from lorastudio.studio.disk import as_disk_full

STATUS = {
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "stopped": 409,
    "insufficient_credits": 402,
    "unauthorized": 401,
    "forbidden": 403,
    "rate_limited": 429,
    "unavailable": 503,
    "disk_full": 507,
}
log = logging.getLogger("lorastudio.web")
# How the HTTP face names each setting an error may name (lorastudio.errors.SETTINGS) that its API and pages take:
# the field's name (a training's `overrides.<name>`, a generation's own field). A setting left out (resume, the
# output file, the device) is not the web user's to change: the message says it in neutral words, and leaves
# out what only a face offering it could act on.
FIELDS = {
    name: name
    for name in (
        "add_triggers",
        "base",
        "batch_size",
        "blocks_to_swap",
        "devices",
        "gradient_checkpointing",
        "learning_rate",
        "loras",
        "n",
        "optimizer",
        "precision",
        "quantize_base",
        "resolution",
        "sampler",
        "train_text_encoder",
    )
}


def words_for_web(exc: LoraStudioError) -> str:
    """An error's message as the web says it: settings by the API's field names."""
    return words(exc, FIELDS)


def _body(code: str, message: str, status: int, setting: str | None = None) -> JSONResponse:
    error = {"code": code, "message": message} | ({"setting": setting} if setting else {})
    return JSONResponse({"error": error}, status_code=status)


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    @app.exception_handler(LoraStudioError)
    async def domain(request: Request, exc: LoraStudioError) -> Response:
        # Invalid and its kinds (unsupported, family_mismatch) are the request's fault: 422.
        status = STATUS.get(exc.code, 422 if exc.code in ("invalid", "unsupported", "family_mismatch") else 500)
        message = words_for_web(exc)
        if _wants_page(request):
            return _page(request, message, status)
        return _body(exc.code, message, status, exc.setting)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]

        class _E:  # format_validation_error reads .errors()
            def errors(self):
                return errors

        message = format_validation_error(_E(), "request")
        return _page(request, message, 422) if _wants_page(request) else _body("invalid", message, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        if _wants_page(request):
            return _page(request, "no such page" if exc.status_code == 404 else str(exc.detail), exc.status_code)
        return _body(code, str(exc.detail), exc.status_code)

    @app.exception_handler(ValidationError)
    async def model(request: Request, exc: ValidationError) -> Response:
        # A service building one of its models from what the user sent (a recipe's saved scene, say).
        message = format_validation_error(exc, "request")
        return _page(request, message, 422) if _wants_page(request) else _body("invalid", message, 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        if _wants_page(request):
            return _page(request, "something went wrong on the server; it has been logged", 500)
        return _body("internal_error", "something went wrong on the server; it has been logged", 500)

    # A full disk fails a write anywhere (a blob, the SQLite file, a temporary file) as an OSError or a database
    # error: the same words for all, instead of a 500 that tells the operator nothing.
    @app.exception_handler(OSError)
    @app.exception_handler(OperationalError)
    @app.exception_handler(sqlite3.OperationalError)
    async def storage(request: Request, exc: Exception) -> Response:
        full = as_disk_full(exc)
        if full is None:
            return await unexpected(request, exc)
        log.error("disk full: %s", exc)
        return await domain(request, full)


def _wants_page(request: Request) -> bool:
    """A page (not the JSON API, not a static file) was asked for: answer with HTML."""
    path = request.url.path
    return not path.startswith(("/api/", "/static/", "/docs", "/openapi", "/redoc", "/metrics", "/healthz", "/readyz"))


def _page(request: Request, message: str, status: int) -> Response:
    from lorastudio.web.pages.common import NAV, TEMPLATES, render

    context = {"message": message, "status": status}
    if request.headers.get("hx-request") == "true":
        # A fragment, shown in the page's flash area whatever the request's target was.
        headers = {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
        return TEMPLATES.TemplateResponse(request, "_error.html", context, status_code=status, headers=headers)
    try:
        if getattr(request.state, "page_user", None) is None:
            request.state.page_user = _visitor(request)
        return render(request, "error.html", status_code=status, **context)
    except Exception:  # noqa: BLE001 - the header's user and balance need the database, which may be what failed
        log.warning("error page without its header's user", exc_info=True)
        context |= {"nav": NAV, "path": request.url.path}
        return TEMPLATES.TemplateResponse(request, "error.html", context, status_code=status)


def _visitor(request: Request) -> int | None:
    """The logged-in visitor for the header of an error page, if any (an error page writes nothing)."""
    from lorastudio.web.state import user_for

    try:
        return user_for(request, request.headers.get("x-csrf-token"))
    except LoraStudioError:
        return None
