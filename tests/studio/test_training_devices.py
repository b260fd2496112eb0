"""A training on N devices, as the studio plans, quotes, refuses and queues it (a real SQLite studio, no worker
process): the plan keeps the images seen (steps / N, learning rate x sqrt(N)) unless the user set them, a
request for more devices than any live worker has is refused in words, the estimate is faster by the stated
speed-up and bills every device's minutes, and the job row and page carry the devices."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lorastudio.engine import DATA_PARALLEL_EFFICIENCY, DeviceInfo, get_preset
from lorastudio.studio import jobs
from lorastudio.studio.credits import cost_of, estimate, record_timing
from lorastudio.studio.credits.estimates import speed_up
from lorastudio.studio.db import Dataset, Job, make_engine, session_factory
from lorastudio.studio.jobs import Capabilities
from lorastudio.studio.training.service import _config
from tests.studio.conftest import john_dataset

RATE = 10 / 3


@pytest.fixture
def factory(client, studio_settings):
    return session_factory(make_engine(studio_settings))


@pytest.fixture
def dataset_id(client, john_refs) -> int:
    return john_dataset(client, john_refs)[1]


def _worker(factory, name: str, devices: int) -> None:
    """A live worker that reports `devices` devices (registered as `lorastudio worker` registers)."""
    found = tuple(DeviceInfo(index=i, name="cpu", memory_mb=64_000) for i in range(devices))
    caps = Capabilities(device="cpu", memory_mb=64_000, families=("toyworld",), host="here", devices=found)
    jobs.register(factory, name=name, caps=caps, queues=("training",))


def test_n_devices_divide_the_steps_and_scale_the_learning_rate_unless_set(client, studio_settings, dataset_id):
    one = client.post("/api/v1/trainings/estimate", json={"dataset_id": dataset_id}).json()
    body = {"dataset_id": dataset_id, "overrides": {"devices": 3}}
    three = client.post("/api/v1/trainings/estimate", json=body).json()
    assert three["devices"] == 3 and three["steps"] == math.ceil(one["steps"] / 3)
    notes = " ".join(three["breakdown"])
    assert "on 3 GPUs: each step takes 3 batches" in notes and "sqrt(3)" in notes and "the same images seen" in notes

    job = client.post("/api/v1/trainings", json=body).json()
    plan = job["request"]["plan"]
    preset = get_preset(plan["preset"], "character", plan["family"])
    assert plan["devices"] == 3 and plan["steps"] == math.ceil(preset.steps / 3)
    assert plan["learning_rate"] == pytest.approx(preset.learning_rate * math.sqrt(3), rel=1e-3)
    assert plan["warmup_steps"] == min(100, plan["steps"] // 10)  # the warm-up follows the steps it runs

    mine = {"devices": 3, "steps": 40, "learning_rate": 0.001}
    kept = client.post("/api/v1/trainings", json={"dataset_id": dataset_id, "overrides": mine}).json()
    assert {k: kept["request"]["plan"][k] for k in mine} == mine  # what the user set is used as set
    words = " ".join(kept["request"]["estimate"]["breakdown"])
    assert "40 steps as you set them" in words and "as you set it" in words


def test_more_devices_than_any_live_worker_has_are_refused_naming_the_setting(client, factory, dataset_id):
    body = {"dataset_id": dataset_id, "overrides": {"devices": 2, "steps": 8}}
    # No worker running at all: queued, as every job is (the one that starts may have them); the page says why.
    waiting = client.post("/api/v1/trainings", json=body).json()
    assert waiting["status"] == "pending"
    assert "no worker is running" in client.get(f"/api/v1/jobs/{waiting['id']}").json()["waiting"]

    _worker(factory, "small", devices=1)
    for url in ("/api/v1/trainings/estimate", "/api/v1/trainings"):
        refused = client.post(url, json=body)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["setting"] == "devices" and "no worker has 2 devices; the largest has 1" in error["message"]
    assert client.post("/api/v1/trainings", json=body | {"overrides": {"steps": 8}}).status_code == 201

    _worker(factory, "big", devices=2)
    assert client.post("/api/v1/trainings", json=body).status_code == 201
    four = client.post("/api/v1/trainings", json=body | {"overrides": {"devices": 4, "steps": 8}})
    assert "the largest has 2" in four.json()["error"]["message"]


def test_the_estimate_is_faster_by_the_stated_speed_up_and_bills_every_device(factory):
    work = dict(
        kind="character",
        images=20,
        steps=4000,
        batch_size=1,
        resolution=768,
        family="sd15",
        credits_per_minute=RATE,
        dollars_per_gpu_hour=3.0,
    )
    with factory() as session:
        one = estimate(session, **work)
        two = estimate(session, **work | {"steps": 2000, "devices": 2})  # the plan's steps on 2 devices
    assert speed_up(1) == 1 and speed_up(2) == pytest.approx(1 + DATA_PARALLEL_EFFICIENCY)
    overhead = 1.0  # loading and caching: once, not faster on more devices
    expected = (one.minutes[1] / 1.2 - overhead) / speed_up(2) + overhead  # the same images, 1.9x as fast
    assert two.minutes[1] / 1.2 == pytest.approx(expected, abs=0.1) and two.devices == 2
    assert two.credits[1] == cost_of(two.minutes[1] * 60 * 2, RATE)  # 2 GPU-minutes each minute
    assert two.dollars == pytest.approx(2 * one.dollars * two.minutes[1] / one.minutes[1], rel=0.02)
    assert "on each of its GPUs (on 2 GPUs" in two.rule and two.breakdown[-1] == two.rule
    assert any("1.90x as fast" in line and "assumed" in line for line in two.breakdown)


def test_a_measured_multi_device_run_is_quoted_the_time_it_took(factory):
    with factory() as session:
        # 100 steps on 2 devices took 50 s: 0.5 s a (global) step.
        record_timing(
            session, device="cpu", family="sd15", resolution=512, batch_size=1, seconds_per_step=0.5, devices=2
        )
        session.commit()
        again = estimate(
            session,
            kind="character",
            images=20,
            steps=100,
            batch_size=1,
            resolution=512,
            family="sd15",
            credits_per_minute=RATE,
            dollars_per_gpu_hour=3.0,
            devices=2,
        )
    assert again.measured_minutes == pytest.approx(50 / 60, abs=0.01)


def test_the_job_row_and_page_carry_the_devices(client, factory, studio_settings, dataset_id):
    job = client.post("/api/v1/trainings", json={"dataset_id": dataset_id, "overrides": {"devices": 2}}).json()
    with factory() as session:
        row = session.get(Job, job["id"])
        assert row.devices == 2
        held = job["credits"]["held"]
        assert held == job["request"]["estimate"]["credits"][1]
    page = client.get(f"/jobs/{job['id']}")
    assert page.status_code == 200 and "on 2 GPUs" in page.text
    quote = client.post(f"/train/{dataset_id}/estimate", data={"devices": "2"})
    assert quote.status_code == 200 and "2 GPUs</span>" in quote.text

    # A worker hands the run its devices: a job resumed elsewhere runs on what that worker gives it.
    request = jobs.request_of(row)
    with factory() as session:
        dataset = session.get(Dataset, dataset_id)
        folder = Path(studio_settings.home) / "jobs" / "x"
        both = _config(studio_settings, request, dataset, folder, resume=False, device_ids=(1, 3))
        alone = _config(studio_settings, request, dataset, folder, resume=True, device_ids=(5,))
    assert (both.devices, both.device_ids) == (2, [1, 3]) and (alone.devices, alone.device_ids) == (1, [5])
    assert both.steps == alone.steps == job["request"]["plan"]["steps"]  # the plan's steps stay as planned
