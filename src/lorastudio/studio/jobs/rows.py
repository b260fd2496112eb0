"""Jobs: the row is the truth. Submit, claim (atomic), renew the lease, report progress, finish.

A worker claims with one UPDATE ... RETURNING inside BEGIN IMMEDIATE (SQLite; PostgreSQL adds FOR UPDATE
SKIP LOCKED), so of two workers woken for one job exactly one gets it. A running job whose lease has
expired (its worker died) is claimable again and resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from lorastudio.errors import Conflict, Invalid
from lorastudio.studio import credits
from lorastudio.studio.db import Job, get_owned, now, write_transaction, writes
from lorastudio.studio.jobs import registry
from lorastudio.studio.jobs.payloads import (
    JOB_TYPES,
    Checkpoint,
    ExportJob,
    ExportResult,
    GenerationJob,
    GenerationResult,
    JobProgress,
    TrainingJob,
    TrainingResult,
    dump,
    progress_of,
    request_of,
    result_of,
)
from lorastudio.studio.jobs.schemas import JobOut

log = logging.getLogger("lorastudio.jobs")
FINAL = ("succeeded", "failed", "canceled")
MAX_ATTEMPTS = 5  # a job that kills its worker this often is failed, not retried forever


def to_out(session: Session, job: Job, balance: int | None = None) -> JobOut:
    """The API form of a job row, with its credits and the owner's balance."""
    out = JobOut.model_validate(
        {k: getattr(job, k) for k in JobOut.model_fields if hasattr(job, k)}
        | {"request": request_of(job), "progress": progress_of(job), "result": result_of(job)}
        | {"checkpoint_step": Checkpoint.model_validate(job.checkpoint).step if job.checkpoint else None}
    )
    out.credits = credits.job_credits(session, job)
    out.balance = credits.balance(session, job.owner_id) if balance is None else balance
    return out


def add_job(
    session: Session,
    *,
    owner_id: int,
    request: TrainingJob | GenerationJob | ExportJob,
    family: str | None = None,
    memory_mb: int | None = None,
    devices: int = 1,
) -> Job:
    """A new pending job; `family`, `memory_mb` (on each device) and `devices` (how many it runs on at once)
    say which workers can run it (None: any). The workers are woken once the session commits (the studio's
    session factory does that), never before."""
    if devices < 1:
        raise Invalid(f"a job runs on at least 1 device, not {devices}", setting="devices")
    job = Job(
        owner_id=owner_id,
        type=request.type,
        request=dump(request),
        status="pending",
        progress={},
        family=family,
        memory_mb=memory_mb,
        devices=devices,
    )
    session.add(job)
    session.info.setdefault("wake", set()).add(request.type)
    return job


def get_row(session: Session, *, owner_id: int, job_id: int) -> Job:
    """The row, or NotFound (another user's job is not found either)."""
    return get_owned(session, Job, job_id, owner_id, "job")


def get_job(session: Session, *, owner_id: int, job_id: int, stale_seconds: float | None = None) -> JobOut:
    """One job; with `stale_seconds`, a pending one also says why it waits when no live worker can run it."""
    job = get_row(session, owner_id=owner_id, job_id=job_id)
    out = to_out(session, job)
    if job.status == "pending" and stale_seconds is not None:
        out.waiting = waiting_reason(session, job, stale_seconds=stale_seconds)
    return out


def waiting_reason(session: Session, job: Job, *, stale_seconds: float) -> str | None:
    """Why no worker takes this pending job, or None when one could (it is just queued)."""
    alive, able = registry.who_can_run(session, job, stale_seconds=stale_seconds)
    if alive and able:
        return None
    if not alive:
        return "no worker is running: start one with `lorastudio worker` (or `lorastudio serve` with workers)"
    need = [f"the {job.type} queue"] + ([f"{job.family} models"] if job.family else [])
    if (job.devices or 1) > 1:
        need.append(f"{job.devices} devices")
    if job.memory_mb:
        need.append(f"{job.memory_mb / 1024:.0f} GB of device memory" + (" on each" if (job.devices or 1) > 1 else ""))
    return (
        f"none of the {alive} running worker(s) can run it: it needs {', '.join(need)}; start a worker "
        "that has them, or lower the resolution or batch size"
    )


def list_jobs(
    session: Session, *, owner_id: int, status: str | None = None, type: str | None = None, limit: int = 50
) -> list[JobOut]:
    """The user's newest jobs, of one status and one type when given."""
    query = select(Job).where(Job.owner_id == owner_id)
    if status:
        query = query.where(Job.status == status)
    if type:
        query = query.where(Job.type == type)
    have = credits.balance(session, owner_id)
    return [to_out(session, j, have) for j in session.scalars(query.order_by(Job.id.desc()).limit(limit))]


@writes
def cancel(session: Session, *, owner_id: int, job_id: int) -> JobOut:
    """Cancel: a pending job at once; a running one stops at its next step boundary."""
    job = get_row(session, owner_id=owner_id, job_id=job_id)
    if job.status in FINAL:
        raise Conflict(f"job {job_id} already {job.status}; nothing to cancel")
    job.cancel_requested = True
    if job.status == "pending":
        job.status, job.finished_at = "canceled", now()
        _settle(session, job)
    return to_out(session, job)


def claim(factory: sessionmaker[Session], **can) -> int | None:
    """Atomically take the oldest job this worker can run; its id or None (`claim_devices`'s arguments)."""
    claimed = claim_devices(factory, **can)
    return claimed[0] if claimed else None


def claim_devices(
    factory: sessionmaker[Session],
    *,
    worker: str,
    lease_seconds: int,
    types: tuple[str, ...],
    families: tuple[str, ...] | None = None,
    memory_mb: int | None = None,
    free_devices: int = 1,
    total_devices: int | None = None,
) -> tuple[int, int] | None:
    """Atomically take the oldest job this worker can run (pending, or running with an expired lease): of
    its types, of a family it loads (None: any), needing no more memory than each device has and no more
    devices than are free; (its id, its devices) or None.

    A worker with `total_devices` (default: `free_devices`) takes jobs in order: when the oldest job it could
    run needs more devices than are free now, it takes none until they are, so a stream of 1-device jobs
    never starves a 4-device one on a 4-device worker (its devices empty out for it instead)."""
    total = max(free_devices, total_devices or 0)
    if free_devices < 1:
        return None
    with write_transaction(factory) as session:
        t = now()
        lock = " FOR UPDATE SKIP LOCKED" if session.get_bind().dialect.name == "postgresql" else ""
        kinds = ", ".join(f"'{k}'" for k in types if k in JOB_TYPES) or "''"
        can = ""
        params = {
            "worker": worker,
            "expires": t + timedelta(seconds=lease_seconds),
            "now": t,
            "free": free_devices,
            "total": total,
        }
        if families is not None:
            names = {f"f{i}": f for i, f in enumerate(families)}
            listed = ", ".join(f":{k}" for k in names) or "''"
            can += f" AND (family IS NULL OR family IN ({listed}))"
            params |= names
        if memory_mb is not None:
            can += " AND (memory_mb IS NULL OR memory_mb <= :memory)"
            params["memory"] = memory_mb
        row = session.execute(
            text(
                "UPDATE jobs SET status = 'running', lease_owner = :worker, lease_expires_at = :expires, "
                "attempts = attempts + 1, started_at = COALESCE(started_at, :now) "
                "WHERE devices <= :free AND id = (SELECT id FROM jobs WHERE cancel_requested = false AND type IN ("
                + kinds
                + ")"
                + can
                + " AND devices <= :total"
                " AND (status = 'pending' OR (status = 'running' AND lease_expires_at < :now)) "
                "ORDER BY id LIMIT 1" + lock + ") RETURNING id, devices"
            ),
            params,
        ).first()
        return (row[0], row[1]) if row else None


def renew(factory: sessionmaker[Session], *, job_id: int, worker: str, lease_seconds: int) -> bool:
    """Extend our lease; False when the job is no longer ours (expired and taken, or finished)."""
    with write_transaction(factory) as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == worker, Job.status == "running")
            .values(lease_expires_at=now() + timedelta(seconds=lease_seconds))
        )
        return result.rowcount == 1


def report(factory: sessionmaker[Session], *, job_id: int, worker: str, progress: JobProgress) -> bool:
    """Write progress (only while the job is ours); also says whether a cancel was asked for."""
    # BEGIN IMMEDIATE: a read-then-write transaction that another writer (the heartbeat) overtakes would
    # fail at once with "database is locked" instead of waiting its turn.
    with write_transaction(factory) as session:
        job = session.get(Job, job_id)
        if job is None or job.lease_owner != worker or job.status != "running":
            return True  # not ours any more: stop
        job.progress = progress.model_dump(mode="json", exclude_defaults=True)
        return bool(job.cancel_requested)


def keep_checkpoint(factory: sessionmaker[Session], *, job_id: int, worker: str, checkpoint: Checkpoint) -> bool:
    """Name the training's newest stored checkpoint on its row (only while the job is ours); False if it is not."""
    with write_transaction(factory) as session:
        job = session.get(Job, job_id)
        if job is None or job.lease_owner != worker or job.status != "running":
            return False
        job.checkpoint = checkpoint.model_dump()
        return True


def finish(
    session: Session,
    *,
    job_id: int,
    worker: str,
    status: str,
    result: TrainingResult | GenerationResult | ExportResult | None = None,
    error: tuple[str, str] | None = None,
) -> bool:
    """Record the outcome, only if the job is still ours (the caller's transaction commits)."""
    job = session.get(Job, job_id)
    if job is None or job.lease_owner != worker or job.status != "running":
        return False
    job.status, job.result, job.finished_at = status, dump(result) if result else None, now()
    job.lease_expires_at = None
    if error:
        job.error_code, job.error_message = error
    _settle(session, job)
    return True


def release(factory: sessionmaker[Session], *, job_id: int, worker: str) -> bool:
    """Give a running job back to the queue at once (its worker is stopping); False when it is no longer ours.

    It is pending again with no lease, so any worker claims it now rather than after the lease runs out. Its
    checkpoint is kept: the next worker resumes from `job.checkpoint`. The attempt is not counted, since
    MAX_ATTEMPTS is for jobs that kill their worker, and a restart or a deploy is not the job's fault. A job
    whose cancel was asked for ends canceled instead: nobody would claim it again."""
    with write_transaction(factory) as session:
        job = session.get(Job, job_id)
        if job is None or job.lease_owner != worker or job.status != "running":
            return False
        job.lease_expires_at = None
        if job.cancel_requested:
            job.status, job.finished_at = "canceled", now()
            _settle(session, job)
        else:
            job.status, job.lease_owner, job.attempts = "pending", None, max(0, job.attempts - 1)
        return True


def _settle(session: Session, job: Job) -> None:
    """Settle the job's hold for the status it ended in: a finished training pays the minutes it ran at the
    price quoted, at most what was held; anything else pays nothing (the caller's transaction commits)."""
    if job.credit_hold_id is None:
        return
    note, spent = f"{job.type} job {job.id} {job.status}", 0
    try:
        request, result = request_of(job), result_of(job)
    except ValidationError:  # a row no model reads: its hold is released all the same, never left held
        log.error("job %s: its request or result cannot be read; its hold is released", job.id)
        request = result = None
    if job.status == "succeeded" and isinstance(request, TrainingJob) and isinstance(result, TrainingResult):
        rate, seconds, gpus = request.credits_per_gpu_minute, result.seconds or 0.0, job.devices or 1
        spent = min(credits.cost_of(seconds * gpus, rate), request.estimate.credits[1])  # each GPU's minutes
        on = f" x {gpus} GPUs" if gpus > 1 else ""
        note += f": ran {seconds / 60:.2f} min{on} x {rate:.2f} credits/min = {spent} credits"
    credits.settle(session, hold_id=job.credit_hold_id, spent=spent, note=note)


def reap(factory: sessionmaker[Session]) -> dict:
    """Housekeeping for dead workers: canceled-and-expired jobs end as canceled, jobs that used up their
    attempts end as failed; the rest of the expired ones are claimable as they are. Returns counts."""
    with write_transaction(factory) as session:
        t = now()
        expired = (Job.status == "running") & (Job.lease_expires_at < t)
        canceled = list(session.scalars(select(Job).where(expired & Job.cancel_requested)))
        for job in canceled:
            job.status, job.finished_at = "canceled", t
        failed = list(session.scalars(select(Job).where(expired & (Job.attempts >= MAX_ATTEMPTS))))
        for job in failed:
            job.status, job.finished_at, job.error_code = "failed", t, "worker_lost"
            job.error_message = (
                f"the job stopped its worker {MAX_ATTEMPTS} times (out of memory or a crash); "
                "lower its settings and submit it again"
            )
        for job in canceled + failed:
            _settle(session, job)  # nothing is charged for work that did not finish
        session.flush()
        waiting = session.scalar(
            select(Job.lease_expires_at).where(Job.status == "running").order_by(Job.lease_expires_at).limit(1)
        )
    return {"canceled": len(canceled), "failed": len(failed), "next_expiry": waiting}
