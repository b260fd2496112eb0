"""The wake-up queue (Huey): it only tells workers to look at the job table, and runs the reaper.

The job row is the truth, so a duplicate wake-up finds nothing to claim and a lost one is made good by
the periodic reaper and by the delayed wake-up a worker schedules for the next lease to expire. The
same tasks run on SqliteHuey (embedded, the default) and on RedisHuey (scale-out).
"""

from __future__ import annotations

from huey import Huey, SqliteHuey, crontab

from lorastudio.config import Settings
from lorastudio.studio import jobs
from lorastudio.studio.models import now

WAKE = "lorastudio.wake"
REAP = "lorastudio.reap"


def make_queue(settings: Settings, worker=None) -> Huey:
    """The Huey instance for these settings with the wake-up and reaper tasks registered. The server
    passes no worker (it only enqueues); a worker process passes itself and runs them."""
    settings.home.mkdir(parents=True, exist_ok=True)
    huey = SqliteHuey(name="lorastudio", filename=str(settings.home / "queue.db"), results=False)

    def drain_and_rearm() -> None:
        if worker is None:
            raise RuntimeError("wake-ups run in worker processes, not in the server")
        worker.drain()
        expiry = jobs.reap(worker.factory)["next_expiry"]
        if expiry is not None:  # someone else's job is running: look again when its lease would run out
            huey.lorastudio_wake.schedule(delay=max(1.0, (expiry - now()).total_seconds() + 0.5))

    # Both sides register the same function under the same names, which is what Huey matches on.
    huey.lorastudio_wake = huey.task(name=WAKE)(drain_and_rearm)
    huey.periodic_task(crontab(minute="*"), name=REAP)(drain_and_rearm)
    return huey


def wake(huey: Huey) -> None:
    """Ask the workers to look at the job table (a message; losing or doubling it changes nothing)."""
    huey.lorastudio_wake()
