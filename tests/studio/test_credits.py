"""Credits: holds that concurrent submits cannot overdraw, settlement once per job whatever happens
(success, failure, cancel, a killed worker), idempotent submits, and the ledger the balance comes from."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
import torch
from fastapi.testclient import TestClient

from lorastudio.errors import InsufficientCredits
from lorastudio.studio import credits, jobs, training
from lorastudio.studio.credits import cost_of
from lorastudio.studio.db import CreditEntry, LoraVersion, make_engine, session_factory
from lorastudio.studio.training import TrainingIn
from lorastudio.studio.workers import Worker
from tests.studio.conftest import POSTGRESQL_IN_THE_SUITE, john_dataset

BODY = {"overrides": {"steps": 8, "checkpoint_every": 4}}


@pytest.fixture
def broke_settings(studio_settings):
    return studio_settings.model_copy(update={"starting_credits": 0})


@pytest.fixture
def broke_client(broke_settings):
    from lorastudio.web.app import create_app

    with TestClient(create_app(broke_settings)) as c:
        yield c


def _ledger(settings, user_id: int = 1) -> list[CreditEntry]:
    with session_factory(make_engine(settings))() as session:
        return list(session.query(CreditEntry).filter_by(user_id=user_id).order_by(CreditEntry.id))


def _submit_many(settings, dataset_id: int, n: int, results: list) -> None:
    """n training submits through the service, each in its own session (run in threads and processes)."""
    factory = session_factory(make_engine(settings))
    for _ in range(n):
        with factory() as session:
            try:
                training.submit_training(session, settings, owner_id=1, data=TrainingIn(dataset_id=dataset_id, **BODY))
                results.append("accepted")
            except InsufficientCredits as exc:
                results.append(str(exc))


def _in_process(settings, dataset_id: int, n: int, queue) -> None:
    results: list = []
    _submit_many(settings, dataset_id, n, results)
    queue.put(results)


@POSTGRESQL_IN_THE_SUITE
def test_fifty_concurrent_submits_against_three_holds_accept_exactly_three(broke_client, broke_settings, john_refs):
    _, dataset_id = john_dataset(broke_client, john_refs)
    price = broke_client.post("/api/v1/trainings/estimate", json={"dataset_id": dataset_id, **BODY}).json()
    hold = price["credits"][1]
    with session_factory(make_engine(broke_settings))() as session:
        credits.grant(session, user_id=1, amount=3 * hold, note="exactly three trainings")
        session.commit()
    refused_http = broke_client.post("/api/v1/trainings", json={"dataset_id": dataset_id, **BODY | {"x": 1}})
    assert refused_http.status_code == 422  # a bad body is refused before any credit is touched

    results: list = []
    threads = [threading.Thread(target=_submit_many, args=(broke_settings, dataset_id, 6, results)) for _ in range(5)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_in_process, args=(broke_settings, dataset_id, 10, queue)) for _ in range(2)]
    for worker in threads + procs:
        worker.start()
    for _ in procs:
        results += queue.get(timeout=240)
    for worker in threads + procs:
        worker.join(timeout=240)
    assert len(results) == 50 and results.count("accepted") == 3
    refusals = [r for r in results if r != "accepted"]
    assert all("not enough credits" in r and f"needs {hold}, your balance is 0 - {hold} missing" in r for r in refusals)
    ledger = _ledger(broke_settings)
    assert [e.kind for e in ledger] == ["grant", "hold", "hold", "hold"]
    assert sum(e.delta for e in ledger) == 0 == broke_client.get("/api/v1/credits").json()["balance"]
    # Refused over HTTP the same way: 402 with the amount missing.
    refused = broke_client.post("/api/v1/trainings", json={"dataset_id": dataset_id, **BODY})
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_credits"
    assert f"{hold} missing" in refused.json()["error"]["message"]


def test_success_captures_the_minutes_it_ran_at_the_rate_and_releases_the_rest(client, studio_settings, john_refs):
    _, dataset_id = john_dataset(client, john_refs)
    start = client.get("/api/v1/credits").json()["balance"]
    job = client.post("/api/v1/trainings", json={"dataset_id": dataset_id, **BODY}).json()
    low, high = job["request"]["estimate"]["credits"]
    assert job["credits"] == {"held": high, "charged": None, "released": None} and job["balance"] == start - high
    Worker(studio_settings, name="in-process").drain()
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded"
    charged = done["credits"]["charged"]
    rate = studio_settings.credits_per_gpu_minute
    assert (
        charged == min(cost_of(done["result"]["seconds"], rate), high) and done["credits"]["released"] == high - charged
    )
    assert done["balance"] == start - charged == client.get("/api/v1/credits").json()["balance"]
    entries = client.get("/api/v1/credits").json()["entries"]
    assert [e["kind"] for e in entries][:3] == ["release", "capture", "hold"] and entries[-1]["kind"] == "grant"
    assert f"x {rate:.2f} credits/min = {charged} credits" in entries[1]["note"]  # the ledger shows the sum

    # A generation costs nothing and is still in the ledger.
    scene = client.post("/api/v1/generations", json={"prompt": "johnhero", "steps": 2}).json()
    Worker(studio_settings, name="in-process").drain()
    scene = client.get(f"/api/v1/jobs/{scene['id']}").json()
    assert scene["credits"] == {"held": 0, "charged": 0, "released": 0} and scene["balance"] == start - charged


def test_the_same_idempotency_key_five_times_is_one_job_and_one_hold(client, studio_settings, john_refs):
    _, dataset_id = john_dataset(client, john_refs)
    body, key = {"dataset_id": dataset_id, **BODY}, {"Idempotency-Key": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}
    answers = [client.post("/api/v1/trainings", json=body, headers=key) for _ in range(5)]
    assert {a.status_code for a in answers} == {201} and len({a.json()["id"] for a in answers}) == 1
    assert sum(e.kind == "hold" for e in _ledger(studio_settings)) == 1
    other = client.post("/api/v1/trainings", json=body | {"overrides": {"steps": 9}}, headers=key)
    assert other.status_code == 409 and "another request" in other.json()["error"]["message"]
    for bad in ("", "x" * 201, "naïve".encode(), "two words"):
        assert client.post("/api/v1/trainings", json=body, headers={"Idempotency-Key": bad}).status_code == 422
    scene = {"prompt": "johnhero", "steps": 2}
    first, again = (client.post("/api/v1/generations", json=scene, headers={"Idempotency-Key": "g1"}) for _ in "12")
    assert first.json()["id"] == again.json()["id"]
    assert len(client.get("/api/v1/jobs").json()) == 2


def test_out_of_memory_releases_everything_and_keeps_earlier_versions(client, studio_settings, john_refs, monkeypatch):
    character_id, dataset_id = john_dataset(client, john_refs)
    start = client.get("/api/v1/credits").json()["balance"]
    client.post("/api/v1/trainings", json={"dataset_id": dataset_id, **BODY})
    Worker(studio_settings, name="in-process").drain()
    v1 = client.get(f"/api/v1/characters/{character_id}").json()["versions"]
    assert len(v1) == 1
    v1_bytes = client.get(f"/api/v1/loras/{client.get(f'/api/v1/characters/{character_id}').json()['lora_id']}/file")
    after_first = client.get("/api/v1/credits").json()["balance"]
    assert after_first < start

    real_loss, calls = torch.nn.functional.mse_loss, []

    def allocation_fails_on_step_three(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "mse_loss", allocation_fails_on_step_three)
    job = client.post("/api/v1/trainings", json={"dataset_id": dataset_id, **BODY}).json()
    assert client.get("/api/v1/credits").json()["balance"] == after_first - job["credits"]["held"]
    Worker(studio_settings, name="in-process").drain()
    failed = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert failed["status"] == "failed" and failed["error_code"] == "out_of_memory"
    assert "Lower the batch size" in failed["error_message"] and "--" not in failed["error_message"]
    assert failed["credits"] == {"held": job["credits"]["held"], "charged": 0, "released": job["credits"]["held"]}
    assert failed["balance"] == after_first
    john = client.get(f"/api/v1/characters/{character_id}").json()
    assert john["versions"] == v1
    assert client.get(f"/api/v1/loras/{john['lora_id']}/file").content == v1_bytes.content


def test_cancel_releases_and_a_hold_settles_once(client, studio_settings, john_refs):
    _, dataset_id = john_dataset(client, john_refs)
    start = client.get("/api/v1/credits").json()["balance"]
    job = client.post("/api/v1/trainings", json={"dataset_id": dataset_id, **BODY}).json()
    canceled = client.post(f"/api/v1/jobs/{job['id']}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["balance"] == start
    with session_factory(make_engine(studio_settings))() as session:
        hold_id = jobs.get_row(session, owner_id=1, job_id=job["id"]).credit_hold_id
        credits.settle(session, hold_id=hold_id, spent=5)  # a late, duplicated finish: changes nothing
        session.commit()
        assert credits.balance(session, 1) == start
        assert session.query(LoraVersion).filter_by(job_id=job["id"]).count() == 0
    assert [e.kind for e in _ledger(studio_settings)][-3:] == ["hold", "capture", "release"]
