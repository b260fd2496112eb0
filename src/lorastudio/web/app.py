"""create_app(settings): the FastAPI app of LoRA Studio (JSON API under /api/v1)."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from lorastudio import __version__
from lorastudio.config import Settings
from lorastudio.engine import kind_list
from lorastudio.studio.context import open_studio
from lorastudio.web import docs, errors, headers, pages
from lorastudio.web.api import account, characters, datasets, jobs, library, storyboards, styles
from lorastudio.web.api import health as health_routes
from lorastudio.web.clients import trusted_networks
from lorastudio.web.urls import API


def create_app(settings: Settings) -> FastAPI:
    """The app for these settings: migrates the schema and seeds a fresh install when it starts."""
    trusted_networks(settings.trusted_proxies)  # a mistyped proxy address stops the start, not a request
    studio = open_studio(settings, migrate=True, seed=True)
    studio.queue  # noqa: B018 - made now: a mistyped LORASTUDIO_QUEUE_URL stops the start, not a submit

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield

    app = FastAPI(
        title="LoRA Studio",
        version=__version__,
        description=f"Train LoRAs for {kind_list('plural', 'and').lower()}, and generate "
        'consistent action scenes with them. Errors are JSON: {"error": {"code", "message"}}.',
        lifespan=lifespan,
        docs_url=None,  # web/docs.py serves both from the studio's own files, not from a CDN
        redoc_url=None,
    )
    app.state.studio = studio
    headers.install(app)
    errors.install(app)
    docs.install(app)
    for module in (account, characters, styles, library, datasets, jobs, storyboards):
        app.include_router(module.router, prefix=API)

    app.include_router(health_routes.router)  # at the root, where probes and Prometheus look

    @app.get(f"{API}/health", tags=["System"], summary="Is the server up")
    def health() -> dict:
        return {"status": "ok", "version": __version__}

    pages.install(app)
    return app


def app_from_env() -> FastAPI:
    """The app for the settings in the environment: what each of several HTTP processes imports."""
    return create_app(Settings())
