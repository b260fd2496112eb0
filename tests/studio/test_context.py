"""The studio is built in one place (studio/context.py), and adding a job row wakes the workers after the
commit: never before it (a worker woken early would find nothing to claim), never for a rolled-back one."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lorastudio.config import Settings
from lorastudio.errors import Conflict
from lorastudio.studio import jobs
from lorastudio.studio.context import WAKE, StudioContext, open_studio
from lorastudio.studio.db import Job, Storyboard, make_engine, session_factory, writes
from lorastudio.studio.jobs import make_queue
from lorastudio.studio.workers import Worker
from tests.studio.conftest import john_dataset

SCENE = {"prompt": "johnhero fighting", "seed": 5, "steps": 2}


def _waiting(settings: Settings) -> int:
    """Wake-ups sent and not yet taken (the embedded SQLite queue of this studio home)."""
    return make_queue(settings).pending_count()


@pytest.fixture
def wakes(monkeypatch):
    """Every wake-up sent, with the pending jobs another connection could see at that moment."""
    sent: list[list[int]] = []

    def spy(huey) -> bool:
        settings = huey_settings[huey]
        with session_factory(make_engine(settings))() as other:
            sent.append(list(other.scalars(select(Job.id).where(Job.status == "pending"))))
        return True

    huey_settings: dict = {}
    real_make_queue = jobs.make_queue

    def make_queue_spied(settings, worker=None):
        huey = real_make_queue(settings, worker)
        huey_settings[huey] = settings
        return huey

    monkeypatch.setattr(jobs, "wake", spy)
    monkeypatch.setattr(jobs, "make_queue", make_queue_spied)
    return sent


def test_a_submit_through_the_api_wakes_the_workers_after_its_commit(studio_settings, wakes):
    with TestClient(create_app(studio_settings)) as client:
        job = client.post("/api/v1/generations", json=SCENE)
        assert job.status_code == 201, job.text
        assert wakes == [[job.json()["id"]]]  # one wake-up, and the job was already there to claim
        again = client.post("/api/v1/generations", json=SCENE, headers={"Idempotency-Key": "k1"})
        client.post("/api/v1/generations", json=SCENE, headers={"Idempotency-Key": "k1"})  # the first answer
        assert len(wakes) == 2 and again.json()["id"] in wakes[1]


def test_the_wake_up_reaches_the_queue(client, studio_settings):
    before = _waiting(studio_settings)
    assert client.post("/api/v1/generations", json=SCENE).status_code == 201
    assert _waiting(studio_settings) == before + 1


def test_a_rolled_back_submit_wakes_nobody(studio_settings, john_refs, wakes):
    broke = studio_settings.model_copy(update={"starting_credits": 0})
    with TestClient(create_app(broke)) as client:
        _, dataset_id = john_dataset(client, john_refs)
        refused = client.post("/api/v1/trainings", json={"dataset_id": dataset_id, "overrides": {"steps": 8}})
        assert refused.status_code == 402, refused.text  # its job row was added, then the hold failed
    assert wakes == []
    with session_factory(make_engine(broke))() as session:
        assert session.scalar(select(Job.id)) is None


def _studio(settings: Settings) -> StudioContext:
    studio = open_studio(settings)
    studio.local_user  # noqa: B018 - before the spy counts: making it commits too
    return studio


def _note_job(session) -> None:
    """What adding a job row does (jobs/rows.py): add the row (here a stand-in) and name its queue for the
    commit to wake."""
    session.add(Storyboard(owner_id=1, title="a job"))
    session.info.setdefault(WAKE, set()).add("generation")


def test_a_commit_with_no_job_wakes_nobody_and_a_rollback_forgets_the_job(studio_settings, wakes):
    studio = _studio(studio_settings)
    with studio.factory() as session:
        session.add(Storyboard(owner_id=studio.local_user, title="no job"))
        session.commit()
        assert wakes == []
        _note_job(session)
        session.rollback()
        session.add(Storyboard(owner_id=studio.local_user, title="still no job"))
        session.commit()
    assert wakes == []
    with studio.factory() as session:
        _note_job(session)
    with studio.factory() as session:  # a session closed uncommitted: its note went with it
        session.add(Storyboard(owner_id=studio.local_user, title="and again"))
        session.commit()
    assert wakes == []


def test_a_write_that_raises_wakes_nobody_and_a_failed_inner_write_keeps_the_outer_job(studio_settings, wakes):
    studio = _studio(studio_settings)

    @writes
    def add_then_fail(session) -> None:
        _note_job(session)
        raise Conflict("no")

    @writes
    def add_and_survive_inner_failure(session) -> None:
        _note_job(session)
        with pytest.raises(Conflict):
            add_then_fail(session)  # a savepoint rolled back: the outer transaction's job stays

    with studio.factory() as session:
        with pytest.raises(Conflict):
            add_then_fail(session)
        assert wakes == []
        add_and_survive_inner_failure(session)
    assert len(wakes) == 1


def test_an_unreachable_queue_is_logged_not_raised(tmp_path, caplog):
    from tests.servers import free_port

    settings = Settings(home=tmp_path / "home", device="cpu", queue_url=f"redis://127.0.0.1:{free_port()}/0")
    studio = _studio(settings)
    with studio.factory() as session:
        _note_job(session)
        session.add(Storyboard(owner_id=studio.local_user, title="committed all the same"))
        session.commit()
    assert "queue unreachable" in caplog.text
    with studio.factory() as session:
        assert "committed all the same" in set(session.scalars(select(Storyboard.title)))


def test_one_studio_for_the_app_and_the_worker(studio_settings):
    studio = open_studio(studio_settings)
    worker = Worker(studio_settings, name="w", studio=studio)
    assert (worker.factory, worker.store) == (studio.factory, studio.store)
    own = Worker(studio_settings, name="own")  # builds its own through open_studio (no migration)
    assert own.studio is not studio and own.studio.settings is studio_settings


def create_app(settings: Settings):
    from lorastudio.web.app import create_app as make

    return make(settings)
