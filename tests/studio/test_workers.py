"""Workers as processes: a killed worker's job resumes elsewhere from its checkpoint and ends with the
same LoRA as an uninterrupted run; of two workers woken for one job exactly one runs it."""

import threading

import pytest
import torch

from lorastudio.engine.fileio.tensorfile import read_safetensors
from lorastudio.studio import jobs
from lorastudio.studio.blobs import make_store
from lorastudio.studio.db import Job, make_engine, session_factory
from lorastudio.studio.jobs import make_queue, wake
from tests.jobrequests import sample_request
from tests.studio.conftest import john_dataset, wait_for


def _version_tensors(client, studio_settings, lora_id: int, version: int) -> dict:
    from lorastudio.studio.db import LoraVersion

    factory = session_factory(make_engine(studio_settings))
    with factory() as session:
        row = session.query(LoraVersion).filter_by(lora_id=lora_id, version=version).one()
        return read_safetensors(make_store(studio_settings).path(row.blob))[0]


# Slow (30 s): the deploy test kills a worker mid-training too, and checks the same LoRA and one charge.
@pytest.mark.slow
def test_a_killed_worker_s_job_resumes_from_its_checkpoint_matches_and_is_charged_once(
    client, studio_settings, john_refs, workers
):
    from tests.studio.test_credits import _ledger

    _, dataset_id = john_dataset(client, john_refs)
    start = client.get("/api/v1/credits").json()["balance"]
    body = {"dataset_id": dataset_id, "overrides": {"steps": 20, "checkpoint_every": 4, "seed": 11}}
    first = client.post("/api/v1/trainings", json=body).json()
    reference = client.post("/api/v1/trainings", json=body).json()  # the same run, never interrupted
    doomed = workers.start("doomed")  # alone, so it takes the oldest job: the first
    wait_for(client, first["id"], lambda j: (j["checkpoint_step"] or 0) >= 8)
    workers.kill(doomed)  # SIGKILL: no clean-up, the lease simply stops being renewed
    assert client.get(f"/api/v1/jobs/{first['id']}").json()["status"] == "running"
    workers.start("rescuer")
    workers.start("other")
    done = wait_for(client, first["id"], lambda j: j["status"] in jobs.FINAL, timeout=180)
    ref = wait_for(client, reference["id"], lambda j: j["status"] in jobs.FINAL, timeout=180)
    assert done["status"] == "succeeded" and done["attempts"] == 2 and done["result"]["resumed_from_step"] >= 8
    assert ref["status"] == "succeeded" and ref["attempts"] == 1 and ref["result"]["resumed_from_step"] is None
    a = _version_tensors(client, studio_settings, done["result"]["lora_id"], done["result"]["version"])
    b = _version_tensors(client, studio_settings, ref["result"]["lora_id"], ref["result"]["version"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Charged once for the resumed run: its hold settled once; the balance is the start less both charges.
    assert [e.kind for e in _ledger(studio_settings) if e.job_id == first["id"]] == ["hold", "capture", "release"]
    balance = client.get("/api/v1/credits").json()["balance"]
    assert balance == start - done["credits"]["charged"] - ref["credits"]["charged"]


def test_two_workers_one_job_exactly_one_runs_it(client, studio_settings, workers):
    workers.start("w1")
    workers.start("w2")
    job = client.post("/api/v1/generations", json={"prompt": "johnhero fighting", "seed": 3, "steps": 4}).json()
    queue = make_queue(studio_settings)
    for _ in range(5):
        wake(queue)  # duplicate wake-ups must lose the claim
    done = wait_for(client, job["id"], lambda j: j["status"] in jobs.FINAL, timeout=120)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert len(client.get(f"/api/v1/jobs/{job['id']}/images").json()) == 1


def test_claims_are_atomic(client, studio_settings):
    factory = session_factory(make_engine(studio_settings))
    with factory() as session:
        for _ in range(3):
            jobs.add_job(session, owner_id=1, request=sample_request("generation"))
        session.commit()
    got, barrier = [], threading.Barrier(8)

    def claimer(i: int) -> None:
        barrier.wait()
        got.append(jobs.claim(factory, worker=f"w{i}", lease_seconds=30, types=("generation",)))

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [g for g in got if g is not None]
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 3
    with factory() as session:
        assert {j.lease_owner for j in session.query(Job)} <= {f"w{i}" for i in range(8)}
        assert all(j.attempts == 1 for j in session.query(Job))
