"""/healthz, /readyz and /metrics: what a load balancer and Prometheus read, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

from sqlalchemy import text

from lorastudio.studio.db import make_engine
from lorastudio.studio.workers import Worker
from tests.studio.conftest import BOTH_DATABASES


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.M)
    assert found, f"{name} {labels} not in:\n{text}"
    return float(found.group(1))


@BOTH_DATABASES
def test_health_ready_and_metrics_follow_the_jobs(client, studio_settings):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    first = client.get("/metrics")
    assert first.headers["content-type"].startswith("text/plain") and "lorastudio_queue_depth" in first.text
    assert _metric(first.text, "lorastudio_queue_depth", queue="generation") == 0
    for seed in (1, 2):
        body = {"prompt": "johnhero, kungfustyle", "steps": 2, "seed": seed}
        assert client.post("/api/v1/generations", json=body).status_code == 201
    waiting = client.get("/metrics").text
    assert _metric(waiting, "lorastudio_queue_depth", queue="generation") == 2
    assert _metric(waiting, "lorastudio_jobs", type="generation", status="pending") == 2
    Worker(studio_settings, name="in-process").drain()
    done = client.get("/metrics").text
    assert _metric(done, "lorastudio_queue_depth", queue="generation") == 0
    assert _metric(done, "lorastudio_jobs", type="generation", status="succeeded") == 2
    assert _metric(done, "lorastudio_jobs_finished_total", type="generation") == 2
    assert _metric(done, "lorastudio_job_seconds_total", type="generation") > 0
    assert _metric(done, "lorastudio_workers_busy") == 0 and _metric(done, "lorastudio_gpu_minutes_total") == 0


def test_not_ready_says_why(client, studio_settings):
    engine = make_engine(studio_settings)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    behind = client.get("/readyz")
    assert behind.status_code == 503 and "run `lorastudio db upgrade`" in behind.json()["reason"]
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    broken = client.get("/readyz")
    assert broken.status_code == 503 and "does not answer" in broken.json()["reason"]
    assert client.get("/healthz").status_code == 200  # alive, only not ready
