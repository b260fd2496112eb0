"""A service that reads, then writes must not fail with 'database is locked' when a worker commits in
between: SQLite cannot turn a read transaction into a write one after another writer's commit (in WAL it
refuses at once, without waiting). Each case reads in a session, lets another connection commit, then calls
the service on the same session, as a page request does while a job reports progress."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from lorastudio.errors import Unauthorized
from lorastudio.studio import accounts, generation, jobs, library, storyboards
from lorastudio.studio.db import Job, Lora, Storyboard, make_engine, session_factory
from lorastudio.studio.generation import GenerationIn, RecipeIn
from lorastudio.studio.storyboards import SceneIn, StoryboardIn, StoryboardUpdate


@pytest.fixture
def world(client, studio_settings):
    factory = session_factory(make_engine(studio_settings))
    with factory() as s:
        user = client.app.state.studio.local_user
        lora = s.scalar(select(Lora.id).where(Lora.source == "prebuilt"))
        job = generation.submit_generation(s, studio_settings, owner_id=user, data=GenerationIn(prompt="johnhero"))
        board = storyboards.create_storyboard(s, owner_id=user, data=StoryboardIn(title="Alley"))
    return factory, {"user": user, "lora": lora, "job": job.id, "board": board.id, "settings": studio_settings}


CASES = {
    "cancel a job": lambda s, w: jobs.cancel(s, owner_id=w["user"], job_id=w["job"]),
    "rate a LoRA": lambda s, w: library.rate(s, owner_id=w["user"], lora_id=w["lora"], stars=4),
    "save a recipe": lambda s, w: generation.save_recipe(s, w["settings"], owner_id=w["user"], data=RecipeIn(name="r")),
    "retitle a storyboard": lambda s, w: storyboards.update_storyboard(
        s, owner_id=w["user"], storyboard_id=w["board"], data=StoryboardUpdate(title="Rooftop")
    ),
    "add a scene": lambda s, w: storyboards.add_scene(
        s, owner_id=w["user"], storyboard_id=w["board"], data=SceneIn(job_id=w["job"])
    ),
    "create a storyboard": lambda s, w: storyboards.create_storyboard(
        s, owner_id=w["user"], data=StoryboardIn(title="Docks")
    ),
    "submit a generation": lambda s, w: generation.submit_generation(
        s, w["settings"], owner_id=w["user"], data=GenerationIn(prompt="johnhero")
    ),
    "any insert": lambda s, w: (s.add(Storyboard(owner_id=w["user"], title="Pier")), s.commit()),
    "add a user": lambda s, w: accounts.add_user(s, name="maya", password="maya password 123", starting_credits=9),
    "log in": lambda s, w: accounts.login(s, name="maya", password="wrong password", client="c", session_days=1),
    "disable a user": lambda s, w: accounts.set_disabled(s, name="local", disabled=False),
}


@pytest.mark.parametrize("case", CASES)
def test_a_write_after_a_read_survives_a_workers_commit(world, case):
    factory, w = world
    with factory() as session, factory() as worker:
        session.scalar(select(Job.progress).where(Job.id == w["job"]))  # a read: the snapshot is taken
        worker.execute(update(Job).where(Job.id == w["job"]).values(progress={"step": 1}))
        worker.commit()  # what a worker's progress report does every half second
        try:
            CASES[case](session, w)
        except Unauthorized:
            assert case == "log in"  # a wrong password, recorded: what matters is that it was not 'locked'


def test_taking_the_write_lock_never_commits_a_write_half_done(world):
    factory, w = world
    with factory() as session:
        session.scalar(select(Job.progress).where(Job.id == w["job"]))
        session.add(Storyboard(owner_id=w["user"], title="first"))
        session.flush()  # the first write: the read part ends and the write lock is taken here
        session.scalar(select(Storyboard.id).where(Storyboard.title == "first"))
        session.add(Storyboard(owner_id=w["user"], title="second"))
        session.flush()
        session.rollback()
    with factory() as check:
        titles = set(check.scalars(select(Storyboard.title)))
    assert not titles & {"first", "second"}
