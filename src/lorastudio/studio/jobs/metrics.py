"""What /metrics reports, read from the job table at scrape time: the table is the truth shared by every
HTTP process and worker, so no process keeps counters of its own that the others would not see."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lorastudio.studio.db import Job, now
from lorastudio.studio.jobs import registry
from lorastudio.studio.jobs.payloads import JOB_TYPES


@dataclass
class Snapshot:
    """One reading of the studio's jobs."""

    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, status) -> count
    queue_depth: dict[str, int] = field(default_factory=dict)  # type -> pending jobs
    seconds: dict[str, tuple[int, float]] = field(default_factory=dict)  # type -> (finished jobs, seconds run)
    workers_busy: int = 0  # workers holding a live lease
    workers: int = 0  # registered workers heard from within a lease's time
    gpu_minutes: float = 0.0  # GPU minutes training jobs held (minutes x devices), whatever their end


def snapshot(session: Session, *, stale_seconds: float) -> Snapshot:
    """Count jobs by type and status, the queues, the workers alive and busy, and the time jobs ran."""
    snap = Snapshot()
    snap.workers = registry.count_alive(session, stale_seconds=stale_seconds)
    for kind, status, count in session.execute(
        select(Job.type, Job.status, func.count()).group_by(Job.type, Job.status)
    ):
        snap.jobs[(kind, status)] = count
    snap.queue_depth = {kind: snap.jobs.get((kind, "pending"), 0) for kind in JOB_TYPES}
    live = select(func.count(func.distinct(Job.lease_owner))).where(
        Job.status == "running", Job.lease_expires_at > now()
    )
    snap.workers_busy = session.scalar(live) or 0
    ran = select(Job.type, Job.started_at, Job.finished_at, Job.devices).where(
        Job.started_at.is_not(None), Job.finished_at.is_not(None)
    )
    totals = {kind: [0, 0.0] for kind in JOB_TYPES}
    gpu_seconds = 0.0
    for kind, started, finished, devices in session.execute(ran):
        entry = totals.setdefault(kind, [0, 0.0])
        entry[0] += 1
        seconds = max(0.0, (finished - started).total_seconds())
        entry[1] += seconds
        if kind == "training":
            gpu_seconds += seconds * (devices or 1)  # a training on N GPUs holds all N
    snap.seconds = {kind: (n, s) for kind, (n, s) in totals.items()}
    snap.gpu_minutes = gpu_seconds / 60
    return snap
