"""The wake-up queue (Huey): it only tells workers to look at the job table, and runs the reaper.

The job row is the truth, so a duplicate wake-up finds nothing to claim and a lost one is made good by
the periodic reaper and by the delayed wake-up a worker schedules for the next lease to expire. The
same tasks run on SqliteHuey (embedded, the default), RedisHuey and PostgresHuey (scale-out): which one is
`Settings.queue_url`'s scheme. A queue that cannot be reached is logged and left: workers also look at the
table every `poll_seconds`, so an outage of Redis costs latency, never a job.
"""

from __future__ import annotations

import logging

from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey, crontab

from lorastudio.config import Settings
from lorastudio.errors import Invalid
from lorastudio.studio.db import now
from lorastudio.studio.jobs import rows

WAKE = "lorastudio.wake"
REAP = "lorastudio.reap"
SCHEMES = ("redis://", "rediss://", "postgresql://", "postgresql+psycopg://")
log = logging.getLogger("lorastudio.queue")


def _huey(settings: Settings) -> Huey:
    url = settings.queue_url
    if not url:
        settings.home.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name="lorastudio", filename=str(settings.home / "queue.db"), results=False)
    if url.startswith(("redis://", "rediss://")):
        # A short socket timeout: a Redis that is down must not hold a request or a worker for long.
        return RedisHuey(name="lorastudio", url=url, results=False, read_timeout=1)
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        return PostgresHuey(
            name="lorastudio", dsn=url.replace("postgresql+psycopg://", "postgresql://", 1), results=False
        )
    raise Invalid(f"LORASTUDIO_QUEUE_URL {url[:60]!r}: use redis://HOST:PORT/DB or postgresql://...")


def make_queue(settings: Settings, worker=None) -> Huey:
    """The Huey instance for these settings with the wake-up and reaper tasks registered. The server
    passes no worker (it only enqueues); a worker process passes itself and runs them."""
    huey = _huey(settings)

    def drain_and_rearm() -> None:
        if worker is None:
            raise RuntimeError("wake-ups run in worker processes, not in the server")
        worker.drain_soon()
        expiry = rows.reap(worker.factory)["next_expiry"]
        if expiry is not None:  # someone else's job is running: look again when its lease would run out
            huey.lorastudio_wake.schedule(delay=max(1.0, (expiry - now()).total_seconds() + 0.5))

    # Both sides register the same function under the same names, which is what Huey matches on.
    huey.lorastudio_wake = huey.task(name=WAKE)(drain_and_rearm)
    huey.periodic_task(crontab(minute="*"), name=REAP)(drain_and_rearm)
    return huey


def wake(huey: Huey) -> bool:
    """Ask the workers to look at the job table (a message; losing or doubling it changes nothing).
    False when the queue could not be reached: the job waits for a worker's next look at the table."""
    try:
        huey.lorastudio_wake()
        return True
    except Exception as exc:  # redis/psycopg errors alike: the job row is already committed
        log.warning("queue unreachable (%s); workers will find the job at their next look", exc)
        return False
