"""Health and metrics for whoever runs the studio: /healthz (the process answers), /readyz (and its database
is reachable and current, its files answer, its disk has room), /metrics (Prometheus text, read from the job
table at each scrape; for loopback clients, the metrics token, or anyone when the settings say so)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from lorastudio.config import Settings
from lorastudio.errors import DiskFull, Forbidden, LoraStudioError
from lorastudio.studio import jobs
from lorastudio.studio.db import schema_behind
from lorastudio.studio.disk import check_room
from lorastudio.web.clients import client_of
from lorastudio.web.state import ReadSessionDep, StudioDep

router = APIRouter(tags=["System"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers with a current schema, the file store answers, the disk has room",
)
def readyz(session: ReadSessionDep, studio: StudioDep) -> JSONResponse:
    # The queue is left out on purpose: with it down the studio still takes jobs (workers poll the table).
    problem = schema_behind(session)
    if not problem:
        try:
            studio.store.check()
        except LoraStudioError as exc:
            problem = str(exc)
    problem = problem or disk_space_problem(studio.settings)
    if problem:
        return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ready"})


def disk_space_problem(settings: Settings) -> str | None:
    """Why the disk under the studio's home has too little room (below min_free_mb), or None."""
    try:
        check_room(settings)
    except DiskFull as exc:
        return str(exc)
    except OSError as exc:
        return f"the free space under the studio's home (LORASTUDIO_HOME) cannot be read: {exc.strerror or exc}"
    return None


class _Jobs:
    """A collector over one snapshot of the job table."""

    def __init__(self, snap: jobs.Snapshot) -> None:
        self.snap = snap

    def collect(self):
        snap = self.snap
        by_status = GaugeMetricFamily("lorastudio_jobs", "Jobs by type and status", labels=["type", "status"])
        for (kind, status), count in sorted(snap.jobs.items()):
            by_status.add_metric([kind, status], count)
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
        yield from (by_status, depth, seconds, done, busy, alive, gpu)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (loopback clients, `Authorization: Bearer <metrics token>`, or anyone if public)",
)
def prometheus(request: Request, studio: StudioDep) -> PlainTextResponse:
    may_read_metrics(request, studio.settings)
    with studio.factory() as session:
        snap = jobs.snapshot(session, stale_seconds=studio.settings.lease_seconds)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Jobs(snap))
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def may_read_metrics(request: Request, settings: Settings) -> None:
    """Raise Forbidden, saying which setting opens /metrics, unless this client may read it."""
    if settings.metrics_public or client_of(request, settings.trusted_proxies).is_loopback:
        return
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if settings.metrics_token and scheme.lower() == "bearer":
        # Constant time: the comparison must not tell a scraper how much of its guess was right.
        if hmac.compare_digest(secret.strip().encode(), settings.metrics_token.encode()):
            return
        raise Forbidden("this metrics token is wrong: send `Authorization: Bearer <LORASTUDIO_METRICS_TOKEN>`")
    raise Forbidden(
        "/metrics is served only to clients on this machine: set LORASTUDIO_METRICS_TOKEN and have the scraper "
        "send `Authorization: Bearer <token>`, or set LORASTUDIO_METRICS_PUBLIC=true to serve it to anyone; a "
        "reverse proxy's own address goes in LORASTUDIO_TRUSTED_PROXIES, so its clients are told apart"
    )
