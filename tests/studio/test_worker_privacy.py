"""/api/v1/workers shows a user only their own running jobs and hides the machines' host names, unless the user
is an operator (named in LORASTUDIO_OPERATORS, or the local user with accounts off)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from lorastudio.studio import accounts, jobs
from lorastudio.studio.db import make_engine, session_factory
from lorastudio.studio.jobs import Capabilities, registry
from lorastudio.web.app import create_app
from tests.jobrequests import sample_request

CARD = Capabilities(device="cuda: RTX 6000 Ada", memory_mb=48 * 1024, families=("sd15",), host="render-box-7.lan")


def _studio_with_two_busy_workers(settings):
    """Users alice, bob and carol; a worker under its default name (HOST-PID@DEVICE) runs alice's job, a named
    one runs bob's. Returns the app's client, {user: token} and {user: job id}."""
    factory = session_factory(make_engine(settings))
    client = TestClient(create_app(settings))
    tokens, job_ids = {}, {}
    with factory() as session:
        for name in ("alice", "bob", "carol"):
            user = accounts.add_user(session, name=name, password="correct horse battery", starting_credits=10)
            tokens[name] = accounts.create_token(session, user_id=user.id, name="test")[1]
            job_ids[name] = jobs.add_job(session, owner_id=user.id, request=sample_request("generation")).id
        session.commit()
    jobs.register(factory, name="render-box-7.lan-4242@cuda", caps=CARD, queues=("generation",))
    jobs.register(factory, name="gpu-b-0", caps=CARD, queues=("generation",))
    jobs.beat(factory, name="render-box-7.lan-4242@cuda", job_id=job_ids["alice"])
    jobs.beat(factory, name="gpu-b-0", job_id=job_ids["bob"])
    return client, tokens, job_ids


def _listed(client, token: str) -> dict[str, dict]:
    answer = client.get("/api/v1/workers", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return {w["name"]: w for w in answer.json()}


def test_a_user_sees_only_their_own_jobs_and_no_host_names_an_operator_all(studio_settings):
    settings = studio_settings.model_copy(update={"accounts": True, "operators": "Carol, dave"})
    client, tokens, job_ids = _studio_with_two_busy_workers(settings)

    alice = _listed(client, tokens["alice"])
    assert set(alice) == {"(hidden)-4242@cuda", "gpu-b-0"}  # the default name's host part is hidden too
    assert alice["(hidden)-4242@cuda"]["current_job_id"] == job_ids["alice"]
    assert alice["gpu-b-0"]["current_job_id"] is None  # bob's job
    assert all(w["host"] == "(hidden)" for w in alice.values())
    assert (
        "render-box" not in client.get("/api/v1/workers", headers={"Authorization": f"Bearer {tokens['alice']}"}).text
    )
    assert alice["gpu-b-0"]["device"] == "cuda: RTX 6000 Ada" and alice["gpu-b-0"]["state"] == "alive"

    bob = _listed(client, tokens["bob"])
    assert bob["gpu-b-0"]["current_job_id"] == job_ids["bob"]
    assert bob["(hidden)-4242@cuda"]["current_job_id"] is None

    carol = _listed(client, tokens["carol"])  # an operator
    assert carol["render-box-7.lan-4242@cuda"]["host"] == "render-box-7.lan"
    assert carol["render-box-7.lan-4242@cuda"]["current_job_id"] == job_ids["alice"]
    assert carol["gpu-b-0"]["current_job_id"] == job_ids["bob"]

    # With accounts off the local user runs the studio: the same workers, all shown.
    local = {w["name"]: w for w in TestClient(create_app(studio_settings)).get("/api/v1/workers").json()}
    assert local["render-box-7.lan-4242@cuda"]["host"] == "render-box-7.lan"
    assert local["render-box-7.lan-4242@cuda"]["current_job_id"] == job_ids["alice"]


def test_host_names_are_hidden_only_where_the_name_starts_with_them():
    hide = registry._without_host
    assert hide("box-12@cpu", "box") == "(hidden)-12@cpu"
    assert hide("box", "box") == "(hidden)"
    assert hide("boxer-1", "box") == "boxer-1"  # another word that merely starts the same
    assert hide("gpu-a-0", "a") == "gpu-a-0"
    assert hide("anything", "") == "anything"
