"""Workers register what they can run; a job goes only to a worker that can run it (queue, family,
memory); a pending job nobody can run says why; /api/v1/workers, `lorastudio workers` and /metrics see them."""

from __future__ import annotations

import json

from lorastudio.studio import jobs
from lorastudio.studio.accounts import local_user
from lorastudio.studio.db import Job, make_engine, session_factory
from lorastudio.studio.jobs import Capabilities, generation_memory_mb, training_memory_mb
from tests.jobrequests import sample_request
from tests.studio.test_health import _metric

CARD_8GB = Capabilities(device="cuda: an 8 GB card", memory_mb=8 * 1024, families=("sd15", "sdxl"), host="a")
CARD_48GB = Capabilities(device="cuda: RTX 6000 Ada", memory_mb=48 * 1024, families=("sd15", "sdxl"), host="b")
SD15_ONLY = Capabilities(device="cuda: 24 GB", memory_mb=24 * 1024, families=("sd15",), host="c")


def test_memory_needed_grows_with_the_job_and_built_in_models_run_anywhere():
    sdxl_hires = training_memory_mb("sdxl", "/models/sdxl.safetensors", resolution=1024, batch_size=1)
    sd15 = training_memory_mb("sd15", "/models/sd15.safetensors", resolution=512, batch_size=1)
    assert sdxl_hires > 8 * 1024 > sd15  # the guide's SDXL hi-res job never fits an 8 GB card; SD1.5 at 512 does
    assert training_memory_mb("sd15", "x", resolution=768, batch_size=2) > sd15
    assert training_memory_mb("sdxl", "x", resolution=1024, batch_size=1, gradient_checkpointing=True) < sdxl_hires
    assert generation_memory_mb("sdxl", "x", width=1024, height=1024, batch=4) > generation_memory_mb(
        "sdxl", "x", width=1024, height=1024, batch=1
    )
    assert training_memory_mb("toyworld", "toyworld", resolution=32, batch_size=4) is None


def _jobs(factory, owner: int, specs: list[tuple[str, str | None, int | None]]) -> list[int]:
    with factory() as session:
        rows = [
            jobs.add_job(session, owner_id=owner, request=sample_request(t), family=f, memory_mb=m) for t, f, m in specs
        ]
        session.commit()
        return [r.id for r in rows]


def _claim(factory, name: str, caps: Capabilities, types=("training", "generation")) -> int | None:
    return jobs.claim(
        factory, worker=name, lease_seconds=30, types=types, families=caps.families, memory_mb=caps.memory_mb
    )


def test_a_job_goes_only_to_a_worker_that_can_run_it(client, studio_settings):
    factory = session_factory(make_engine(studio_settings))
    with factory() as session:
        owner = local_user(session)
    sdxl_hires, sd15_gen, sdxl_gen, any_job = _jobs(
        factory,
        owner,
        [
            ("training", "sdxl", 20_000),
            ("generation", "sd15", 3_000),
            ("generation", "sdxl", 9_000),
            ("training", None, None),
        ],
    )
    # The 8 GB card skips the SDXL hi-res training (the oldest job) and takes what fits.
    assert _claim(factory, "small", CARD_8GB) == sd15_gen
    assert _claim(factory, "small", CARD_8GB, types=("generation",)) is None  # sdxl_gen needs 9 GB
    assert _claim(factory, "sd15-only", SD15_ONLY) == any_job
    assert _claim(factory, "sd15-only", SD15_ONLY) is None
    assert _claim(factory, "big", CARD_48GB) == sdxl_hires
    assert _claim(factory, "big", CARD_48GB) == sdxl_gen
    # A worker without declared capabilities (the in-process one of tests and the CLI) takes anything.
    assert jobs.claim(factory, worker="any", lease_seconds=30, types=("training",)) is None


def test_workers_register_and_a_job_nobody_can_run_says_why(client, studio_settings, monkeypatch):
    factory = session_factory(make_engine(studio_settings))
    with factory() as session:
        owner = local_user(session)
    (hires,) = _jobs(factory, owner, [("training", "sdxl", 20_000)])
    waiting = client.get(f"/api/v1/jobs/{hires}").json()["waiting"]
    assert "no worker is running" in waiting and "lorastudio worker" in waiting
    jobs.register(factory, name="gpu-a-0", caps=CARD_8GB, queues=("training", "generation"))
    jobs.register(factory, name="gpu-b-0", caps=SD15_ONLY, queues=("generation",))
    waiting = client.get(f"/api/v1/jobs/{hires}").json()["waiting"]
    assert "none of the 2 running worker(s) can run it" in waiting and "sdxl" in waiting and "20 GB" in waiting
    page = client.get(f"/jobs/{hires}").text
    assert "none of the 2 running worker(s)" in page
    jobs.register(factory, name="gpu-c-0", caps=CARD_48GB, queues=("training",))
    assert client.get(f"/api/v1/jobs/{hires}").json()["waiting"] is None  # one can: it is only queued
    listed = client.get("/api/v1/workers").json()
    assert [w["name"] for w in listed] == ["gpu-a-0", "gpu-b-0", "gpu-c-0"]
    assert listed[0]["memory_mb"] == 8192 and listed[1]["families"] == ["sd15"] and listed[0]["state"] == "alive"
    assert _metric(client.get("/metrics").text, "lorastudio_workers") == 3
    jobs.stopped(factory, name="gpu-b-0")
    with factory() as session:  # gpu-a-0 has not been heard from for longer than a lease
        row = session.query(jobs.WorkerRow).filter_by(name="gpu-a-0").one()
        row.seen_at = row.seen_at.replace(year=2020)
        session.commit()
    states = {w["name"]: w["state"] for w in client.get("/api/v1/workers").json()}
    assert states == {"gpu-a-0": "lost", "gpu-b-0": "stopped", "gpu-c-0": "alive"}
    assert _metric(client.get("/metrics").text, "lorastudio_workers") == 1
    from typer.testing import CliRunner

    from lorastudio.cli import app

    monkeypatch.setenv("LORASTUDIO_HOME", str(studio_settings.home))
    shown = CliRunner().invoke(app, ["workers", "--json"])
    assert shown.exit_code == 0, shown.output
    assert {w["name"]: w["state"] for w in json.loads(shown.output)} == states
    with factory() as session:
        assert session.get(Job, hires).status == "pending"
