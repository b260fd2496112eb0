"""The worker registry: each worker process announces its name and capabilities and then beats every few
seconds; a worker not heard from for a lease's time is gone (its job's lease runs out the same way, so
another worker resumes it). The registry is for people and metrics; claims read the job table only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lorastudio import __version__
from lorastudio.config import Settings
from lorastudio.studio.db import Job, User, WorkerRow, now, write_transaction
from lorastudio.studio.jobs.capabilities import Capabilities
from lorastudio.studio.jobs.schemas import WorkerOut

HIDDEN_HOST = "(hidden)"


@dataclass(frozen=True)
class Viewer:
    """Who looks at the workers: a user sees what runs their own jobs; an operator sees every job and host."""

    user_id: int | None
    operator: bool


# Whoever reads the database directly (the CLI on a studio machine) sees everything in it anyway.
OPERATOR = Viewer(user_id=None, operator=True)


def viewer_for(session: Session, settings: Settings, *, user_id: int) -> Viewer:
    """The Viewer for a user: an operator when named in settings.operators, or always with accounts off."""
    if not settings.accounts:
        return Viewer(user_id=user_id, operator=True)
    names = {name.strip().lower() for name in settings.operators.split(",") if name.strip()}
    user = session.get(User, user_id)
    return Viewer(user_id=user_id, operator=user is not None and user.name in names)


def register(factory: sessionmaker[Session], *, name: str, caps: Capabilities, queues: tuple[str, ...]) -> None:
    """Announce a worker (a restart under the same name takes its row over)."""
    with write_transaction(factory) as session:
        row = session.scalar(select(WorkerRow).where(WorkerRow.name == name))
        if row is None:
            row = WorkerRow(name=name, jobs_done=0)
            session.add(row)
        row.host, row.device, row.memory_mb = caps.host, caps.device, caps.memory_mb
        row.devices = [{"index": d.index, "name": d.name, "memory_mb": d.memory_mb} for d in caps.devices] or None
        row.families, row.queues, row.version = list(caps.families), list(queues), __version__
        row.started_at = row.seen_at = now()
        row.stopped_at = row.current_job_id = row.current_job_ids = None


def beat(
    factory: sessionmaker[Session],
    *,
    name: str,
    job_id: int | None = None,
    finished: bool = False,
    job_ids: tuple[int, ...] | None = None,
) -> None:
    """Record that the worker is alive and what it is running (`job_ids`, or the one `job_id`); `finished`
    counts a job it ended."""
    running = sorted(job_ids) if job_ids is not None else ([job_id] if job_id is not None else [])
    with write_transaction(factory) as session:
        row = session.scalar(select(WorkerRow).where(WorkerRow.name == name))
        if row is None:
            return  # deleted by hand while running: it re-registers at its next start
        row.seen_at, row.current_job_id, row.current_job_ids = now(), running[0] if running else None, running
        if finished:
            row.jobs_done += 1


def stopped(factory: sessionmaker[Session], *, name: str) -> None:
    """A worker that exits cleanly says so (a killed one just stops beating)."""
    with write_transaction(factory) as session:
        row = session.scalar(select(WorkerRow).where(WorkerRow.name == name))
        if row is not None:
            row.stopped_at, row.current_job_id, row.current_job_ids = now(), None, []


def alive_filter(stale_seconds: float):
    """The condition for workers heard from recently and not stopped."""
    return (WorkerRow.seen_at > now() - timedelta(seconds=stale_seconds)) & WorkerRow.stopped_at.is_(None)


def count_alive(session: Session, *, stale_seconds: float) -> int:
    """Workers alive now."""
    return session.scalar(select(func.count()).select_from(WorkerRow).where(alive_filter(stale_seconds))) or 0


def list_workers(session: Session, *, stale_seconds: float, viewer: Viewer) -> list[WorkerOut]:
    """Every registered worker, alive ones first, with what it can run and what it runs now; a viewer who
    is no operator sees only their own jobs and no host names."""
    cutoff = now() - timedelta(seconds=stale_seconds)
    rows = session.scalars(select(WorkerRow).order_by(WorkerRow.name)).all()
    running = [j for row in rows for j in (row.current_job_ids or [row.current_job_id]) if j is not None]
    own = set()
    if running and not viewer.operator:
        own = set(session.scalars(select(Job.id).where(Job.id.in_(running), Job.owner_id == viewer.user_id)))
    out = []
    for row in rows:
        state = "stopped" if row.stopped_at else ("alive" if row.seen_at > cutoff else "lost")
        update: dict = {"state": state}
        if not viewer.operator:
            # Host names map the studio's machines for an attacker; another user's job id says what they do.
            update |= {"host": HIDDEN_HOST, "name": _without_host(row.name, row.host)}
            mine = [j for j in row.current_job_ids or [row.current_job_id] if j is not None and j in own]
            update["current_job_id"] = mine[0] if mine else None
            update["current_job_ids"] = mine
        out.append(WorkerOut.model_validate(row).model_copy(update=update))
    return sorted(out, key=lambda w: (w.state != "alive", w.name))


def _without_host(name: str, host: str) -> str:
    """A worker's name with the host name it starts with hidden (the default name is HOST-PID@DEVICE)."""
    if not host:
        return name
    return re.sub(rf"^{re.escape(host)}(?=$|[-@_.:])", HIDDEN_HOST, name)


def who_can_run(session: Session, job: Job, *, stale_seconds: float) -> tuple[int, int]:
    """(alive workers, alive workers able to run this job): why a pending job may be waiting."""
    alive = session.scalars(select(WorkerRow).where(alive_filter(stale_seconds))).all()
    able = [w for w in alive if can_run(w, job)]
    return len(alive), len(able)


def device_count(worker: WorkerRow) -> int:
    """How many devices a worker hands jobs (one for a row from before workers reported them)."""
    return len(worker.devices or ()) or 1


def most_devices(session: Session, *, stale_seconds: float) -> int:
    """The most devices any live worker has (0: no worker is alive): the largest job the studio can run now."""
    alive = session.scalars(select(WorkerRow).where(alive_filter(stale_seconds))).all()
    return max((device_count(w) for w in alive), default=0)


def can_run(worker: WorkerRow, job: Job) -> bool:
    """The same rule the claim applies in SQL: queue, family, memory (on each device) and device count."""
    return (
        job.type in worker.queues
        and (job.family is None or job.family in worker.families)
        and (job.memory_mb is None or job.memory_mb <= worker.memory_mb)
        and (job.devices or 1) <= device_count(worker)
    )
