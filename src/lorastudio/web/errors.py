"""One translation of domain errors into HTTP: a stable code, a message that says what to do."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
}
log = logging.getLogger("lorastudio.web")


def _body(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers={"X-Content-Type-Options": "nosniff"}
    )


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    @app.exception_handler(LoraStudioError)
    async def domain(_: Request, exc: LoraStudioError) -> JSONResponse:
        # Invalid and its kinds (unsupported, family_mismatch) are the request's fault: 422.
        status = STATUS.get(exc.code, 422 if exc.code in ("invalid", "unsupported", "family_mismatch") else 500)
        return _body(exc.code, str(exc), status)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]

        class _E:  # format_validation_error reads .errors()
            def errors(self):
                return errors

        return _body("invalid", format_validation_error(_E(), "request"), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        return _body(code, str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _body("internal_error", "something went wrong on the server; it has been logged", 500)
