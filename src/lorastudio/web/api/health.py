"""Health and metrics for whoever runs the studio: /healthz (the process answers), /readyz (and its database
is reachable and current), /metrics (Prometheus text, read from the job table at each scrape)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from lorastudio.errors import LoraStudioError
from lorastudio.studio import metrics
from lorastudio.studio.db import schema_behind
from lorastudio.web.state import ReadSessionDep, StudioDep

router = APIRouter(tags=["System"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers with a current schema and the file store answers")
def readyz(session: ReadSessionDep, studio: StudioDep) -> JSONResponse:
    # The queue is left out on purpose: with it down the studio still takes jobs (workers poll the table).
    problem = schema_behind(session)
    if not problem:
        try:
            studio.store.check()
        except LoraStudioError as exc:
            problem = str(exc)
    if problem:
        return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ready"})


class _Jobs:
    """A collector over one snapshot of the job table."""

    def __init__(self, snap: metrics.Snapshot) -> None:
        self.snap = snap

    def collect(self):
        snap = self.snap
        jobs = GaugeMetricFamily("lorastudio_jobs", "Jobs by type and status", labels=["type", "status"])
        for (kind, status), count in sorted(snap.jobs.items()):
            jobs.add_metric([kind, status], count)
        depth = GaugeMetricFamily("lorastudio_queue_depth", "Jobs waiting for a worker", labels=["queue"])
        for kind, count in snap.queue_depth.items():
            depth.add_metric([kind], count)
        seconds = CounterMetricFamily("lorastudio_job_seconds", "Time finished jobs ran", labels=["type"])
        done = CounterMetricFamily("lorastudio_jobs_finished", "Jobs that ran and ended", labels=["type"])
        for kind, (count, total) in snap.seconds.items():
            seconds.add_metric([kind], total)
            done.add_metric([kind], count)
        busy = GaugeMetricFamily("lorastudio_workers_busy", "Workers holding a live lease on a job")
        busy.add_metric([], snap.workers_busy)
        alive = GaugeMetricFamily("lorastudio_workers", "Registered workers with a recent heartbeat")
        alive.add_metric([], snap.workers)
        gpu = CounterMetricFamily("lorastudio_gpu_minutes", "Minutes training jobs ran")
        gpu.add_metric([], snap.gpu_minutes)
        yield from (jobs, depth, seconds, done, busy, alive, gpu)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def prometheus(studio: StudioDep) -> PlainTextResponse:
    with studio.factory() as session:
        snap = metrics.snapshot(session, stale_seconds=studio.settings.lease_seconds)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Jobs(snap))
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
