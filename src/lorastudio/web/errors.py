"""One translation of domain errors into HTTP: a stable code, a message that says what to do."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lorastudio.errors import LoraStudioError, format_validation_error

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
}
log = logging.getLogger("lorastudio.web")


def _body(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers={"X-Content-Type-Options": "nosniff"}
    )


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    @app.exception_handler(LoraStudioError)
    async def domain(request: Request, exc: LoraStudioError) -> Response:
        # Invalid and its kinds (unsupported, family_mismatch) are the request's fault: 422.
        status = STATUS.get(exc.code, 422 if exc.code in ("invalid", "unsupported", "family_mismatch") else 500)
        if _wants_page(request):
            return _page(request, str(exc), status)
        return _body(exc.code, str(exc), status)

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

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        if _wants_page(request):
            return _page(request, "something went wrong on the server; it has been logged", 500)
        return _body("internal_error", "something went wrong on the server; it has been logged", 500)


def _wants_page(request: Request) -> bool:
    """A page (not the JSON API, not a static file) was asked for: answer with HTML."""
    path = request.url.path
    return not path.startswith(("/api/", "/static/", "/docs", "/openapi", "/redoc"))


def _page(request: Request, message: str, status: int) -> Response:
    from lorastudio.web.pages.common import TEMPLATES

    # A fragment for htmx (shown where the request's target is), a whole page otherwise.
    name = "_error.html" if request.headers.get("hx-request") == "true" else "error.html"
    context = {"message": message, "status": status, "nav": [], "path": request.url.path}
    headers = {"X-Content-Type-Options": "nosniff"}
    if request.headers.get("hx-request") == "true":
        headers |= {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status, headers=headers)
