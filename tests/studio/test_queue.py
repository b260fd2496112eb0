"""The wake-up queue on Redis and on PostgreSQL (real servers on loopback): a wake-up reaches a worker; with
the queue down a submit still succeeds and the job still runs (the worker polls the table)."""

from __future__ import annotations

import time

from lorastudio.config import Settings
from lorastudio.studio.jobs import make_queue, wake
from lorastudio.studio.workers import Worker
from lorastudio.web.app import create_app
from tests.servers import free_port

SCENE = {"prompt": "johnhero fighting", "seed": 5, "steps": 2}


def _settings(tmp_path, **extra) -> Settings:
    return Settings(home=tmp_path / "home", device="cpu", lease_seconds=3, heartbeat_seconds=0.2, **extra)


def _deliver(settings: Settings, worker: Worker) -> None:
    """What a worker's consumer does with one message: dequeue it and run the task."""
    consumer_side = make_queue(settings, worker)
    task = consumer_side.dequeue()
    assert task is not None, "the wake-up did not arrive"
    consumer_side.execute(task)


def _submit_and_wake(settings: Settings):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(settings))
    job = client.post("/api/v1/generations", json=SCENE)
    assert job.status_code == 201, job.text
    return client, job.json()


def test_a_wake_up_through_redis_runs_the_job(redis_server, tmp_path):
    settings = _settings(tmp_path, queue_url=redis_server.url)
    make_queue(settings).flush()
    client, job = _submit_and_wake(settings)  # the API route wakes the workers through Redis
    _deliver(settings, Worker(settings, name="redis-worker"))
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "succeeded"


def test_a_wake_up_through_postgresql_runs_the_job(postgres, tmp_path):
    url = postgres.new_database()
    settings = _settings(tmp_path, database_url=url, queue_url=url)
    client, job = _submit_and_wake(settings)
    _deliver(settings, Worker(settings, name="pg-worker"))
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "succeeded"


def test_with_the_queue_down_jobs_are_taken_and_still_run(tmp_path):
    from lorastudio.studio.jobs import detect

    settings = _settings(tmp_path, queue_url=f"redis://127.0.0.1:{free_port()}/0", poll_seconds=0.3)
    t0 = time.monotonic()
    assert wake(make_queue(settings)) is False  # logged, not raised
    assert time.monotonic() - t0 < 5
    from fastapi.testclient import TestClient

    client = TestClient(create_app(settings))
    job = client.post("/api/v1/generations", json=SCENE | {"steps": 30}).json()
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "pending"
    worker = Worker(settings, name="poller", caps=detect("cpu", memory_gb=None, families=("toyworld",)))
    worker.start_presence()  # no wake-up will come: the worker's own look at the table finds the job
    seen_running = False
    try:
        deadline = time.monotonic() + 60
        while (status := client.get(f"/api/v1/jobs/{job['id']}").json()["status"]) != "succeeded":
            assert time.monotonic() < deadline and status in ("pending", "running"), status
            # The worker goes on beating while the job it found runs (the poll does not run it in the
            # thread that beats), so the registry shows what it runs.
            (row,) = client.get("/api/v1/workers").json()
            seen_running |= row["current_job_id"] == job["id"] and row["state"] == "alive"
            time.sleep(0.05)
    finally:
        worker.stop_presence()
    assert seen_running
    assert client.get(f"/api/v1/jobs/{job['id']}").json()["attempts"] == 1
