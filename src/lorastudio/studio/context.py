"""The one place that builds the studio: settings in, a StudioContext out (the engine, the session factory,
the blob store, the wake-up queue and the local user), for the web app, every CLI command and the worker.

Its sessions wake the workers after a commit that added a job: the code that adds a Job row notes the
queue's name in `session.info["wake"]` (jobs/rows.py), and the factory's `after_commit` listener sends one
wake-up (jobs.wake: a queue that cannot be reached is logged, never raised). A transaction that is rolled
back, or a session closed without committing, wakes nobody."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from lorastudio.config import Settings
from lorastudio.studio import accounts, bootstrap, credits
from lorastudio.studio.blobs import BlobStore, make_store
from lorastudio.studio.db import make_engine, session_factory

if TYPE_CHECKING:
    from huey import Huey

WAKE = "wake"  # session.info key: the job queues (types) a commit should wake
log = logging.getLogger("lorastudio.context")


class StudioContext:
    """What a process holds for its lifetime. The queue and the local user are made on first use (a CLI
    command that reads the database never opens the queue)."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        factory: sessionmaker[Session],
        store: BlobStore,
        queue: Huey | None = None,
        local_user: int | None = None,
    ):
        self.settings = settings
        self.engine = engine
        self.factory = factory
        self.store = store
        self._queue = queue
        self._local_user = local_user
        self._queue_lock, self._user_lock = threading.Lock(), threading.Lock()

    @property
    def queue(self) -> Huey:
        """The wake-up queue (Huey) this process enqueues on."""
        if self._queue is not None:
            return self._queue
        with self._queue_lock:
            if self._queue is None:
                from lorastudio.studio import jobs  # torch comes with it: not for `lorastudio users ...`

                self._queue = jobs.make_queue(self.settings)
            return self._queue

    @property
    def local_user(self) -> int:
        """The id of the single local user (accounts off), created with its starting credits on first use."""
        if self._local_user is not None:  # every request asks when accounts are off
            return self._local_user
        with self._user_lock:
            if self._local_user is None:
                with self.factory() as session:
                    user = accounts.local_user(session)
                    credits.ensure_start(session, user_id=user, amount=self.settings.starting_credits)
                self._local_user = user
            return self._local_user

    def wake(self) -> bool:
        """Ask the workers to look at the job table now (commits that add a job do it themselves)."""
        from lorastudio.studio import jobs

        return jobs.wake(self.queue)

    def _after_commit(self, session: Session) -> None:
        if not session.info.pop(WAKE, None):
            return
        try:
            self.wake()  # one message wakes every idle worker; each claims only what it can run
        except Exception:  # the queue could not even be made: the committed job waits for the workers' poll
            log.exception("could not wake the workers; they will find the job at their next look")


def open_studio(settings: Settings, *, migrate: bool = True, seed: bool = False) -> StudioContext:
    """The studio for these settings. `migrate` brings the schema to the newest migration first (what
    `lorastudio db upgrade` does); `seed` also creates the local user with its starting credits and the
    pre-built styles with their shipped LoRAs (the server does, at start; it imports torch)."""
    engine = make_engine(settings)
    if migrate:
        bootstrap.prepare(settings, engine)
    factory = session_factory(engine)
    studio = StudioContext(settings=settings, engine=engine, factory=factory, store=make_store(settings))
    event.listen(factory, "after_commit", studio._after_commit)
    event.listen(factory, "after_transaction_end", _forget_wake)
    if seed:
        studio.local_user  # noqa: B018 - made now, so a broken database stops the start, not a request
        with factory() as session:
            bootstrap.seed(session, studio.store)
    return studio


def _forget_wake(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended without a commit (rolled back, or the session closed): its jobs were
    # never added. (A commit pops the note first; a savepoint's end keeps the outer transaction's note.)
    if transaction.parent is None:
        session.info.pop(WAKE, None)
