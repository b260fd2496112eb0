"""Studio fixtures: a fresh data dir per test, the app through an in-process HTTP client, toy-world
references, and real worker processes (`python -m lorastudio.cli worker`) started and stopped here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lorastudio.config import Settings
from lorastudio.engine.toyworld.consistency import character_references
from lorastudio.engine.toyworld.world import HELD_OUT_CHARACTERS

FAST = {"LORASTUDIO_DEVICE": "cpu", "LORASTUDIO_LEASE_SECONDS": "3", "LORASTUDIO_HEARTBEAT_SECONDS": "0.5"}


@pytest.fixture(scope="session")
def postgres():
    """The test session's PostgreSQL server (started on first use)."""
    from tests import pg

    if (why := pg.missing()) is not None:
        pytest.skip(why)
    server = pg.Postgres()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    """The test session's Redis (started on first use; a test may stop and restart it)."""
    from tests import servers

    if (why := servers.redis_missing()) is not None:
        pytest.skip(why)
    server = servers.Redis()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def s3_server():
    """The test session's S3-compatible server (moto, in its own process)."""
    from tests import servers

    server = servers.S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """AWS credentials of the test server in the environment (boto3 reads them there, as in production)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture
def studio_settings(request, tmp_path) -> Settings:
    """A fresh studio; on SQLite, or on a fresh PostgreSQL database when a test is parametrised with
    `@pytest.mark.parametrize("studio_settings", ["sqlite", "postgresql"], indirect=True)`."""
    url = (
        request.getfixturevalue("postgres").new_database()
        if getattr(request, "param", "sqlite") == "postgresql"
        else None
    )
    return Settings(home=tmp_path / "home", device="cpu", lease_seconds=3, heartbeat_seconds=0.5, database_url=url)


BOTH_DATABASES = pytest.mark.parametrize("studio_settings", ["sqlite", "postgresql"], indirect=True)
# The same, with the SQLite run marked slow (`make test-slow`): for the heaviest tests, where PostgreSQL (what a
# team runs, and the harder case for locks) keeps the check in the suite and the suite keeps under 10 minutes.
POSTGRESQL_IN_THE_SUITE = pytest.mark.parametrize(
    "studio_settings", [pytest.param("sqlite", marks=pytest.mark.slow), "postgresql"], indirect=True
)


@pytest.fixture
def client(studio_settings):
    from lorastudio.web.app import create_app

    # A loopback peer, as a browser on the studio's own machine is (/metrics answers loopback clients only).
    with TestClient(create_app(studio_settings), client=("127.0.0.1", 50000)) as c:
        yield c


@pytest.fixture(scope="session")
def john_refs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("john")
    character_references(HELD_OUT_CHARACTERS["johnhero"], folder, n=20, seed=7)
    return folder


def upload_refs(client, dataset_id: int, folder: Path, extra: list | None = None):
    files = [("files", (p.name, p.read_bytes())) for p in sorted(folder.iterdir())] + (extra or [])
    return client.post(f"/api/v1/datasets/{dataset_id}/images", files=files)


def john_dataset(client, refs: Path) -> tuple[int, int]:
    character = client.post("/api/v1/characters", json={"name": "Action Hero John", "description": "red gi"}).json()
    dataset = client.post(
        "/api/v1/datasets",
        json={"name": "John", "kind": "character", "trigger": "johnhero", "character_id": character["id"]},
    ).json()
    assert upload_refs(client, dataset["id"], refs).status_code == 200
    return character["id"], dataset["id"]


def wait_for(client, job_id: int, done, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if done(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s: {job}")


class Workers:
    """Worker processes of one studio home."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str) -> subprocess.Popen:
        env = os.environ | FAST | {"LORASTUDIO_HOME": str(self.settings.home), "OMP_NUM_THREADS": "1"}
        log = open(self.settings.home / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "lorastudio.cli", "worker", "--name", name, "--threads", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def workers(studio_settings):
    pool = Workers(studio_settings)
    yield pool
    pool.stop()
