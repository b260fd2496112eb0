"""A service that writes declares it (@writes, studio/db/writes.py): the write lock is taken before its first
read, it commits when it returns and rolls back when it raises, and a write inside another joins it (only
the outermost commits; an inner one that raises undoes only its own writes)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lorastudio.config import Settings
from lorastudio.errors import Conflict
from lorastudio.studio import storyboards
from lorastudio.studio.context import open_studio
from lorastudio.studio.db import Storyboard, User, write_transaction, writes
from lorastudio.studio.storyboards import SceneIn, StoryboardIn

SRC = Path(__file__).parents[2] / "src" / "lorastudio" / "studio"
# The areas whose services declare their writes (jobs, training, generation/service.py, storyboards/export and
# workers run theirs in write_transaction, or are on their way to @writes).
DECLARED = [
    "accounts",
    "characters",
    "styles",
    "library",
    "datasets",
    "credits",
    "storyboards/service.py",
    "generation/recipes.py",
    "bootstrap.py",
]


@pytest.fixture
def studio(tmp_path):
    return open_studio(Settings(home=tmp_path / "home", device="cpu"))


@writes
def _add_board(session, *, owner_id: int, title: str) -> int:
    board = Storyboard(owner_id=owner_id, title=title)
    session.add(board)
    session.flush()
    return board.id


@writes
def _add_then_fail(session, *, owner_id: int, title: str) -> None:
    _add_board(session, owner_id=owner_id, title=title)
    raise Conflict("refused after writing")


def _titles(studio) -> set[str]:
    with studio.factory() as other:  # another session: sees only what was committed
        return set(other.scalars(select(Storyboard.title)))


def test_a_write_commits_when_it_returns_and_rolls_back_when_it_raises(studio):
    user = studio.local_user
    with studio.factory() as session:
        _add_board(session, owner_id=user, title="kept")
        assert "kept" in _titles(studio)
        with pytest.raises(Conflict):
            _add_then_fail(session, owner_id=user, title="undone")
        assert not session.info  # nothing of the write is left on the session
    assert _titles(studio) == {"kept"}


def test_the_write_lock_is_taken_before_the_first_read(studio):
    """BEGIN IMMEDIATE at the start: between the check and the write nobody else writes."""
    user = studio.local_user
    path = studio.settings.db_url.removeprefix("sqlite:///")

    @writes
    def check_then_write(session) -> None:
        session.scalar(select(func.count()).select_from(Storyboard))  # the check
        intruder = sqlite3.connect(path, timeout=0.1)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                intruder.execute(
                    "INSERT INTO storyboards (owner_id, title, description, created_at, updated_at) "
                    "VALUES (?, 'intruder', '', '2024-01-01', '2024-01-01')",
                    (user,),
                )
        finally:
            intruder.close()
        session.add(Storyboard(owner_id=user, title="mine"))

    with studio.factory() as session:
        check_then_write(session)
    assert _titles(studio) == {"mine"}


def test_only_the_outermost_write_commits(studio):
    user = studio.local_user
    seen_inside = []

    @writes
    def outer(session) -> None:
        _add_board(session, owner_id=user, title="inner")  # a @writes service called inside another
        seen_inside.append(_titles(studio))  # not committed yet: it joined the outer write
        session.add(Storyboard(owner_id=user, title="outer"))

    with studio.factory() as session:
        outer(session)
    assert seen_inside == [set()]
    assert _titles(studio) == {"inner", "outer"}


def test_an_inner_write_that_raises_undoes_only_its_own_writes(studio):
    user = studio.local_user

    @writes
    def outer(session) -> None:
        session.add(Storyboard(owner_id=user, title="before"))
        with pytest.raises(Conflict):
            _add_then_fail(session, owner_id=user, title="inner")  # its savepoint is rolled back
        session.add(Storyboard(owner_id=user, title="after"))

    with studio.factory() as session:
        outer(session)
    assert _titles(studio) == {"before", "after"}


def test_an_outer_write_that_raises_undoes_the_inner_ones_too(studio):
    user = studio.local_user

    @writes
    def outer(session) -> None:
        _add_board(session, owner_id=user, title="inner")
        raise Conflict("no")

    with studio.factory() as session, pytest.raises(Conflict):
        outer(session)
    assert _titles(studio) == set()


def test_a_write_inside_write_transaction_joins_it(studio):
    user = studio.local_user
    with pytest.raises(Conflict), write_transaction(studio.factory) as session:
        _add_board(session, owner_id=user, title="joined")
        assert _titles(studio) == set()
        raise Conflict("the transaction fails after the service returned")
    assert _titles(studio) == set()


def test_a_service_calling_a_service(tmp_path):
    """move_scene is @writes and calls reorder, @writes too: one transaction, committed once."""
    from lorastudio.studio import generation
    from lorastudio.studio.generation import GenerationIn

    studio = open_studio(Settings(home=tmp_path / "home", device="cpu"), seed=True)
    user = studio.local_user
    with studio.factory() as session:
        board = storyboards.create_storyboard(session, owner_id=user, data=StoryboardIn(title="Alley"))
        for prompt in ("johnhero jumps", "johnhero lands"):
            job = generation.submit_generation(
                session, studio.settings, owner_id=user, data=GenerationIn(prompt=prompt)
            )
            board = storyboards.add_scene(session, owner_id=user, storyboard_id=board.id, data=SceneIn(job_id=job.id))
        first, second = (s.id for s in board.scenes)
        moved = storyboards.move_scene(session, owner_id=user, storyboard_id=board.id, scene_id=second, direction="up")
        assert not session.in_transaction()  # committed by the outermost write, nothing left open
    assert [s.id for s in moved.scenes] == [second, first]
    with studio.factory() as other:
        again = storyboards.get_storyboard(other, owner_id=user, storyboard_id=board.id)
    assert [s.id for s in again.scenes] == [second, first]


def test_a_write_needs_the_session_first():
    with pytest.raises(TypeError, match="Session first"):
        _add_board("not a session", owner_id=1, title="x")


def test_the_services_declare_their_writes():
    """No hand-written write transactions in the areas that declare theirs: a commit or begin_write there is
    a service that writes without saying so."""
    files = [p for area in DECLARED for p in ([SRC / area] if area.endswith(".py") else (SRC / area).rglob("*.py"))]
    assert len(files) > 10
    found = [
        f"{f.relative_to(SRC)}:{n}: {line.strip()}"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if re.search(r"\.commit\(\)|\bbegin_write\(|\.rollback\(\)", line)
    ]
    assert found == []


def test_the_local_user_is_made_once_with_its_credits(studio):
    from lorastudio.studio import credits

    first = studio.local_user
    with studio.factory() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert credits.balance(session, first) == studio.settings.starting_credits
    assert open_studio(studio.settings, migrate=False).local_user == first
