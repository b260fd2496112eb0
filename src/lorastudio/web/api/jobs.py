"""Training and generation jobs, their progress (also as Server-Sent Events), images and recipes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.sse import EventSourceResponse

from lorastudio.errors import NotFound
from lorastudio.studio import generation, jobs, training
from lorastudio.studio.credits import Estimate
from lorastudio.studio.generation import ApplyRecipeIn, GenerationIn, ImageOut, ImageVerdictIn, RecipeIn, RecipeOut
from lorastudio.studio.jobs import JobOut, WorkerOut
from lorastudio.studio.training import TrainingIn
from lorastudio.web import urls
from lorastudio.web.api.files import file_response
from lorastudio.web.state import Digits, Id, ReadSessionDep, SessionDep, StudioDep, UserDep

router = APIRouter(tags=["Jobs"])
POLL = 0.25  # seconds between looks at the job row while streaming its progress


@router.post("/trainings/estimate", summary="Minutes, credits and dollars a training would take")
def estimate(data: TrainingIn, session: SessionDep, studio: StudioDep, user: UserDep) -> Estimate:
    return training.estimate_training(session, studio.settings, owner_id=user, data=data)


IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=200,
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="1-200 visible ASCII characters (a UUID is a good one): retrying with the same key and body "
        "returns the first response instead of a second job; the same key with another body is a 409",
    ),
]


@router.post("/trainings", status_code=201, summary="Train a LoRA from a dataset (a job; holds its credits)")
def train(
    data: TrainingIn, session: SessionDep, studio: StudioDep, user: UserDep, idempotency_key: IdempotencyKey = None
) -> JobOut:
    return training.submit_training(session, studio.settings, owner_id=user, data=data, idempotency_key=idempotency_key)


@router.post("/generations", status_code=201, summary="Generate a scene (a job)")
def generate(
    data: GenerationIn, session: SessionDep, studio: StudioDep, user: UserDep, idempotency_key: IdempotencyKey = None
) -> JobOut:
    return generation.submit_generation(
        session, studio.settings, owner_id=user, data=data, idempotency_key=idempotency_key
    )


@router.get("/jobs", summary="Your newest jobs")
def list_jobs(
    session: SessionDep,
    user: UserDep,
    status: Annotated[
        Literal["pending", "running", "succeeded", "failed", "canceled"] | None, Query(description="Only this status")
    ] = None,
    type: Annotated[jobs.JobType | None, Query(description="Only this job type")] = None,
) -> list[JobOut]:
    return jobs.list_jobs(session, owner_id=user, status=status, type=type)


@router.get("/jobs/{job_id}", summary="A job's status, progress and result")
async def get_job(job_id: Id, session: ReadSessionDep, studio: StudioDep, user: UserDep) -> JobOut:
    return jobs.get_job(session, owner_id=user, job_id=job_id, stale_seconds=studio.settings.lease_seconds)


@router.get(
    "/workers",
    tags=["System"],
    summary="The studio's workers: what each can run, what it runs now (your own jobs; hosts for operators)",
)
def list_workers(session: ReadSessionDep, studio: StudioDep, user: UserDep) -> list[WorkerOut]:
    viewer = jobs.viewer_for(session, studio.settings, user_id=user)
    return jobs.list_workers(session, stale_seconds=studio.settings.lease_seconds, viewer=viewer)


@router.post("/jobs/{job_id}/cancel", summary="Cancel (a running job stops at its next step)")
def cancel(job_id: Id, session: SessionDep, user: UserDep) -> JobOut:
    return jobs.cancel(session, owner_id=user, job_id=job_id)


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "progress events, then one end event"}},
    summary="Progress as Server-Sent Events: 'progress' while it runs, then one 'end' with the job",
)
def events(job_id: Id, studio: StudioDep, user: UserDep) -> EventSourceResponse:
    with studio.factory() as session:
        jobs.get_row(session, owner_id=user, job_id=job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        last = None
        while True:
            with studio.factory() as session:
                job = jobs.get_job(session, owner_id=user, job_id=job_id)
            progress = job.progress
            snapshot = (job.status, progress.step, progress.phase, len(progress.previews), len(progress.scores))
            if snapshot != last:
                last = snapshot
                data = {"status": job.status} | progress.model_dump(mode="json")  # losses thinned by the trainer
                yield f"event: progress\ndata: {json.dumps(data)}\n\n"
            if job.status in jobs.FINAL:
                yield f"event: end\ndata: {job.model_dump_json()}\n\n"
                return
            await asyncio.sleep(POLL)

    return EventSourceResponse(stream(), headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@router.get(
    "/jobs/{job_id}/previews/{index}",
    summary="A training's sample preview (0: the oldest kept)",
    response_class=FileResponse,
)
def preview(
    job_id: Id,
    index: Annotated[int, Path(ge=0, le=63, description="Which preview"), Digits],
    session: SessionDep,
    studio: StudioDep,
    user: UserDep,
):
    previews = jobs.progress_of(jobs.get_row(session, owner_id=user, job_id=job_id)).previews
    if index >= len(previews):
        raise NotFound(f"job {job_id} has {len(previews)} preview(s)")
    return file_response(studio.store, previews[index], "image/png", f"job-{job_id}-preview-{index}.png")


@router.get(
    "/jobs/{job_id}/renders/{step}/{index}",
    summary="A training's evaluation render: checkpoint `step` (0: without the LoRA), prompt `index`",
    response_class=FileResponse,
)
def eval_render(
    job_id: Id,
    step: Annotated[int, Path(ge=0, le=1_000_000, description="The checkpoint's step"), Digits],
    index: Annotated[int, Path(ge=0, le=63, description="Which evaluation prompt"), Digits],
    session: SessionDep,
    studio: StudioDep,
    user: UserDep,
):
    renders = dict(jobs.progress_of(jobs.get_row(session, owner_id=user, job_id=job_id)).eval_renders)
    if step not in renders:
        raise NotFound(f"job {job_id} has no evaluated checkpoint at step {step}")
    if index >= len(renders[step]):
        raise NotFound(f"the checkpoint at step {step} of job {job_id} has {len(renders[step])} render(s)")
    return file_response(studio.store, renders[step][index], "image/png", f"job-{job_id}-step-{step}-{index}.png")


@router.get("/jobs/{job_id}/images", summary="The images a generation job made")
def job_images(job_id: Id, session: SessionDep, user: UserDep) -> list[ImageOut]:
    return urls.fill(generation.list_images(session, owner_id=user, job_id=job_id))


@router.get("/images/{image_id}", summary="One image's parameters and verdict")
def get_image(image_id: Id, session: SessionDep, user: UserDep) -> ImageOut:
    return urls.fill(generation.image_out(generation.get_image_row(session, owner_id=user, image_id=image_id)))


@router.get("/images/{image_id}/file", summary="The PNG (with its parameters inside)", response_class=FileResponse)
def image_file(image_id: Id, session: SessionDep, studio: StudioDep, user: UserDep):
    image = generation.get_image_row(session, owner_id=user, image_id=image_id)
    return file_response(studio.store, image.blob, "image/png", f"image-{image_id}-{image.seed}.png")


@router.put("/images/{image_id}/verdict", summary="Keep or reject an image (feeds the LoRAs' success rate)")
def verdict(image_id: Id, data: ImageVerdictIn, session: SessionDep, user: UserDep) -> ImageOut:
    return urls.fill(generation.set_verdict(session, owner_id=user, image_id=image_id, verdict=data.verdict))


@router.get("/recipes", tags=["Recipes"], summary="Your saved LoRA combinations")
def list_recipes(session: SessionDep, user: UserDep) -> list[RecipeOut]:
    return generation.list_recipes(session, owner_id=user)


@router.post("/recipes", status_code=201, tags=["Recipes"], summary="Save a LoRA combination")
def save_recipe(data: RecipeIn, studio: StudioDep, session: SessionDep, user: UserDep) -> RecipeOut:
    return generation.save_recipe(session, studio.settings, owner_id=user, data=data)


@router.delete("/recipes/{recipe_id}", status_code=204, tags=["Recipes"], summary="Delete a recipe")
def delete_recipe(recipe_id: Id, session: SessionDep, user: UserDep) -> None:
    generation.delete_recipe(session, owner_id=user, recipe_id=recipe_id)


@router.post("/recipes/{recipe_id}/apply", status_code=201, tags=["Recipes"], summary="A new scene from a recipe")
def apply_recipe(recipe_id: Id, data: ApplyRecipeIn, session: SessionDep, studio: StudioDep, user: UserDep) -> JobOut:
    scene = generation.request_from_recipe(session, owner_id=user, recipe_id=recipe_id, data=data)
    return generation.submit_generation(session, studio.settings, owner_id=user, data=scene)
