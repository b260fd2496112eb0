"""A worker: claims jobs from the table, runs them through the engine, and maps the engine's two callbacks
onto the job row (progress written as it goes; should_stop answers cancel and a lost lease). A heartbeat
thread renews the lease. One job at a time: one GPU, one worker process."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback

from sqlalchemy.orm import Session, sessionmaker

from lorastudio.config import Settings
from lorastudio.errors import LoraStudioError
from lorastudio.studio import jobs, library, workers
from lorastudio.studio.capabilities import Capabilities
from lorastudio.studio.db import make_engine, session_factory, write_transaction
from lorastudio.studio.models import Job
from lorastudio.studio.storage import make_store

log = logging.getLogger("lorastudio.worker")


class _LeaseLost(Exception):
    """The job was taken over by another worker while this one ran it."""


REPORT_EVERY = 0.5  # seconds between progress writes (the last event of a phase is always written)


class Worker:
    """Runs jobs for one device. Built from settings; `drain()` works until nothing is claimable.

    `caps` (None: any job) is what the claim filters on; `start_presence()` registers the worker and keeps
    it announced and polling the table, which is what a worker on its own machine needs."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str | None = None,
        types: tuple[str, ...] = jobs.JOB_TYPES,
        caps: Capabilities | None = None,
    ):
        self.settings = settings
        self.name = name or f"{socket.gethostname()}-{os.getpid()}@{settings.device}"
        self.types = types
        self.caps = caps
        self.factory: sessionmaker[Session] = session_factory(make_engine(settings))
        self.store = make_store(settings)
        self._cache = None
        self._draining = threading.Lock()
        self._wanted = threading.Event()
        self._current: int | None = None
        self._stop = threading.Event()

    def start_presence(self) -> None:
        """Register, then beat and poll the table in a background thread until `stop_presence()`."""
        if self.caps is not None:
            workers.register(self.factory, name=self.name, caps=self.caps, queues=self.types)
        threading.Thread(target=self._presence, daemon=True, name="presence").start()

    def stop_presence(self) -> None:
        """Say the worker stopped (a clean exit)."""
        self._stop.set()
        if self.caps is not None:
            workers.stopped(self.factory, name=self.name)

    def _presence(self) -> None:
        last_poll = time.monotonic()
        beat = min(self.settings.heartbeat_seconds, self.settings.lease_seconds / 3)
        while not self._stop.wait(beat):
            try:
                if self.caps is not None:
                    workers.beat(self.factory, name=self.name, job_id=self._current)
                if time.monotonic() - last_poll >= self.settings.poll_seconds:
                    last_poll = time.monotonic()
                    jobs.reap(self.factory)
                    # Wake-ups may have been lost (the queue was down): look anyway, in a thread of its own,
                    # since a job found now may run for an hour and this thread must go on beating.
                    threading.Thread(target=self.drain_soon, daemon=True, name="poll").start()
            except Exception:  # the database away for a moment: try again at the next beat
                log.warning("worker %s: heartbeat failed:\n%s", self.name, traceback.format_exc())

    def drain_soon(self) -> None:
        """Drain unless another thread of this worker is draining; a request that arrives meanwhile makes
        that thread look again before it stops, so no wake-up is lost between the two."""
        self._wanted.set()
        while True:
            if not self._draining.acquire(blocking=False):
                return
            try:
                while self._wanted.is_set():
                    self._wanted.clear()
                    self.drain()
            finally:
                self._draining.release()
            if not self._wanted.is_set():
                return

    @property
    def cache(self):
        """The warm pipeline, kept between generation jobs (base model and LoRAs stay loaded)."""
        if self._cache is None:
            from lorastudio.engine.generation.pipecache import PipelineCache

            self._cache = PipelineCache(self.settings)
        return self._cache

    def drain(self, limit: int | None = None) -> int:
        """Claim and run jobs until none is claimable (or `limit` ran); how many ran."""
        done = 0
        while limit is None or done < limit:
            job_id = jobs.claim(
                self.factory,
                worker=self.name,
                lease_seconds=self.settings.lease_seconds,
                types=self.types,
                families=self.caps.families if self.caps else None,
                memory_mb=self.caps.memory_mb if self.caps else None,
            )
            if job_id is None:
                return done
            self._current = job_id
            try:
                self.run(job_id)
            finally:
                self._current = None
            done += 1
            if self.caps is not None:
                workers.beat(self.factory, name=self.name, job_id=None, finished=True)
        return done

    def run(self, job_id: int) -> None:
        """Run one claimed job to its end, whatever happens inside it."""
        lost = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, lost), daemon=True)
        beat.start()
        state = {"last": 0.0, "cancel": False}

        def progress(values: dict, force: bool) -> None:
            t = time.monotonic()
            if force or t - state["last"] >= REPORT_EVERY:
                state["last"] = t
                state["cancel"] = jobs.report(self.factory, job_id=job_id, worker=self.name, progress=values)

        def should_stop() -> bool:
            return lost.is_set() or state["cancel"]

        def finish(session: Session, status: str, result: dict | None) -> None:
            # Called by the runner inside the transaction that registers what the job made, so the result
            # and the job's end are one commit; a job that is no longer ours commits nothing.
            if lost.is_set() or not jobs.finish(session, job_id=job_id, worker=self.name, status=status, result=result):
                raise _LeaseLost

        try:
            with self.factory() as session:
                job = session.get(Job, job_id)
                session.expunge(job)
            self._dispatch(job, progress, should_stop, finish)
        except _LeaseLost:
            log.warning("job %s: lease lost to another worker; its outcome counts", job_id)
        except LoraStudioError as exc:
            self._fail(job_id, exc.code, str(exc))
        except Exception as exc:  # a bug or a library failure: the job says so, the worker goes on
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            self._fail(job_id, "internal_error", f"the job failed unexpectedly ({type(exc).__name__}: {exc})"[:500])
        finally:
            lost.set()  # also stops the heartbeat
            beat.join(timeout=5)
            with self.factory() as session:
                library.purge_deleted(session, self.store)

    def _dispatch(self, job: Job, progress, should_stop, finish) -> None:
        common = {"job": job, "progress": progress, "should_stop": should_stop, "finish": finish}
        if job.type == "training":
            from lorastudio.studio.trainings import run_training

            run_training(self.factory, self.settings, self.store, worker=self.name, **common)
        elif job.type == "export":
            from lorastudio.studio.storyboard_export import run_export

            run_export(self.factory, self.settings, self.store, **common)
        else:
            from lorastudio.studio.scenes import run_generation

            run_generation(self.factory, self.settings, self.store, cache=self.cache, **common)

    def _fail(self, job_id: int, code: str, message: str) -> None:
        with write_transaction(self.factory) as session:
            jobs.finish(session, job_id=job_id, worker=self.name, status="failed", error=(code, message))

    def _heartbeat(self, job_id: int, lost: threading.Event) -> None:
        interval = min(self.settings.heartbeat_seconds, self.settings.lease_seconds / 3)
        while not lost.wait(interval):
            if not jobs.renew(self.factory, job_id=job_id, worker=self.name, lease_seconds=self.settings.lease_seconds):
                lost.set()
