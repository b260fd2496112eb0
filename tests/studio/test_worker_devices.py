"""Workers with several devices, on a real SQLite studio: the claim hands a job only to a worker with as many
free devices as it asks for, a 4-device worker runs four 1-device jobs or one 4-device job at once and never
more, and a multi-device job whose worker is lost is claimed again by a worker with enough devices."""

from __future__ import annotations

import threading
import time

from sqlalchemy import update

from lorastudio.studio import jobs
from lorastudio.studio.context import open_studio
from lorastudio.studio.db import Job, WorkerRow
from lorastudio.studio.jobs import detect
from lorastudio.studio.jobs.rows import waiting_reason
from lorastudio.studio.workers import Worker
from tests.jobrequests import sample_request

TYPES = ("training", "generation")


def _studio(settings):
    studio = open_studio(settings)
    return studio, studio.local_user


def _add(factory, owner: int, *devices: int) -> list[int]:
    with factory() as session:
        rows = [jobs.add_job(session, owner_id=owner, request=sample_request("training"), devices=n) for n in devices]
        session.commit()
        return [r.id for r in rows]


def _claim(factory, name: str, free: int, total: int, lease: int = 30):
    return jobs.claim_devices(
        factory, worker=name, lease_seconds=lease, types=TYPES, free_devices=free, total_devices=total
    )


def test_a_4_device_worker_takes_four_1_device_jobs_or_one_4_device_job_never_more(studio_settings):
    studio, owner = _studio(studio_settings)
    f = studio.factory
    ones = _add(f, owner, 1, 1, 1, 1, 1)
    free = 4
    for job_id in ones[:4]:  # one device each, while any is free
        assert _claim(f, "quad", free, 4) == (job_id, 1)
        free -= 1
    assert _claim(f, "quad", free, 4) is None  # the fifth waits: nothing is free
    assert jobs.claim(f, worker="quad", lease_seconds=30, types=TYPES, free_devices=0, total_devices=4) is None

    (big, after) = _add(f, owner, 4, 1)
    assert _claim(f, "quad2", 4, 4) == (ones[4], 1)  # the oldest first
    # The 4-device job is next in line: with 3 free the worker takes nothing (not even the 1-device job
    # behind it), so its devices empty out for the big job instead of starving it.
    assert _claim(f, "quad2", 3, 4) is None
    assert _claim(f, "quad3", 4, 4) == (big, 4)
    assert _claim(f, "quad3", 0, 4) is None
    assert _claim(f, "solo", 1, 1) == (after, 1)


def test_a_2_device_job_is_never_claimed_by_a_1_device_worker_and_says_why(studio_settings):
    studio, owner = _studio(studio_settings)
    f = studio.factory
    (pair, single) = _add(f, owner, 2, 1)
    one = detect("cpu", memory_gb=None, families=None)
    assert one.device_ids == (0,) and len(one.devices) == 1
    jobs.register(f, name="solo", caps=one, queues=TYPES)
    # A 1-device worker skips the 2-device job (it could never run it) and takes the one behind it.
    assert jobs.claim(f, worker="solo", lease_seconds=30, types=TYPES, free_devices=1, total_devices=1) == single
    assert jobs.claim(f, worker="solo", lease_seconds=30, types=TYPES) is None  # default: one device
    assert Worker(studio_settings, name="solo", caps=one, studio=studio).drain() == 0
    with f() as session:
        job = session.get(Job, pair)
        assert job.status == "pending" and job.devices == 2
        reason = waiting_reason(session, job, stale_seconds=60)
        assert reason and "2 devices" in reason, reason
        assert jobs.most_devices(session, stale_seconds=60) == 1
    two = detect("cpu", memory_gb=None, families=None, devices=2)
    assert two.device_ids == (0, 1) and two.memory_mb * 2 <= one.memory_mb + 2
    jobs.register(f, name="pair", caps=two, queues=TYPES)
    with f() as session:
        row = session.query(WorkerRow).filter_by(name="pair").one()
        assert [d["index"] for d in row.devices] == [0, 1] and row.devices[0]["memory_mb"] == two.memory_mb
        assert waiting_reason(session, session.get(Job, pair), stale_seconds=60) is None
        assert jobs.most_devices(session, stale_seconds=60) == 2
    assert jobs.claim(f, worker="pair", lease_seconds=30, types=TYPES, free_devices=2) == pair


def test_a_multi_device_job_whose_worker_is_lost_is_claimed_again_by_one_with_enough_devices(studio_settings):
    studio, owner = _studio(studio_settings)
    f = studio.factory
    (job_id,) = _add(f, owner, 2)
    assert _claim(f, "lost", 4, 4, lease=30) == (job_id, 2)
    with f() as session:  # the worker died: its lease ran out
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=Job.created_at))
        session.commit()
    assert _claim(f, "small", 1, 1) is None  # never on one device
    assert _claim(f, "rescuer", 2, 2) == (job_id, 2)
    with f() as session:
        job = session.get(Job, job_id)
        assert job.lease_owner == "rescuer" and job.attempts == 2 and job.status == "running"


def test_a_4_device_worker_runs_up_to_four_jobs_at_once_each_on_its_own_devices(client, studio_settings):
    studio, _ = _studio(studio_settings)
    scene = {"prompt": "johnhero fighting", "steps": 2}
    ids = [client.post("/api/v1/generations", json=scene | {"seed": i}).json()["id"] for i in range(6)]
    big = ids[4]
    with studio.factory() as session:  # the fifth asks for all four devices
        session.execute(update(Job).where(Job.id == big).values(devices=4))
        session.commit()
    caps = detect("cpu", memory_gb=None, families=None, devices=4)
    worker = Worker(studio_settings, name="quad", caps=caps, studio=studio)
    seen: list[dict[int, tuple[int, ...]]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(worker.running())
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert worker.drain() == 6
    finally:
        done.set()
        watcher.join()
    for held in seen:
        devices = [i for ids_ in held.values() for i in ids_]
        assert len(devices) == len(set(devices)) <= 4, held  # never more than it has, never one device twice
    assert max(len(h) for h in seen) == 4  # four 1-device jobs at once
    assert {big: (0, 1, 2, 3)} in seen  # the 4-device job held them all, alone
    for job_id in ids:
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded"


def test_a_stopping_2_device_worker_beats_for_both_jobs_and_gives_both_back(client, studio_settings):
    studio, _ = _studio(studio_settings)
    scene = {"prompt": "johnhero fighting", "steps": 150, "n": 2}
    ids = sorted(client.post("/api/v1/generations", json=scene | {"seed": i}).json()["id"] for i in range(2))
    worker = Worker(studio_settings, name="pair", caps=detect("cpu", memory_gb=None, devices=2), studio=studio)
    worker.start_presence()
    drain = threading.Thread(target=worker.drain)
    drain.start()
    try:
        deadline = time.monotonic() + 60
        while True:  # both run at once, each past its model load, and the worker's beat names both
            got = [client.get(f"/api/v1/jobs/{i}").json() for i in ids]
            with studio.factory() as session:
                beating = session.query(WorkerRow).filter_by(name="pair").one().current_job_ids
            if all(j["progress"].get("phase") == "generate" for j in got) and beating == ids:
                break
            assert time.monotonic() < deadline and all(j["status"] in ("pending", "running") for j in got), got
            time.sleep(0.05)
    finally:
        worker.shutdown()
        stopped = worker.wait_stopped()
        drain.join()
        worker.stop_presence()
    assert stopped and worker.given_back == 2
    for job_id in ids:  # back in the queue, the stop not counted as an attempt
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["status"] == "pending" and job["attempts"] == 0, job
