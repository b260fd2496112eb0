"""The HTML face: Jinja2 pages with htmx (vendored in web/static/), on the same studio services as the API."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from lorastudio.web.pages import account, characters, jobs, library, storyboards, studio, styles, training
from lorastudio.web.pages.common import LoginNeeded

STATIC = Path(__file__).parent.parent / "static"
MODULES = (account, training, characters, styles, library, jobs, studio, storyboards)


def install(app: FastAPI) -> None:
    """Mount the pages, their static files and the login redirect on the app."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in MODULES:
        app.include_router(module.router)

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, _: LoginNeeded) -> Response:
        target = "/login?next=" + quote(request.url.path)
        if request.headers.get("hx-request") == "true":  # htmx follows this header, not a 303
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
