"""Auto-captioning a dataset: `submit_captioning` checks everything at submit (the dataset is the user's, the
captioner is known and usable here, there is something to caption) and queues a caption job; a worker runs
it with `run_captioning`, which reads the images from the blob store and writes each new caption, marked
"auto", in the commit that ends the job.

A caption job holds no credits: it is a few seconds of a small model (or of the toy world's detectors), far
below what the studio prices. It needs no model family either, so any worker can run it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.config import Settings
from lorastudio.engine import (
    CAPTIONER_LABELS,
    CAPTIONERS,
    TOY_CAPTIONER,
    ImageRejected,
    caption_images,
    captioner_for,
    check_kind,
    finish_caption,
    identity_of,
    leave_out_words,
    open_image,
)
from lorastudio.errors import Conflict, Invalid
from lorastudio.studio import datasets, jobs
from lorastudio.studio.captioning.schemas import AutoCaptionIn, CaptionerOut
from lorastudio.studio.db import Character, Dataset, DatasetImage, Job, write_transaction
from lorastudio.studio.jobs import CaptionJob, CaptionResult, JobOut, JobProgress, JobRun, check_key, once

BATCH = 8  # images captioned between two progress reports (and two stop checks)


def captioner_choices(settings: Settings) -> list[CaptionerOut]:
    """The captioners this studio offers, each with whether it can caption here and, if not, how to add it."""
    out = []
    for name in CAPTIONERS:
        try:
            found = captioner_for(name, settings)
        except Invalid as exc:
            out.append(CaptionerOut(name=name, label=CAPTIONER_LABELS[name], available=False, note=str(exc)))
            continue
        label = CAPTIONER_LABELS[name] + ("" if name == TOY_CAPTIONER else f": {found.name}")
        out.append(CaptionerOut(name=name, label=label, available=True))
    return out


def _captioner_name(name: str, settings: Settings) -> str:
    """The captioner's name as known (case aside), or Invalid: unknown, or not usable on this studio."""
    key = name.strip().lower()
    if key not in CAPTIONERS:
        raise Invalid(f"unknown captioner {name[:40]!r}; use one of: {', '.join(CAPTIONERS)}", setting="captioner")
    captioner_for(key, settings)  # a model that is not configured (or cannot be read) is refused now
    return key


def submit_captioning(
    session: Session,
    settings: Settings,
    *,
    owner_id: int,
    dataset_id: int,
    captioner: str,
    overwrite: bool = False,
    leave_out_identity: bool = True,
    idempotency_key: str | None = None,
) -> JobOut:
    """Queue a caption job for one of the user's datasets (no credits held). Refused now, in words, when it
    could not succeed; a second one while the first runs is a Conflict. A repeated Idempotency-Key answers the
    first submit's job."""
    check_key(idempotency_key)
    name = _captioner_name(captioner, settings)
    body = AutoCaptionIn(captioner=name, overwrite=overwrite, leave_out_identity=leave_out_identity)

    def make() -> JobOut:
        dataset = datasets.get_row(session, owner_id=owner_id, dataset_id=dataset_id)
        if not any(image.blob for image in datasets.images_of(session, dataset.id)):
            raise Invalid(f"dataset {dataset.id} has no images to caption; upload some first")
        running = active_captioning(session, owner_id=owner_id, dataset_id=dataset.id)
        if running is not None:
            raise Conflict(f"dataset {dataset.id} is being captioned already (job {running.id}); wait for it to end")
        request = CaptionJob(
            dataset_id=dataset.id, captioner=name, overwrite=overwrite, leave_out_identity=leave_out_identity
        )
        job = jobs.add_job(session, owner_id=owner_id, request=request)
        session.flush()
        return jobs.to_out(session, job)

    # The dataset is in the scope: the same key sent for another dataset is not that dataset's job.
    scope = f"datasets/{dataset_id}/captions"
    return once(session, user_id=owner_id, key=idempotency_key, scope=scope, body=body, out=JobOut, make=make)


def active_captioning(session: Session, *, owner_id: int, dataset_id: int) -> JobOut | None:
    """The dataset's caption job still pending or running (a reloaded page follows it again), if any."""
    rows = session.scalars(
        select(Job)
        .where(Job.owner_id == owner_id, Job.type == "caption", Job.status.in_(("pending", "running")))
        .order_by(Job.id.desc())
    )
    for job in rows:
        if jobs.request_of(job).dataset_id == dataset_id:
            return jobs.to_out(session, job)
    return None


def _replaceable(image: DatasetImage, overwrite: bool) -> bool:
    """A caption the job may write over: an empty one, one written for the user before, or any when asked."""
    return overwrite or not (image.caption or "").strip() or image.caption_source == "auto"


def run_captioning(run: JobRun) -> None:
    """Caption a claimed job's dataset: each image from the blob store, progress per batch; the captions and
    the job's end are one commit, and a caption the user wrote meanwhile is kept."""
    job, settings, store, request = run.job, run.settings, run.store, run.request
    with run.factory() as session:  # read what the run needs, then hold no transaction while it captions
        dataset = session.get(Dataset, request.dataset_id)
        if dataset is None or dataset.owner_id != job.owner_id:
            raise Invalid(f"dataset {request.dataset_id} was deleted; the job cannot run")
        trigger, kind = dataset.trigger, dataset.kind
        character = session.get(Character, dataset.character_id) if dataset.character_id else None
        description = character.description if character is not None else ""
        rows = datasets.images_of(session, dataset.id)
        todo = [(i.id, i.blob) for i in rows if _replaceable(i, request.overwrite)]
        kept = len(rows) - len(todo)
    captioner = captioner_for(request.captioner, settings)
    opened, failed = [], 0
    for image_id, blob in todo:
        try:
            if not blob or not store.exists(blob):
                raise ImageRejected("empty_file", "nothing was stored")
            opened.append((image_id, open_image(store.path(blob), max_pixels=settings.max_image_pixels).image))
        except ImageRejected:
            failed += 1  # left as it was: the dataset's own verdict already says what is wrong with it
    leave_out: list[str] = []
    if request.leave_out_identity and check_kind(kind).character:
        leave_out = leave_out_words(description, identity_of(captioner, [img for _, img in opened], trigger))
    total = len(opened)
    run.progress(JobProgress(phase="caption", total=total, message=f"captioning with {captioner.name}"), True)
    written: dict[int, str] = {}
    for start in range(0, total, BATCH):
        if run.should_stop():
            with write_transaction(run.factory) as session:
                run.finish(session, "canceled", None)
            return
        batch = opened[start : start + BATCH]
        for (image_id, _), raw in zip(batch, caption_images(captioner, [img for _, img in batch]), strict=True):
            if raw is None:
                failed += 1
            else:
                written[image_id] = finish_caption(raw, trigger=trigger, kind=kind, leave_out=leave_out)
        done = min(start + BATCH, total)
        run.progress(JobProgress(phase="caption", step=done, total=total, message=f"{done} of {total} captioned"), True)
    with write_transaction(run.factory) as session:
        captioned = 0
        for image_id, text in written.items():
            image = session.get(DatasetImage, image_id)
            if image is None or not _replaceable(image, request.overwrite):
                kept += image is not None  # removed meanwhile, or the user wrote one while it ran: theirs stays
                continue
            image.caption, image.caption_source = text[:1000], "auto"
            captioned += 1
        result = CaptionResult(captioned=captioned, kept=kept, failed=failed, captioner=captioner.name)
        run.finish(session, "succeeded", result)
