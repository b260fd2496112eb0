"""A job's page and its live panel (progress over SSE, cancel, what it made), the generation gallery's
keep/reject, and sending a generation to a storyboard. Training, Studio and Storyboard pages embed the panel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from lorastudio.errors import LoraStudioError
from lorastudio.studio import generation, jobs, storyboards
from lorastudio.studio.storyboards import SceneIn, StoryboardIn
from lorastudio.web.pages.common import PageUser, error_text, render, studio_of
from lorastudio.web.state import Id, as_id

router = APIRouter(include_in_schema=False)


def panel_context(session, *, owner_id: int, job_id: int, stale_seconds: float | None = None) -> dict:
    """What _job.html needs: the job, a generation's images, the storyboards to add it to."""
    job = jobs.get_job(session, owner_id=owner_id, job_id=job_id, stale_seconds=stale_seconds)
    images = generation.list_images(session, owner_id=owner_id, job_id=job_id) if job.type == "generation" else []
    boards = storyboards.list_storyboards(session, owner_id=owner_id) if images else []
    return {"job": job, "images": images, "boards": boards}


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, user: PageUser, job_id: Id) -> HTMLResponse:
    with studio_of(request).factory() as session:
        ctx = panel_context(
            session, owner_id=user, job_id=job_id, stale_seconds=studio_of(request).settings.lease_seconds
        )
    return render(request, "job.html", **ctx)


@router.get("/jobs/{job_id}/panel", response_class=HTMLResponse)
def job_panel(request: Request, user: PageUser, job_id: Id) -> HTMLResponse:
    with studio_of(request).factory() as session:
        ctx = panel_context(
            session, owner_id=user, job_id=job_id, stale_seconds=studio_of(request).settings.lease_seconds
        )
    return render(request, "_job.html", **ctx)


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def cancel(request: Request, user: PageUser, job_id: Id) -> HTMLResponse:
    """Cancel a job: its panel says "canceling…" (or "canceled") at once and the header's balance refreshes."""
    error = None
    with studio_of(request).factory() as session:
        try:
            jobs.cancel(session, owner_id=user, job_id=job_id)
        except LoraStudioError as exc:
            error = error_text(exc)
        ctx = panel_context(session, owner_id=user, job_id=job_id)
    response = render(request, "_job.html", panel_error=error, **ctx)
    # A pending job's hold comes back at once; a running one's when it stops (its panel's job-ended says so).
    response.headers["HX-Trigger"] = "balance-changed"
    return response


@router.post("/images/{image_id}/verdict", response_class=HTMLResponse)
def verdict(
    request: Request, user: PageUser, image_id: Id, verdict: Annotated[Literal["kept", "rejected", ""], Form()] = ""
) -> HTMLResponse:
    with studio_of(request).factory() as session:
        image = generation.set_verdict(session, owner_id=user, image_id=image_id, verdict=verdict or None)
    return render(request, "_image.html", image=image)


@router.post("/jobs/{job_id}/to-storyboard", response_class=HTMLResponse)
def to_storyboard(
    request: Request,
    user: PageUser,
    job_id: Id,
    storyboard_id: Annotated[str, Form(max_length=20)] = "",
    new_title: Annotated[str, Form(max_length=200)] = "",
    title: Annotated[str, Form(max_length=200)] = "",
) -> HTMLResponse:
    """Add a generation as a scene of a storyboard (or of a new one titled new_title)."""
    # Errors (another user's job, a job without images) go through the error handler: shown by the form.
    with studio_of(request).factory() as session:
        jobs.get_row(session, owner_id=user, job_id=job_id)  # before a new storyboard is made for it
        if (chosen := as_id(storyboard_id)) is not None:
            board_id = chosen
        else:
            data = StoryboardIn(title=new_title.strip() or "Fight sequence")
            board_id = storyboards.create_storyboard(session, owner_id=user, data=data).id
        board = storyboards.add_scene(
            session, owner_id=user, storyboard_id=board_id, data=SceneIn(job_id=job_id, title=title[:120])
        )
    response = render(request, "_added.html", board=board)
    response.headers["HX-Trigger"] = "storyboards-changed"  # every "Add to storyboard" list on the page refreshes
    return response


@router.get("/storyboard-choices", response_class=HTMLResponse)
def storyboard_choices(request: Request, user: PageUser) -> HTMLResponse:
    """The options of an "Add to storyboard" list: the storyboard changed last comes first."""
    with studio_of(request).factory() as session:
        boards = storyboards.list_storyboards(session, owner_id=user)
    return render(request, "_board_options.html", boards=boards)
