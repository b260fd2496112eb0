"""create_app(settings): the FastAPI app of LoRA Studio (JSON API under /api/v1)."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from lorastudio import __version__
from lorastudio.config import Settings
from lorastudio.studio import bootstrap, credits
from lorastudio.studio.accounts import local_user
from lorastudio.studio.blobs import make_store
from lorastudio.studio.db import make_engine, session_factory
from lorastudio.studio.jobs import make_queue
from lorastudio.web import docs, errors, headers, pages
from lorastudio.web.api import account, characters, datasets, jobs, library, storyboards, styles
from lorastudio.web.api import health as health_routes
from lorastudio.web.clients import trusted_networks
from lorastudio.web.state import Studio

API = "/api/v1"


def create_app(settings: Settings) -> FastAPI:
    """The app for these settings: migrates the schema and seeds a fresh install when it starts."""
    trusted_networks(settings.trusted_proxies)  # a mistyped proxy address stops the start, not a request
    bootstrap.prepare(settings)
    factory = session_factory(make_engine(settings))
    store = make_store(settings)
    with factory() as session:
        user = local_user(session)
        credits.ensure_start(session, user_id=user, amount=settings.starting_credits)
        session.commit()
        bootstrap.seed(session, store)
    studio = Studio(settings=settings, factory=factory, store=store, queue=make_queue(settings), local_user=user)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield

    app = FastAPI(
        title="LoRA Studio",
        version=__version__,
        description="Train LoRAs for characters, fighting styles, poses and visual styles, and generate "
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
