"""Storyboards: the fight sequence as ordered scenes, re-rolled and reordered, exported as PDF, contact-sheet
PNG or ZIP (an export is a job; its file is downloaded by the job's id)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from lorastudio.studio import storyboards
from lorastudio.studio.jobs import JobOut
from lorastudio.studio.storyboards import (
    ExportIn,
    MoveIn,
    ReorderIn,
    RerollOut,
    SceneIn,
    SceneUpdate,
    StoryboardIn,
    StoryboardOut,
    StoryboardSummary,
    StoryboardUpdate,
)
from lorastudio.web import urls
from lorastudio.web.api.files import file_response
from lorastudio.web.state import Id, SessionDep, StudioDep, UserDep

router = APIRouter(prefix="/storyboards", tags=["Storyboards"])


@router.get("", summary="Your storyboards, most recently changed first")
def list_storyboards(session: SessionDep, user: UserDep) -> list[StoryboardSummary]:
    return storyboards.list_storyboards(session, owner_id=user)


@router.post("", status_code=201, summary="Start a storyboard")
def create(data: StoryboardIn, session: SessionDep, user: UserDep) -> StoryboardOut:
    return urls.fill(storyboards.create_storyboard(session, owner_id=user, data=data))


@router.get("/{storyboard_id}", summary="A storyboard with its scenes in order")
def get(storyboard_id: Id, session: SessionDep, user: UserDep) -> StoryboardOut:
    return urls.fill(storyboards.get_storyboard(session, owner_id=user, storyboard_id=storyboard_id))


@router.patch("/{storyboard_id}", summary="Change a storyboard's title or description")
def update(storyboard_id: Id, data: StoryboardUpdate, session: SessionDep, user: UserDep) -> StoryboardOut:
    return urls.fill(storyboards.update_storyboard(session, owner_id=user, storyboard_id=storyboard_id, data=data))


@router.delete("/{storyboard_id}", status_code=204, summary="Delete a storyboard (its jobs and images stay)")
def delete(storyboard_id: Id, session: SessionDep, user: UserDep) -> None:
    storyboards.delete_storyboard(session, owner_id=user, storyboard_id=storyboard_id)


@router.post("/{storyboard_id}/scenes", status_code=201, summary="Add a scene from one of your generation jobs")
def add_scene(storyboard_id: Id, data: SceneIn, session: SessionDep, user: UserDep) -> StoryboardOut:
    return urls.fill(storyboards.add_scene(session, owner_id=user, storyboard_id=storyboard_id, data=data))


@router.patch("/{storyboard_id}/scenes/{scene_id}", summary="Change a scene's title, notes or chosen image")
def update_scene(
    storyboard_id: Id, scene_id: Id, data: SceneUpdate, session: SessionDep, user: UserDep
) -> StoryboardOut:
    return urls.fill(
        storyboards.update_scene(session, owner_id=user, storyboard_id=storyboard_id, scene_id=scene_id, data=data)
    )


@router.delete("/{storyboard_id}/scenes/{scene_id}", summary="Remove a scene (the ones after it move up)")
def remove_scene(storyboard_id: Id, scene_id: Id, session: SessionDep, user: UserDep) -> StoryboardOut:
    return urls.fill(storyboards.remove_scene(session, owner_id=user, storyboard_id=storyboard_id, scene_id=scene_id))


@router.put("/{storyboard_id}/order", summary="Reorder: every scene id, each once, in the new order")
def reorder(storyboard_id: Id, data: ReorderIn, session: SessionDep, user: UserDep) -> StoryboardOut:
    return urls.fill(storyboards.reorder(session, owner_id=user, storyboard_id=storyboard_id, scene_ids=data.scene_ids))


@router.post("/{storyboard_id}/scenes/{scene_id}/move", summary="Move a scene one place up or down")
def move(storyboard_id: Id, scene_id: Id, data: MoveIn, session: SessionDep, user: UserDep) -> StoryboardOut:
    return urls.fill(
        storyboards.move_scene(
            session, owner_id=user, storyboard_id=storyboard_id, scene_id=scene_id, direction=data.direction
        )
    )


@router.post(
    "/{storyboard_id}/scenes/{scene_id}/reroll",
    status_code=201,
    summary="Re-roll a scene: the same request with a new seed (a generation job)",
)
def reroll(storyboard_id: Id, scene_id: Id, session: SessionDep, user: UserDep) -> RerollOut:
    board, job = storyboards.reroll_scene(session, owner_id=user, storyboard_id=storyboard_id, scene_id=scene_id)
    return urls.fill(RerollOut(storyboard=board, job=job))


@router.post("/{storyboard_id}/exports", status_code=201, summary="Export as PDF, contact-sheet PNG or ZIP (a job)")
def export(storyboard_id: Id, data: ExportIn, session: SessionDep, studio: StudioDep, user: UserDep) -> JobOut:
    return storyboards.submit_export(session, studio.store, owner_id=user, storyboard_id=storyboard_id, fmt=data.format)


@router.get(
    "/{storyboard_id}/exports/{job_id}",
    response_class=FileResponse,
    responses={200: {"content": {"application/pdf": {}, "image/png": {}, "application/zip": {}}}},
    summary="Download a finished export (409 while its job is still running)",
)
def download(storyboard_id: Id, job_id: Id, session: SessionDep, studio: StudioDep, user: UserDep):
    blob, content_type, filename = storyboards.export_file(
        session, owner_id=user, storyboard_id=storyboard_id, job_id=job_id
    )
    return file_response(studio.store, blob, content_type, filename)
