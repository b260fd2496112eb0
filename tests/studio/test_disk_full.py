"""A full disk under LORASTUDIO_HOME, for real: a 30 MB tmpfs filled up. Writes answer 507 with words that say
where to free space (JSON and pages alike), /readyz says not ready and why; once space is freed both recover."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from fastapi.testclient import TestClient

from lorastudio.config import Settings
from lorastudio.web.app import create_app
from tests.studio.conftest import upload_refs


@pytest.fixture
def small_disk(tmp_path):
    """A 30 MB tmpfs of its own (unmounted after the test)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI and the dev machines run as root)")
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not let a tmpfs be mounted: {mounted.stderr.strip()}")
    yield where
    # Lazy: the test's database connections may still hold files open there.
    subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(path) -> None:
    """Write to path until the disk refuses with ENOSPC."""
    chunk = b"\0" * 2**20
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with open(path, "ab", buffering=0) as filler:  # the last partial MB too
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def _says_disk_full(message: str, home) -> None:
    assert message.startswith("the studio's disk is full"), message
    assert "free space under the studio's home folder (LORASTUDIO_HOME)" in message, message
    assert str(home) not in message  # the words name the setting, not the server's folder


def test_a_full_disk_answers_507_in_words_and_not_ready_then_recovers(small_disk, john_refs):
    home = small_disk / "home"
    settings = Settings(home=home, device="cpu", lease_seconds=3, heartbeat_seconds=0.5, min_free_mb=5)
    client = TestClient(create_app(settings))
    character = client.post("/api/v1/characters", json={"name": "John", "description": "red gi"}).json()
    dataset = client.post(
        "/api/v1/datasets",
        json={"name": "John", "kind": "character", "trigger": "johnhero", "character_id": character["id"]},
    ).json()
    assert client.get("/readyz").json() == {"status": "ready"}

    _fill(small_disk / "filler")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    reason = ready.json()["reason"]
    assert "MB of disk is free" in reason and "LORASTUDIO_MIN_FREE_MB is 5" in reason and str(home) not in reason

    upload = upload_refs(client, dataset["id"], john_refs)
    assert upload.status_code == 507, upload.text
    assert upload.json()["error"]["code"] == "disk_full"
    _says_disk_full(upload.json()["error"]["message"], home)
    made = client.post("/api/v1/characters", json={"name": "Kara", "description": "blue gi"})  # SQLite's file
    assert made.status_code == 507 and made.json()["error"]["code"] == "disk_full", made.text
    _says_disk_full(made.json()["error"]["message"], home)

    # The page face: the same words, on a page with the site's header.
    one = sorted(john_refs.iterdir())[0]
    page = client.post(f"/train/{dataset['id']}/images", files=[("files", (one.name, one.read_bytes()))])
    assert page.status_code == 507 and page.headers["content-type"].startswith("text/html")
    assert "the studio&#39;s disk is full" in page.text and str(home) not in page.text
    assert '<nav aria-label="Main navigation">' in page.text
    fragment = client.post(
        f"/train/{dataset['id']}/images",
        files=[("files", (one.name, one.read_bytes()))],
        headers={"HX-Request": "true"},
    )
    assert fragment.status_code == 507 and "disk is full" in fragment.text and "<nav" not in fragment.text

    (small_disk / "filler").unlink()
    assert client.get("/readyz").json() == {"status": "ready"}
    assert upload_refs(client, dataset["id"], john_refs).status_code == 200
    assert client.post("/api/v1/characters", json={"name": "Kara", "description": "blue gi"}).status_code == 201


def test_a_training_that_fills_the_disk_ends_failed_in_words_with_its_credits_back(small_disk, john_refs):
    from lorastudio.studio.workers import Worker

    home = small_disk / "home"
    settings = Settings(home=home, device="cpu", lease_seconds=30, heartbeat_seconds=0.5, min_free_mb=0)
    client = TestClient(create_app(settings), client=("127.0.0.1", 50000))
    dataset = client.post("/api/v1/datasets", json={"name": "John", "kind": "character", "trigger": "johnhero"}).json()
    assert upload_refs(client, dataset["id"], john_refs).status_code == 200
    start = client.get("/api/v1/credits").json()["balance"]
    body = {"dataset_id": dataset["id"], "overrides": {"steps": 40, "checkpoint_every": 2, "sample_every": 0}}
    job = client.post("/api/v1/trainings", json=body).json()
    _fill(small_disk / "filler")
    # Leave a few MB: the job starts, and its first checkpoint (LoRA and optimizer state) does not fit.
    os.truncate(small_disk / "filler", (small_disk / "filler").stat().st_size - 4 * 2**20)
    Worker(settings, name="in-process@cpu").drain()  # must end the job, not die or leave it running
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["status"] == "failed" and done["error_code"] == "disk_full", done
    assert done["error_message"].startswith("the studio's disk is full") and str(home) not in done["error_message"]
    assert done["credits"]["charged"] == 0 and done["credits"]["released"] == done["credits"]["held"]
    assert client.get("/api/v1/credits").json()["balance"] == start
    assert not (home / "jobs" / f"job-{job['id']}").exists()  # the run that filled the disk was freed
