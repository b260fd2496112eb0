"""Pages: the storyboards list and one storyboard (scenes as ordered cards: edited inline, image picked,
reordered by drag or keyboard, re-rolled, removed; exported as PDF, PNG contact sheet or ZIP). Every rule
is the storyboard services'; these routes only read forms and render what the services answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from lorastudio.errors import Invalid, LoraStudioError, NotFound
from lorastudio.studio import generation, jobs, storyboards
from lorastudio.studio.jobs import JobOut
from lorastudio.studio.storyboards import (
    DRIFT_MARGIN,
    ExportFormat,
    ExportIn,
    MoveIn,
    ReorderIn,
    SceneIn,
    SceneOut,
    SceneUpdate,
    StoryboardIn,
    StoryboardOut,
    StoryboardUpdate,
)
from lorastudio.web.pages.common import (
    PageUser,
    error_text,
    field_errors,
    is_htmx,
    parse_form,
    redirect,
    render,
    studio_of,
)
from lorastudio.web.pages.jobs import panel_context
from lorastudio.web.state import Digits, Id, as_id

router = APIRouter(include_in_schema=False)

# Form bounds are generous guards only: the schema models say what is too long, next to the field.
Text = Annotated[str, Form(max_length=10_000)]
Short = Annotated[str, Form(max_length=2_000)]
JobQuery = Annotated[int, Query(ge=1, le=2**62, description="The job the progress note follows"), Digits]
FINISHED_LIMIT = 200  # newest jobs looked through for finished generations to add as scenes


def _quote(scene: SceneOut) -> str:
    return f"'{scene.title}'" if scene.title else f"{scene.position + 1} (untitled)"


def _where(board: StoryboardOut, scene_id: int) -> str:
    """The words an aria-live region says after a scene moved."""
    scene = next((s for s in board.scenes if s.id == scene_id), None)
    if scene is None:
        return ""
    return f"Scene {_quote(scene)} is now {scene.position + 1} of {len(board.scenes)}"


def _pickers(session: Session, user: int, board: StoryboardOut) -> dict[int, list]:
    """Each scene's job's images, for its image picker."""
    return {s.id: generation.list_images(session, owner_id=user, job_id=s.job_id) for s in board.scenes}


def _finished_generations(session: Session, user: int) -> list:
    """The user's succeeded generation jobs, newest first: what a scene can be added from."""
    return jobs.list_jobs(session, owner_id=user, status="succeeded", type="generation", limit=FINISHED_LIMIT)


def _running(session: Session, user: int, board: StoryboardOut) -> dict[int, JobOut]:
    """The scenes' unfinished jobs by id, for their progress notes."""
    ids = {s.job_id for s in board.scenes if s.job_status not in jobs.FINAL}
    return {i: jobs.get_job(session, owner_id=user, job_id=i) for i in ids}


def _board_context(session: Session, user: int, board: StoryboardOut) -> dict[str, Any]:
    return {
        "board": board,
        "pickers": _pickers(session, user, board),
        "running": _running(session, user, board),
        "drift_margin": DRIFT_MARGIN,
    }


def _scenes_fragment(request: Request, session: Session, user: int, board: StoryboardOut, **extra: Any) -> HTMLResponse:
    return render(request, "_storyboard_scenes.html", fragment=True, **_board_context(session, user, board), **extra)


def _card(request: Request, session: Session, user: int, board: StoryboardOut, scene_id: int, **extra: Any):
    scene = next((s for s in board.scenes if s.id == scene_id), None)
    if scene is None:
        raise NotFound(f"scene {scene_id} not found in storyboard {board.id}")
    ctx = _board_context(session, user, board)
    # The board's consistency lines come along out of band: a panel's new image changes them (and may change
    # which of the other panels drifted, shown when the list is next answered).
    return render(request, "_storyboard_scene.html", scene=scene, identity_oob=True, **ctx, **extra)


def _board(session: Session, user: int, board_id: int) -> StoryboardOut:
    return storyboards.get_storyboard(session, owner_id=user, storyboard_id=board_id)


# --- the list --------------------------------------------------------------------------------------


@router.get("/storyboards", response_class=HTMLResponse)
def list_page(request: Request, user: PageUser) -> HTMLResponse:
    """The user's storyboards and the New storyboard form."""
    with studio_of(request).factory() as session:
        boards = storyboards.list_storyboards(session, owner_id=user)
    return render(request, "storyboards.html", boards=boards, form={}, errors={})


@router.post("/storyboards", response_class=HTMLResponse)
def create(request: Request, user: PageUser, title: Short = "", description: Text = "") -> Response:
    """Start a storyboard and open it; on an error the form comes back with it beside the field."""
    form = {"title": title, "description": description}
    data, errors = parse_form(StoryboardIn, {"title": title.strip(), "description": description})
    with studio_of(request).factory() as session:
        if data is not None:
            try:
                board = storyboards.create_storyboard(session, owner_id=user, data=data)
                return redirect(request, f"/storyboards/{board.id}")
            except LoraStudioError as exc:
                errors = {"form": error_text(exc)}
        if is_htmx(request):
            return render(request, "_storyboard_new.html", status_code=422, form=form, errors=errors)
        boards = storyboards.list_storyboards(session, owner_id=user)
    return render(request, "storyboards.html", status_code=422, boards=boards, form=form, errors=errors)


# --- one storyboard --------------------------------------------------------------------------------


@router.get("/storyboards/{board_id}", response_class=HTMLResponse)
def board_page(request: Request, user: PageUser, board_id: Id) -> HTMLResponse:
    """One storyboard: its details, scenes in order, add-scene and export."""
    with studio_of(request).factory() as session:
        board = _board(session, user, board_id)
        ctx = _board_context(session, user, board) | {"finished": _finished_generations(session, user)}
    return render(request, "storyboard.html", form={}, errors={}, add_errors={}, **ctx)


@router.post("/storyboards/{board_id}", response_class=HTMLResponse)
def update(request: Request, user: PageUser, board_id: Id, title: Short = "", description: Text = "") -> HTMLResponse:
    """Change the title or description; the details form comes back saying so (or what is wrong)."""
    form = {"title": title, "description": description}
    with studio_of(request).factory() as session:
        try:
            data = StoryboardUpdate(title=title.strip(), description=description)
            board = storyboards.update_storyboard(session, owner_id=user, storyboard_id=board_id, data=data)
        except ValidationError as exc:
            board = _board(session, user, board_id)
            return render(
                request, "_storyboard_head.html", status_code=422, board=board, form=form, errors=field_errors(exc)
            )
        except LoraStudioError as exc:
            board = _board(session, user, board_id)
            return render(
                request,
                "_storyboard_head.html",
                status_code=422,
                board=board,
                form=form,
                errors={"form": error_text(exc)},
            )
    return render(request, "_storyboard_head.html", board=board, form={}, errors={}, saved=True)


@router.post("/storyboards/{board_id}/delete")
def delete(request: Request, user: PageUser, board_id: Id) -> Response:
    """Delete the storyboard (its generations and images stay, in the Studio and the jobs)."""
    with studio_of(request).factory() as session:
        storyboards.delete_storyboard(session, owner_id=user, storyboard_id=board_id)
    return redirect(request, "/storyboards")


# --- scenes ----------------------------------------------------------------------------------------


@router.post("/storyboards/{board_id}/scenes", response_class=HTMLResponse)
def add_scene(request: Request, user: PageUser, board_id: Id, job_id: Short = "", title: Short = "") -> HTMLResponse:
    """Append a scene from a finished generation; the add form says what is wrong next to its field."""
    with studio_of(request).factory() as session:
        finished = _finished_generations(session, user)
        data, errors = parse_form(SceneIn, {"job_id": job_id, "title": title.strip()})
        if data is not None:
            try:
                board = storyboards.add_scene(session, owner_id=user, storyboard_id=board_id, data=data)
            except LoraStudioError as exc:
                errors = {"job_id": error_text(exc)}
        if errors:
            form = {"job_id": job_id, "title": title}
            return render(
                request,
                "_storyboard_add.html",
                status_code=422,
                board=_board(session, user, board_id),
                finished=finished,
                form=form,
                add_errors=errors,
            )
        added = board.scenes[-1]
        announce = f"Added scene {_quote(added)} as {added.position + 1} of {len(board.scenes)}"
        ctx = _board_context(session, user, board)
        return render(request, "_storyboard_added.html", fragment=True, finished=finished, announce=announce, **ctx)


@router.get("/storyboards/{board_id}/scenes/{scene_id}", response_class=HTMLResponse)
def scene_card(request: Request, user: PageUser, board_id: Id, scene_id: Id) -> HTMLResponse:
    """One scene's card (fetched again when its job ends)."""
    with studio_of(request).factory() as session:
        return _card(request, session, user, _board(session, user, board_id), scene_id)


@router.get("/storyboards/{board_id}/scenes/{scene_id}/progress", response_class=HTMLResponse)
def scene_progress(request: Request, user: PageUser, board_id: Id, scene_id: Id, job: JobQuery) -> HTMLResponse:
    """A running scene's progress note; once its job has ended, the whole card instead (retargeted)."""
    with studio_of(request).factory() as session:
        found = jobs.get_job(session, owner_id=user, job_id=job)  # a read only: this is asked every second
        if found.status not in jobs.FINAL:
            scene = {"id": scene_id, "job_id": job}
            return render(request, "_storyboard_progress.html", board={"id": board_id}, scene=scene, job=found)
        response = _card(request, session, user, _board(session, user, board_id), scene_id)
    response.headers["HX-Retarget"] = f"#scene-{scene_id}"
    return response


@router.post("/storyboards/{board_id}/scenes/{scene_id}", response_class=HTMLResponse)
def edit_scene(
    request: Request, user: PageUser, board_id: Id, scene_id: Id, title: Short = "", notes: Text = ""
) -> HTMLResponse:
    """Save a scene's title and notes (inline); answers the 'saved' note and the card's new heading."""
    with studio_of(request).factory() as session:
        try:
            # Built directly, not with parse_form: an emptied title or notes is a change to keep.
            data = SceneUpdate(title=title.strip(), notes=notes)
            board = storyboards.update_scene(
                session, owner_id=user, storyboard_id=board_id, scene_id=scene_id, data=data
            )
        except ValidationError as exc:
            return render(request, "_storyboard_saved.html", status_code=422, errors=field_errors(exc), scene=None)
        except LoraStudioError as exc:
            return render(
                request, "_storyboard_saved.html", status_code=422, errors={"form": error_text(exc)}, scene=None
            )
    scene = next(s for s in board.scenes if s.id == scene_id)
    return render(request, "_storyboard_saved.html", errors={}, scene=scene)


@router.post("/storyboards/{board_id}/scenes/{scene_id}/image", response_class=HTMLResponse)
def pick_image(request: Request, user: PageUser, board_id: Id, scene_id: Id, image_id: Short = "") -> HTMLResponse:
    """Choose the scene's image among its job's images; the card comes back, focus on the choice."""
    with studio_of(request).factory() as session:
        try:
            if not image_id:
                raise Invalid("choose one of the scene's images")
            data = SceneUpdate(image_id=image_id)
            board = storyboards.update_scene(
                session, owner_id=user, storyboard_id=board_id, scene_id=scene_id, data=data
            )
        except ValidationError as exc:
            error = next(iter(field_errors(exc).values()))
            return _card(request, session, user, _board(session, user, board_id), scene_id, card_error=error)
        except LoraStudioError as exc:
            return _card(request, session, user, _board(session, user, board_id), scene_id, card_error=error_text(exc))
        return _card(request, session, user, board, scene_id, card_focus=f"pick-{image_id}")


@router.post("/storyboards/{board_id}/scenes/{scene_id}/move", response_class=HTMLResponse)
def move(
    request: Request,
    user: PageUser,
    board_id: Id,
    scene_id: Id,
    direction: Annotated[str, Form(max_length=10)] = "",
    then: Annotated[Literal["card", "button"], Form()] = "button",
) -> HTMLResponse:
    """Move a scene one place (Move up/down, Alt+Arrow); focus stays on what moved it."""
    with studio_of(request).factory() as session:
        try:
            step = MoveIn(direction=direction).direction
            before = _board(session, user, board_id)
            board = storyboards.move_scene(
                session, owner_id=user, storyboard_id=board_id, scene_id=scene_id, direction=step
            )
        except ValidationError as exc:
            return _scenes_fragment(
                request,
                session,
                user,
                _board(session, user, board_id),
                list_error=next(iter(field_errors(exc).values())),
            )
        except LoraStudioError as exc:
            return _scenes_fragment(request, session, user, _board(session, user, board_id), list_error=error_text(exc))
        announce = _where(board, scene_id)
        if [s.id for s in before.scenes] == [s.id for s in board.scenes]:
            announce += " (it is already " + ("first)" if step == "up" else "last)")
        focus = f"scene-{scene_id}" if then == "card" else f"scene-{scene_id}-{step}"
        return _scenes_fragment(request, session, user, board, announce=announce, focus=focus)


@router.post("/storyboards/{board_id}/order", response_class=HTMLResponse)
def reorder(request: Request, user: PageUser, board_id: Id, scene_ids: Text = "", moved: Short = "") -> HTMLResponse:
    """Put the scenes in a new order (drag and drop posts every id, comma-separated)."""
    with studio_of(request).factory() as session:
        try:
            ids = ReorderIn(scene_ids=[p.strip() for p in scene_ids.split(",") if p.strip()]).scene_ids
            board = storyboards.reorder(session, owner_id=user, storyboard_id=board_id, scene_ids=ids)
        except ValidationError as exc:
            return _scenes_fragment(
                request,
                session,
                user,
                _board(session, user, board_id),
                list_error="the new order was not understood: " + next(iter(field_errors(exc).values())),
            )
        except LoraStudioError as exc:
            return _scenes_fragment(request, session, user, _board(session, user, board_id), list_error=error_text(exc))
        moved_id = as_id(moved)
        announce = _where(board, moved_id) if moved_id else "Scenes reordered"
        focus = f"scene-{moved_id}" if moved_id else None
        return _scenes_fragment(request, session, user, board, announce=announce, focus=focus)


@router.post("/storyboards/{board_id}/scenes/{scene_id}/remove", response_class=HTMLResponse)
def remove(request: Request, user: PageUser, board_id: Id, scene_id: Id) -> HTMLResponse:
    """Remove a scene (the ones after it move up; its job and images stay)."""
    with studio_of(request).factory() as session:
        try:
            gone = next((s for s in _board(session, user, board_id).scenes if s.id == scene_id), None)
            board = storyboards.remove_scene(session, owner_id=user, storyboard_id=board_id, scene_id=scene_id)
        except LoraStudioError as exc:
            return _scenes_fragment(request, session, user, _board(session, user, board_id), list_error=error_text(exc))
        left = len(board.scenes)
        announce = f"Removed scene {_quote(gone) if gone else scene_id}; {left} scene{'s' if left != 1 else ''} left"
        return _scenes_fragment(request, session, user, board, announce=announce, focus="scenes-list")


@router.post("/storyboards/{board_id}/scenes/{scene_id}/reroll", response_class=HTMLResponse)
def reroll(request: Request, user: PageUser, board_id: Id, scene_id: Id) -> HTMLResponse:
    """Render the scene again with a new seed; its card follows the new job and then shows its image."""
    studio = studio_of(request)
    with studio.factory() as session:
        try:
            board, _ = storyboards.reroll_scene(session, owner_id=user, storyboard_id=board_id, scene_id=scene_id)
        except LoraStudioError as exc:
            return _card(request, session, user, _board(session, user, board_id), scene_id, card_error=error_text(exc))
        return _card(request, session, user, board, scene_id, card_focus=f"scene-{scene_id}-reroll")


@router.post("/storyboards/{board_id}/exports", response_class=HTMLResponse)
def export(request: Request, user: PageUser, board_id: Id, fmt: Annotated[str, Form(max_length=10)] = "") -> Response:
    """Queue an export and show its job's panel (progress, then the download link)."""
    studio = studio_of(request)
    with studio.factory() as session:
        try:
            job = storyboards.submit_export(
                session, studio.store, owner_id=user, storyboard_id=board_id, fmt=_format(fmt)
            )
        except LoraStudioError as exc:
            return render(request, "_storyboard_export_error.html", message=error_text(exc))
        ctx = panel_context(session, owner_id=user, job_id=job.id)
    return render(request, "_job.html", **ctx)


def _format(fmt: str) -> ExportFormat:
    """The export format asked for, or Invalid saying which there are."""
    try:
        return ExportIn(format=fmt).format
    except ValidationError:
        raise Invalid(f"unknown export format {fmt[:20]!r}; use pdf, png or zip") from None
