"""A worker: claims jobs from the table, runs them through the engine, and maps the engine's two callbacks
onto the job row (progress written as it goes; should_stop answers cancel, a lost lease and the worker's own
stop). A heartbeat thread renews each job's lease. One worker process serves a machine's devices: each job
runs in a thread of its own holding as many device indices as its row asks for, so a 4-GPU worker runs four
1-device jobs or one 4-device job at once, never more than it has.

A worker process stops cleanly on SIGTERM, SIGINT, SIGHUP or the end of the process that started it: the
running job stops at its next step boundary and goes back to the queue (released, not canceled), so another
worker takes it at once and resumes it from its checkpoint."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
import time
import traceback

from sqlalchemy.orm import Session, sessionmaker

from lorastudio.config import Settings
from lorastudio.errors import LoraStudioError
from lorastudio.studio import jobs, library
from lorastudio.studio.context import StudioContext, open_studio
from lorastudio.studio.db import Job, write_transaction
from lorastudio.studio.disk import as_disk_full
from lorastudio.studio.jobs import Capabilities, Checkpoint, JobProgress, JobRun
from lorastudio.studio.redact import redact
from lorastudio.studio.workers.runners import RUNNERS

log = logging.getLogger("lorastudio.worker")


class _LeaseLost(Exception):
    """The job was taken over by another worker while this one ran it."""


class _GiveBack(Exception):
    """The worker is stopping: the job stopped at a step boundary goes back to the queue instead of ending."""


FAIL_TRIES = 6  # about 15 s of retries to record a failure
REPORT_EVERY = 0.5  # seconds between progress writes (the last event of a phase is always written)
# How long a stopping worker waits for its job to reach a step boundary (loading a model is not one) before
# it gives the job back anyway and exits; whoever stops it should wait a little longer before a SIGKILL.
STOP_SECONDS = 20.0
PARENT_CHECK_SECONDS = 0.5


class Worker:
    """Runs jobs on its devices (`caps.devices`; one without caps). Built from settings; `drain()` works
    until nothing is claimable.

    `caps` (None: any job, one device) is what the claim filters on; `start_presence()` registers the worker
    and keeps it announced and polling the table, which is what a worker on its own machine needs."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str | None = None,
        types: tuple[str, ...] = jobs.JOB_TYPES,
        caps: Capabilities | None = None,
        studio: StudioContext | None = None,
    ):
        self.settings = settings
        self.name = name or f"{socket.gethostname()}-{os.getpid()}@{settings.device}"
        self.types = types
        self.caps = caps
        # Built like every other part of the studio (whoever starts the worker migrates the schema first).
        self.studio = studio or open_studio(settings, migrate=False)
        self.factory: sessionmaker[Session] = self.studio.factory
        self.store = self.studio.store
        self._caches: dict[int, object] = {}  # device index -> its warm pipeline (one job uses a device at a time)
        self._draining = threading.Lock()
        self._wanted = threading.Event()
        self.device_ids: tuple[int, ...] = caps.device_ids if caps is not None else (0,)
        self._cuda = caps is not None and caps.device.startswith("cuda")
        # Guards the free device indices and the running jobs; notified when a job ends (its devices are free)
        # and on a wake-up, either of which may let a waiting job in.
        self._slots = threading.Condition()
        self._free: list[int] = list(self.device_ids)
        self._running: dict[int, tuple[int, ...]] = {}  # job id -> the device indices it holds
        self._freed = 0  # how many jobs have ended here: a drain that saw no job to take waits for it to change
        self._stop = threading.Event()
        self._stopping = threading.Event()
        self._busy = threading.Condition()
        self._draining_threads = 0
        self.given_back = 0  # jobs handed back to the queue by this worker's stop

    @property
    def stopping(self) -> bool:
        """Whether `shutdown()` was called."""
        return self._stopping.is_set()

    def shutdown(self) -> None:
        """Take no more jobs and stop the running ones at their next step boundary; they are then given back.

        Only sets an event, so a signal handler may call it."""
        self._stopping.set()

    def wait_stopped(self, timeout: float = STOP_SECONDS) -> bool:
        """After `shutdown()`: wait until no job runs here; False when some were still running after `timeout`
        (loading a model, say), which are then given back anyway so that nobody waits for their leases."""
        with self._busy:
            if self._busy.wait_for(lambda: self._draining_threads == 0, timeout):
                return True
        for job_id in self.running():
            if jobs.release(self.factory, job_id=job_id, worker=self.name):
                self.given_back += 1
                log.warning("job %s did not reach a step boundary in %.0f s; given back as it is", job_id, timeout)
        return False

    def running(self) -> dict[int, tuple[int, ...]]:
        """The jobs running here now, each with the device indices it holds."""
        with self._slots:
            return dict(self._running)

    def start_presence(self) -> None:
        """Register, then beat and poll the table in a background thread until `stop_presence()`."""
        if self.caps is not None:
            jobs.register(self.factory, name=self.name, caps=self.caps, queues=self.types)
        threading.Thread(target=self._presence, daemon=True, name="presence").start()

    def stop_presence(self) -> None:
        """Say the worker stopped (a clean exit)."""
        self._stop.set()
        if self.caps is not None:
            jobs.stopped(self.factory, name=self.name)

    def _presence(self) -> None:
        last_poll = time.monotonic()
        beat = min(self.settings.heartbeat_seconds, self.settings.lease_seconds / 3)
        while not self._stop.wait(beat):
            try:
                if self.caps is not None:
                    jobs.beat(self.factory, name=self.name, job_ids=tuple(self.running()))
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
        with self._slots:  # a drain waiting for its jobs looks again now: the new job may fit the free devices
            self._slots.notify_all()
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
        """The warm pipeline of the first device, kept between generation jobs (base model and LoRAs stay loaded)."""
        return self.cache_for(self.device_ids[0])

    def cache_for(self, index: int):
        """The warm pipeline of device `index`: only the job holding that device uses it, so no two threads
        share one (and its models stay on that device)."""
        if index not in self._caches:
            from lorastudio.engine import PipelineCache

            self._caches[index] = PipelineCache(self.settings)
        return self._caches[index]

    def drain(self, limit: int | None = None) -> int:
        """Claim and run jobs until none is claimable (or `limit` started, or the worker is stopping), as many
        at once as the devices allow; returns once they have all ended, with how many ran."""
        with self._busy:
            self._draining_threads += 1
        try:
            return self._drain(limit)
        finally:
            with self._busy:
                self._draining_threads -= 1
                self._busy.notify_all()

    def _drain(self, limit: int | None) -> int:
        started, threads = 0, []
        while (limit is None or started < limit) and not self.stopping:
            with self._slots:
                seen = self._freed
                self._wanted.clear()  # a wake-up from here on makes this loop look again
                claimed = self._claim()
            if claimed is not None:
                job_id, ids = claimed
                thread = threading.Thread(target=self._run_held, args=(job_id, ids), daemon=True, name=f"job-{job_id}")
                thread.start()
                threads.append(thread)
                started += 1
                continue
            with self._slots:
                # Nothing to take with the devices free now. Once this drain's jobs have all ended (and nothing
                # ended or woke us since the claim) there is nothing left to wait for; until then a job that
                # ends frees devices a waiting bigger job may need, and a wake-up may bring one that fits.
                if self._freed == seen and not self._wanted.is_set() and not any(t.is_alive() for t in threads):
                    break
                # A job's thread frees its devices, then beats: it may still be alive at the check above, so the
                # wait also ends once every thread has (and the check above is made again).
                while (
                    self._freed == seen
                    and not self._wanted.is_set()
                    and not self.stopping
                    and any(t.is_alive() for t in threads)
                ):
                    self._slots.wait(0.5)  # shutdown() only sets an event (a signal handler calls it): look again
        for thread in threads:
            thread.join()
        return started

    def _claim(self) -> tuple[int, tuple[int, ...]] | None:
        """Claim a job that fits the free devices and hold its device indices (the caller holds `_slots`)."""
        if not self._free:
            return None
        got = jobs.claim_devices(
            self.factory,
            worker=self.name,
            lease_seconds=self.settings.lease_seconds,
            types=self.types,
            families=self.caps.families if self.caps else None,
            memory_mb=self.caps.memory_mb if self.caps else None,
            free_devices=len(self._free),
            total_devices=len(self.device_ids),
        )
        if got is None:
            return None
        job_id, count = got
        ids = tuple(self._free[: max(1, count)])
        del self._free[: len(ids)]
        self._running[job_id] = ids
        return job_id, ids

    def _run_held(self, job_id: int, ids: tuple[int, ...]) -> None:
        """Run a claimed job on the devices it holds (its own thread), then free them."""
        ended = True
        try:
            if self._cuda:  # per thread: "cuda" in this job's runner means its first device
                import torch

                torch.cuda.set_device(ids[0])
            ended = self.run(job_id, device_ids=ids)
        finally:
            with self._slots:
                del self._running[job_id]
                self._free = sorted(self._free + list(ids))
                self._freed += 1
                self._slots.notify_all()
                running = tuple(self._running)
            if self.caps is not None:
                try:
                    jobs.beat(self.factory, name=self.name, job_ids=running, finished=ended)
                except Exception:  # the database away for a moment: the next beat says it
                    log.warning("worker %s: heartbeat failed:\n%s", self.name, traceback.format_exc())

    def run(self, job_id: int, device_ids: tuple[int, ...] = (0,)) -> bool:
        """Run one claimed job on `device_ids` to its end, whatever happens inside it; False when it was given
        back instead (the worker is stopping)."""
        if self.stopping:  # claimed just as the stop came: loading its model would only delay the exit
            self._give_back(job_id)
            return False
        lost = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, lost), daemon=True)
        beat.start()
        state = {"last": 0.0, "cancel": False}
        # Jobs side by side take turns loading models: the engine's loaders hold one lock (models/loading.py).

        def progress(values: JobProgress, force: bool) -> None:
            t = time.monotonic()
            if force or t - state["last"] >= REPORT_EVERY:
                state["last"] = t
                if values.message:  # the engine names its files; the user sees no server folder
                    values = values.model_copy(update={"message": redact(values.message, self.settings)})
                state["cancel"] = jobs.report(self.factory, job_id=job_id, worker=self.name, progress=values)

        def should_stop() -> bool:
            return lost.is_set() or state["cancel"] or self.stopping

        def keep_checkpoint(checkpoint: Checkpoint) -> None:
            jobs.keep_checkpoint(self.factory, job_id=job_id, worker=self.name, checkpoint=checkpoint)

        def finish(session: Session, status: str, result) -> None:
            # Called by the runner inside the transaction that registers what the job made, so the result
            # and the job's end are one commit; a job that is no longer ours commits nothing. A job the
            # runners report as canceled because this worker is stopping (not because its user asked) has
            # not ended: raising rolls that commit back, and the job is given back below.
            if status == "canceled" and self.stopping and not state["cancel"]:
                raise _GiveBack
            if lost.is_set() or not jobs.finish(session, job_id=job_id, worker=self.name, status=status, result=result):
                raise _LeaseLost

        ended = True
        try:
            with self.factory() as session:
                job = session.get(Job, job_id)
                session.expunge(job)
            run = JobRun(
                job=job,
                request=jobs.request_of(job),
                settings=self.settings,
                factory=self.factory,
                store=self.store,
                worker=self.name,
                progress=progress,
                should_stop=should_stop,
                keep_checkpoint=keep_checkpoint,
                finish=finish,
                cache=self.cache_for(device_ids[0]) if job.type == "generation" else None,
                device_ids=device_ids,
            )
            RUNNERS[job.type](run)
        except _GiveBack:
            self._give_back(job_id)
            ended = False
        except _LeaseLost:
            log.warning("job %s: lease lost to another worker; its outcome counts", job_id)
        except Exception as exc:  # the job says what went wrong, the worker goes on
            if (full := as_disk_full(exc)) is not None:
                # What the run wrote is what filled the disk: free it, so the failure (and the released hold)
                # can be written at all; a resumed run would only fill it again.
                shutil.rmtree(self.settings.home / "jobs" / f"job-{job_id}", ignore_errors=True)
                self._fail(job_id, full.code, str(full))
            elif isinstance(exc, LoraStudioError):
                self._fail(job_id, exc.code, str(exc))
            else:  # a bug or a library failure
                log.error("job %s failed:\n%s", job_id, traceback.format_exc())
                self._fail(job_id, "internal_error", f"the job failed unexpectedly ({type(exc).__name__}: {exc})"[:500])
        finally:
            lost.set()  # also stops the heartbeat
            beat.join(timeout=5)
            try:  # housekeeping: a database that cannot take it now (a full disk) gets it after the next job
                with self.factory() as session:
                    library.purge_deleted(session, self.store)
            except Exception:
                log.warning("purging deleted LoRAs failed:\n%s", traceback.format_exc())
        return ended

    def _give_back(self, job_id: int) -> None:
        if jobs.release(self.factory, job_id=job_id, worker=self.name):
            self.given_back += 1
            log.warning("job %s: given back to the queue (worker %s is stopping)", job_id, self.name)

    def _fail(self, job_id: int, code: str, message: str) -> None:
        """Record the failure (its hold released), in words without server paths. A database that cannot take
        the write just now (a full disk being freed, a restart) is tried again for a while; then the lease
        runs out and the reaper ends the job, so the worker never dies of it."""
        message = redact(message, self.settings) or message
        for attempt in range(FAIL_TRIES):
            try:
                with write_transaction(self.factory) as session:
                    jobs.finish(session, job_id=job_id, worker=self.name, status="failed", error=(code, message))
                return
            except Exception:
                log.warning(
                    "job %s: recording its failure failed (try %d):\n%s", job_id, attempt + 1, traceback.format_exc()
                )
                time.sleep(min(0.5 * 2**attempt, 5.0))

    def _heartbeat(self, job_id: int, lost: threading.Event) -> None:
        interval = min(self.settings.heartbeat_seconds, self.settings.lease_seconds / 3)
        while not lost.wait(interval):
            if not jobs.renew(self.factory, job_id=job_id, worker=self.name, lease_seconds=self.settings.lease_seconds):
                lost.set()


def stop_on_signals(worker: Worker) -> None:
    """From now on SIGTERM, SIGINT and SIGHUP stop `worker` cleanly (main thread only). SIGHUP stays ignored
    where it was (nohup)."""

    def handler(signum, frame) -> None:
        worker.shutdown()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)  # instead of a KeyboardInterrupt in whatever thread state it hits
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, handler)


def watch_parent(pid: int) -> None:
    """SIGTERM this process within about PARENT_CHECK_SECONDS of the end of process `pid`, normally its parent
    (POSIX only).

    A worker that `serve` started must not outlive it, even a SIGKILLed one (whose clean-up never runs):
    left alone it would go on claiming jobs, and a restarted serve would add a second worker. The signal
    goes through the same handler as a `kill`: the job in hand is given back. Before that handler is
    installed, the signal's default ends the process, which has then claimed nothing."""
    if os.name != "posix":  # a Windows child is not reparented and os.kill would terminate `pid`
        return
    parent = os.getppid() == pid

    def alive() -> bool:
        if parent:  # reparented (to init or a subreaper) once the parent is gone, whatever its pid's fate
            return os.getppid() == pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process by that id: it exists
            return True
        return True

    def watch() -> None:
        while alive():
            time.sleep(PARENT_CHECK_SECONDS)
        log.warning("process %s is gone: stopping", pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def consume(worker: Worker, huey) -> bool:
    """Run the queue's consumer in this (main) thread until `worker.shutdown()`; then wait for the running
    jobs to stop and be given back. True when it stopped within STOP_SECONDS."""
    from huey.consumer import Consumer

    from lorastudio.studio.jobs import wake

    class _Consumer(Consumer):
        # Huey's own handlers would replace ours: its SIGTERM stops without a word to the job in hand, and
        # its SIGINT waits for the job to finish, however long that takes.
        def _set_signal_handlers(self) -> None:
            pass

        def loop(self, health_check_ts=None):
            if worker.stopping:
                self.stop_flag.set()
            return super().loop(health_check_ts)

    # A wake-up runs the drain, which holds its thread while jobs run; with several devices a second thread
    # takes the next wake-up at once, so a job that fits the free devices starts now, not at the next poll.
    consumer = _Consumer(
        huey,
        workers=2 if len(worker.device_ids) > 1 else 1,
        worker_type="thread",
        periodic=True,
        initial_delay=0.1,
        backoff=1.15,
        max_delay=1.0,
    )
    try:
        consumer.run()
    finally:
        worker.shutdown()  # however the consumer ended, no job may be left running without its worker
    clean = worker.wait_stopped()
    if worker.given_back:
        wake(huey)  # idle workers take it now rather than at their next look at the table
    return clean
