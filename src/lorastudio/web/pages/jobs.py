"""A job's page and its live panel (progress over SSE, cancel, what it made), the generation gallery's
keep/reject, and sending a generation to a storyboard. Training, Studio and Storyboard pages embed the panel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from lorastudio.engine import ADHERENCE_FIELDS, IDENTITY_FIELDS, CheckpointScore
from lorastudio.errors import LoraStudioError, words
from lorastudio.studio import generation, jobs, storyboards
from lorastudio.studio.jobs import JobOut
from lorastudio.studio.storyboards import SceneIn, StoryboardIn
from lorastudio.web.errors import FIELDS
from lorastudio.web.pages.common import TEMPLATES, PageUser, error_text, render, studio_of
from lorastudio.web.state import Id, as_id

router = APIRouter(include_in_schema=False)

# The score curves: which measure stands for identity and for prompt adherence (the first one scored, in the
# order the engine ranks by), and their words; app.js picks the same ones for the live curves.
IDENTITY, ADHERENCE = IDENTITY_FIELDS, ADHERENCE_FIELDS
MEASURES = {
    "dino": "identity (DINO)",
    "clip_i": "identity (CLIP-I)",
    "hit_rate": "identity (toy detectors)",
    "clip_t": "prompt adherence (CLIP-T)",
    "adherence_hits": "prompt adherence (toy detectors)",
    "change": "change from the base",
}


def _first_scored(scores: list[CheckpointScore], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if any(getattr(s, n) is not None for s in scores)), None)


def scores_view(job: JobOut) -> dict | None:
    """What the job panel shows of a training's checkpoint evaluation (None: the run does not score them): the
    scores so far, the measures drawn, and once it succeeded the checkpoint chosen, why, and what it cost."""
    if job.type != "training" or not job.request.plan.get("evaluate"):
        return None
    result = job.result if job.status == "succeeded" else None
    evaluation = getattr(result, "evaluation", None)
    scores = evaluation.scores if evaluation else job.progress.scores
    measures = [m for m in (_first_scored(scores, IDENTITY), _first_scored(scores, ADHERENCE), "change") if m]
    view = {
        "scores": scores,
        "data": [s.model_dump(mode="json") for s in scores],
        "measures": [(m, MEASURES[m]) for m in measures if any(getattr(s, m) is not None for s in scores)],
        "renders": job.progress.eval_renders,
        "chosen": None,
        "overtrained": None,
        "summary": None,
        "why": None,
        "cost": None,
        "note": None,
    }
    if evaluation is None:
        return view
    choice = evaluation.choice
    step = choice.step if choice.step is not None else max((s.step for s in scores if s.step), default=None)
    total = evaluation.eval_seconds + evaluation.train_seconds
    if choice.step is not None:
        summary = f"Step {step} became version {result.version}."
    elif not scores:
        summary = f"Checkpoints not scored: the run's last step became version {result.version}."
    else:
        last = f" (step {step})" if step is not None else ""
        summary = f"Not ranked: the last checkpoint{last} became version {result.version}."
    view |= {
        "chosen": step,
        "overtrained": choice.overtrained_after,
        "summary": summary,
        "why": _sentence(choice.message),
        "cost": f"Scoring the checkpoints took {evaluation.share:.0%} of the run "
        f"({evaluation.eval_seconds:.1f} s of {total:.1f} s)."
        if scores
        else "",
    }
    if choice.by == "none":
        view["note"] = _sentence(evaluation.note) if evaluation.note and evaluation.note != choice.message else None
    elif evaluation.note:  # no scorer model configured: the toy world's detectors ranked them
        view["note"] = "Ranked by the toy world's detectors. " + _sentence(evaluation.note)
    elif evaluation.scorers:
        view["note"] = "Scored with " + ", ".join(evaluation.scorers) + "."
    return view


def _sentence(text: str) -> str:
    """The engine's words as a sentence of their own, settings named as the web names them ("raise $eval_share"
    reads "raise eval_share", the Advanced field's name): a capital first, a full stop last."""
    text = words(text, FIELDS | {"eval_share": "eval_share"}).strip()
    return (text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")) if text else ""


def score_cell(score: CheckpointScore, measure: str) -> str:
    """One score as the table shows it: two decimals, or a dash when the measure was not taken."""
    value = getattr(score, measure)
    return "—" if value is None else f"{value:.2f}"


# Every page that embeds a job panel includes _job.html with the job alone: the panel asks for its scores itself.
TEMPLATES.env.globals.update(scores_view=scores_view, score_cell=score_cell)


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
