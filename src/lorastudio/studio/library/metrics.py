"""The library's metrics as they happen: ratings, usage (once per generation job per LoRA) and the kept / judged
verdicts behind the success rate; counters on the row, changed in the transaction of what they count."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.studio.db import JobLora, Lora, Rating, writes
from lorastudio.studio.library.catalog import get_lora_row, to_out
from lorastudio.studio.library.schemas import LoraOut


@writes
def rate(session: Session, *, owner_id: int, lora_id: int, stars: int) -> LoraOut:
    """One rating per user (a new one replaces the old); the average and count follow."""
    lora = get_lora_row(session, owner_id=owner_id, lora_id=lora_id)
    old = session.scalar(select(Rating).where(Rating.lora_id == lora_id, Rating.user_id == owner_id))
    if old is None:
        session.add(Rating(lora_id=lora_id, user_id=owner_id, stars=stars))
        lora.rating_count += 1
        lora.rating_sum += stars
    else:
        lora.rating_sum += stars - old.stars
        old.stars = stars
    lora.rating_avg = lora.rating_sum / lora.rating_count
    return to_out(session, lora)


def record_usage(session: Session, *, job_id: int, lora_ids: list[int]) -> None:
    """Count one use per LoRA for a generation job (a retried job does not count twice)."""
    for lora_id in dict.fromkeys(lora_ids):
        if session.scalar(select(JobLora.id).where(JobLora.job_id == job_id, JobLora.lora_id == lora_id)):
            continue
        session.add(JobLora(job_id=job_id, lora_id=lora_id))
        lora = session.get(Lora, lora_id)
        if lora is not None:
            lora.usage_count += 1


def record_verdict(session: Session, *, job_id: int, old: str | None, new: str | None) -> None:
    """Move the kept/judged counters of every LoRA the image's job used from verdict old to new."""
    judged = (new is not None) - (old is not None)
    kept = (new == "kept") - (old == "kept")
    for lora_id in session.scalars(select(JobLora.lora_id).where(JobLora.job_id == job_id)):
        lora = session.get(Lora, lora_id)
        lora.judged_count += judged
        lora.kept_count += kept
        lora.success_rate = lora.kept_count / lora.judged_count if lora.judged_count else None


def my_ratings(session: Session, *, owner_id: int, lora_ids: list[int]) -> dict[int, int]:
    """The stars this user gave each of these LoRAs (those they rated)."""
    rows = session.execute(
        select(Rating.lora_id, Rating.stars).where(Rating.user_id == owner_id, Rating.lora_id.in_(lora_ids))
    )
    return dict(rows.tuples().all())
