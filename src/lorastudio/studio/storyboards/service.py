"""Storyboards: an ordered list of scenes, each a generation job of the same owner with the image chosen
among its images. Scenes are added, re-titled, reordered (whole list or one place), re-rolled (the same
request with a new seed) and removed; positions stay 0..n-1 with no gaps."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lorastudio.engine import pick_seed
from lorastudio.errors import Invalid, NotFound
from lorastudio.studio import generation, jobs, library
from lorastudio.studio.db import Image, Job, Lora, LoraVersion, Storyboard, StoryboardScene, get_owned, now, writes
from lorastudio.studio.jobs import JobOut
from lorastudio.studio.storyboards.identity import judge
from lorastudio.studio.storyboards.schemas import (
    MAX_SCENES,
    SceneIn,
    SceneLora,
    SceneOut,
    SceneUpdate,
    StoryboardIn,
    StoryboardOut,
    StoryboardSummary,
    StoryboardUpdate,
)


def get_row(session: Session, *, owner_id: int, storyboard_id: int) -> Storyboard:
    """The row, or NotFound (another user's storyboard is not found either)."""
    return get_owned(session, Storyboard, storyboard_id, owner_id, "storyboard")


def _for_write(session: Session, owner_id: int, storyboard_id: int) -> Storyboard:
    """The row, read inside the caller's write. These services are @writes: they read, then write (even a
    read gives scenes their first image); a SQLite read transaction cannot become a write one once another
    writer, such as a worker reporting progress, has committed since it began: 'database is locked' at once."""
    return get_row(session, owner_id=owner_id, storyboard_id=storyboard_id)


def scene_rows(session: Session, storyboard_id: int) -> list[StoryboardScene]:
    """The storyboard's scenes in order."""
    query = select(StoryboardScene).where(StoryboardScene.storyboard_id == storyboard_id)
    return list(session.scalars(query.order_by(StoryboardScene.position, StoryboardScene.id)))


def _scene_row(session: Session, board: Storyboard, scene_id: int) -> StoryboardScene:
    scene = session.scalar(
        select(StoryboardScene).where(StoryboardScene.id == scene_id, StoryboardScene.storyboard_id == board.id)
    )
    if scene is None:
        raise NotFound(f"scene {scene_id} not found in storyboard {board.id}")
    return scene


def lora_names(session: Session, owner_id: int, hashes: set[str]) -> dict[str, str]:
    """Library names of LoRA files by their sha256 (a PNG record names a stored file by its hash); the
    user's own entry wins over a shared one with the same file."""
    rows = session.execute(
        select(LoraVersion.blob, Lora.name, Lora.owner_id).join(Lora).where(LoraVersion.blob.in_(hashes))
    ).all()
    names: dict[str, str] = {}
    for blob, name, _ in sorted(rows, key=lambda r: r[2] != owner_id):
        names.setdefault(blob, name)
    return names


def default_image(session: Session, job_id: int) -> int | None:
    """The job's first kept image, else its first image, else None (no images yet)."""
    rows = session.execute(select(Image.id, Image.verdict).where(Image.job_id == job_id).order_by(Image.id)).all()
    kept = [i for i, verdict in rows if verdict == "kept"]
    return (kept or [i for i, _ in rows] or [None])[0]


def fill_images(session: Session, scenes: list[StoryboardScene]) -> bool:
    """Give scenes whose job has since made images their default image; whether any changed."""
    changed = False
    for scene in scenes:
        if scene.image_id is None:
            scene.image_id = default_image(session, scene.job_id)
            changed |= scene.image_id is not None
    return changed


def _scene_out(session: Session, scene: StoryboardScene) -> SceneOut:
    job = session.get(Job, scene.job_id)
    image = session.get(Image, scene.image_id) if scene.image_id else None
    if image is not None:  # what was rendered: strengths settled, triggers added
        prompt, seed, records = image.params.get("prompt", ""), image.seed, image.params.get("loras", [])
        names = lora_names(session, job.owner_id, {x.get("hash") for x in records})
        loras = [
            SceneLora(
                name=names.get(x.get("hash"), x.get("name", "?")),
                strength=x.get("strength"),
                region=x.get("region"),
                lora_id=x.get("lora_id"),
                version=x.get("version"),
            )
            for x in records
        ]
    else:  # what was asked for: the same selections, before the engine settled their strengths
        request = jobs.request_of(job)
        prompt, seed = request.prompt, None
        loras = [
            SceneLora(name=x.name or "?", strength=x.strength, region=x.region, lora_id=x.lora_id, version=x.version)
            for x in request.loras
        ]
    return SceneOut(
        id=scene.id,
        position=scene.position,
        title=scene.title,
        notes=scene.notes,
        job_id=scene.job_id,
        job_status=job.status,
        image_id=scene.image_id,
        image_url=None,  # the web face writes it (web/urls.py)
        prompt=prompt,
        seed=seed,
        loras=loras,
        created_at=scene.created_at,
    )


def _identity_of(session: Session, scene: StoryboardScene) -> list | None:
    """The chosen image's stored identity scores (None: no image yet, or one made before scoring)."""
    image = session.get(Image, scene.image_id) if scene.image_id else None
    return image.identity if image is not None else None


def to_out(session: Session, board: Storyboard) -> StoryboardOut:
    """The API form, scenes in order, each chosen image's identity scores judged across the board; scenes whose
    job has made images get their default image now (the caller's write commits it)."""
    scenes = scene_rows(session, board.id)
    fill_images(session, scenes)
    out = [_scene_out(session, s) for s in scenes]
    stored = [(s.position + 1, _identity_of(session, s)) for s in scenes]
    judged, consistency = judge(stored)
    for scene, identity in zip(out, judged, strict=True):
        scene.identity = identity
    return StoryboardOut(
        id=board.id,
        title=board.title,
        description=board.description,
        scenes=out,
        consistency=consistency,
        not_scored=sum(1 for s, (_, raw) in zip(scenes, stored, strict=True) if s.image_id and raw is None),
        created_at=board.created_at,
        updated_at=board.updated_at,
    )


@writes
def create_storyboard(session: Session, *, owner_id: int, data: StoryboardIn) -> StoryboardOut:
    """A new, empty storyboard."""
    board = Storyboard(owner_id=owner_id, title=data.title, description=data.description)
    session.add(board)
    session.flush()
    return to_out(session, board)


def list_storyboards(session: Session, *, owner_id: int) -> list[StoryboardSummary]:
    """The user's storyboards, most recently changed first."""
    count = (
        select(func.count(StoryboardScene.id)).where(StoryboardScene.storyboard_id == Storyboard.id).scalar_subquery()
    )
    rows = session.execute(
        select(Storyboard, count).where(Storyboard.owner_id == owner_id).order_by(Storyboard.updated_at.desc())
    ).all()
    return [
        StoryboardSummary(id=b.id, title=b.title, description=b.description, scene_count=n, updated_at=b.updated_at)
        for b, n in rows
    ]


@writes
def get_storyboard(session: Session, *, owner_id: int, storyboard_id: int) -> StoryboardOut:
    """One storyboard with its scenes."""
    return to_out(session, _for_write(session, owner_id, storyboard_id))


@writes
def update_storyboard(session: Session, *, owner_id: int, storyboard_id: int, data: StoryboardUpdate) -> StoryboardOut:
    """Change the title or description."""
    board = _for_write(session, owner_id, storyboard_id)
    for field in ("title", "description"):
        if getattr(data, field) is not None:
            setattr(board, field, getattr(data, field))
    board.updated_at = now()
    return to_out(session, board)


@writes
def delete_storyboard(session: Session, *, owner_id: int, storyboard_id: int) -> None:
    """Delete a storyboard and its scenes (the jobs and images stay)."""
    board = _for_write(session, owner_id, storyboard_id)
    for scene in scene_rows(session, board.id):
        session.delete(scene)
    session.flush()  # the scenes first: they point at the board
    session.delete(board)


def _generation_job(session: Session, owner_id: int, job_id: int) -> Job:
    job = jobs.get_row(session, owner_id=owner_id, job_id=job_id)
    if job.type != "generation":
        raise Invalid(f"job {job_id} is a {job.type} job; a scene comes from a generation job")
    if job.status in ("failed", "canceled"):
        raise Invalid(f"job {job_id} {job.status} and has no images; generate the scene again and add that job")
    return job


@writes
def add_scene(session: Session, *, owner_id: int, storyboard_id: int, data: SceneIn) -> StoryboardOut:
    """Append a scene made from one of the user's generation jobs."""
    board = _for_write(session, owner_id, storyboard_id)
    job = _generation_job(session, owner_id, data.job_id)
    scenes = scene_rows(session, board.id)
    if len(scenes) >= MAX_SCENES:
        raise Invalid(f"a storyboard has at most {MAX_SCENES} scenes; start a second one")
    scene = StoryboardScene(
        storyboard_id=board.id,
        position=len(scenes),
        title=data.title,
        notes=data.notes,
        job_id=job.id,
        image_id=default_image(session, job.id),
    )
    session.add(scene)
    board.updated_at = now()
    return to_out(session, board)


@writes
def update_scene(
    session: Session, *, owner_id: int, storyboard_id: int, scene_id: int, data: SceneUpdate
) -> StoryboardOut:
    """Change a scene's title, notes or chosen image (one of its job's images)."""
    board = _for_write(session, owner_id, storyboard_id)
    scene = _scene_row(session, board, scene_id)
    if data.image_id is not None:
        image = session.scalar(select(Image).where(Image.id == data.image_id, Image.owner_id == owner_id))
        if image is None or image.job_id != scene.job_id:
            raise Invalid(
                f"image {data.image_id} is not one of the images of this scene's job {scene.job_id}; "
                "pick one of that job's images"
            )
        scene.image_id = image.id
    if data.title is not None:
        scene.title = data.title
    if data.notes is not None:
        scene.notes = data.notes
    board.updated_at = now()
    return to_out(session, board)


@writes
def reorder(session: Session, *, owner_id: int, storyboard_id: int, scene_ids: list[int]) -> StoryboardOut:
    """Put the scenes in the given order; the list must hold every scene id exactly once."""
    board = _for_write(session, owner_id, storyboard_id)
    scenes = {s.id: s for s in scene_rows(session, board.id)}
    twice = sorted(i for i, n in Counter(scene_ids).items() if n > 1)
    unknown = [i for i in scene_ids if i not in scenes]
    missing = [i for i in scenes if i not in scene_ids]
    problems = []
    if twice:
        problems.append(f"given more than once: {_ids(twice)}")
    if unknown:
        problems.append(f"not scenes of storyboard {board.id}: {_ids(unknown)}")
    if missing:
        problems.append(f"missing: {_ids(missing)}")
    if problems:
        raise Invalid("scene_ids must list every scene of the storyboard exactly once; " + "; ".join(problems))
    for position, scene_id in enumerate(scene_ids):
        scenes[scene_id].position = position
    board.updated_at = now()
    return to_out(session, board)


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


@writes
def move_scene(session: Session, *, owner_id: int, storyboard_id: int, scene_id: int, direction: str) -> StoryboardOut:
    """Swap a scene with its neighbour above or below; at either end nothing moves."""
    board = _for_write(session, owner_id, storyboard_id)
    scene = _scene_row(session, board, scene_id)
    order = [s.id for s in scene_rows(session, board.id)]
    i = order.index(scene.id)
    j = i - 1 if direction == "up" else i + 1
    if 0 <= j < len(order):
        order[i], order[j] = order[j], order[i]
    return reorder(session, owner_id=owner_id, storyboard_id=storyboard_id, scene_ids=order)


@writes
def remove_scene(session: Session, *, owner_id: int, storyboard_id: int, scene_id: int) -> StoryboardOut:
    """Remove a scene; the ones after it move up (its job and images stay)."""
    board = _for_write(session, owner_id, storyboard_id)
    session.delete(_scene_row(session, board, scene_id))
    session.flush()
    for position, scene in enumerate(scene_rows(session, board.id)):
        scene.position = position
    board.updated_at = now()
    return to_out(session, board)


@writes
def reroll_scene(session: Session, *, owner_id: int, storyboard_id: int, scene_id: int) -> tuple[StoryboardOut, JobOut]:
    """Queue the scene's request again with a new random seed and point the scene at that job; its image is
    chosen again once the new job has images."""
    board = _for_write(session, owner_id, storyboard_id)
    scene = _scene_row(session, board, scene_id)
    old = jobs.get_row(session, owner_id=owner_id, job_id=scene.job_id)
    request = jobs.request_of(old)
    for x in request.loras:
        try:
            library.get_lora_row(session, owner_id=owner_id, lora_id=x.lora_id)
        except NotFound:  # deleted since: say so now, not as a failed job later
            raise Invalid(
                f"this scene uses LoRA {x.name or x.lora_id}, which is no longer in your library; "
                "generate the scene anew with the LoRAs you have"
            ) from None
    used = {str(request.seed)} | {s for (s,) in session.execute(select(Image.seed).where(Image.job_id == old.id))}
    seed = pick_seed(None)
    while str(seed) in used:  # "new seed" is a promise: never hand back the picture the user re-rolled
        seed = pick_seed(None)
    # The stored request is the one generation.resolve validated (styles expanded, versions pinned), so the
    # recipe is exactly the old one; only the seed changes.
    again = request.model_copy(update={"seed": seed})
    job = generation.add_generation(
        session, owner_id=owner_id, request=again, family=old.family, memory_mb=old.memory_mb, why="re-roll"
    )
    scene.job_id, scene.image_id = job.id, None
    board.updated_at = now()
    return to_out(session, board), jobs.to_out(session, job)
