"""`lorastudio serve` and its worker as real processes: the worker dies with serve (a SIGTERM or a SIGKILL of
serve), a worker that dies is replaced, a stopped worker gives its training back to the queue to be resumed
at once, and uvicorn believes X-Forwarded-For only from the proxies the settings name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lorastudio.studio.db import Job, make_engine, session_factory
from tests.jobrequests import sample_request
from tests.servers import free_port, wait_port
from tests.studio.conftest import FAST, john_dataset, wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads processes from /proc (Linux)")


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the thread or the process ended meanwhile
            found |= {int(c) for c in task.read_text().split()}
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie has ended: it only waits to be reaped by whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _is_worker(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"lorastudio.cli" in argv and b"worker" in argv


def _until(what: str, check, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}")


class Studio:
    """`lorastudio serve` processes of one home; every process started here, and every worker seen, is
    killed at teardown."""

    def __init__(self, home: Path):
        self.home = home
        self.port = free_port()
        self.env = os.environ | FAST | {"LORASTUDIO_HOME": str(home), "OMP_NUM_THREADS": "1"}
        self.procs: list[subprocess.Popen] = []
        self.seen: set[int] = set()
        self.log = home / "serve.log"

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "lorastudio.cli", *args],
            env=self.env,
            input=stdin,
            text=True,
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def serve(self, *args: str, **env: str) -> subprocess.Popen:
        self.home.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "a")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "lorastudio.cli", "serve", "--port", str(self.port), *args],
            env=self.env | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def worker_of(self, serve: subprocess.Popen, *, other_than: int | None = None, timeout: float = 40) -> int:
        """The pid of serve's worker once it waits for jobs (its ready line is in the log)."""

        def ready() -> int | None:
            assert serve.poll() is None, f"serve exited with {serve.returncode}:\n{self.log.read_text()[-3000:]}"
            pids = [p for p in _children(serve.pid) if p != other_than and _is_worker(p)]
            if pids and self.log.read_text().count("waiting for") > (other_than is not None):
                return pids[0]
            return None

        pid = _until("serve's worker is ready", ready, timeout, every=0.2)
        self.seen.add(pid)
        return pid

    def close(self) -> None:
        for proc in self.procs:
            self.seen |= {p for p in _children(proc.pid) if _is_worker(p)} if proc.poll() is None else set()
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for pid in self.seen:
            if _alive(pid) and _is_worker(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "home")
    yield s
    s.close()


# Slow (19 s): a SIGKILLed serve's worker exits by itself (below, in the suite), the harder case of the two.
@pytest.mark.slow
def test_serve_s_worker_stops_with_a_sigterm_of_serve(studio):
    serve = studio.serve()
    worker = studio.worker_of(serve)
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=20) == 0, studio.log.read_text()[-3000:]
    _until("the worker has exited", lambda: not _alive(worker), timeout=5)


def test_serve_s_worker_exits_by_itself_when_serve_is_sigkilled(studio):
    serve = studio.serve()
    worker = studio.worker_of(serve)
    serve.send_signal(signal.SIGKILL)
    serve.wait(timeout=10)  # reaped: the worker now belongs to init (or a subreaper)
    _until("the orphaned worker has exited", lambda: not _alive(worker), timeout=5)
    assert "is gone: stopping" in studio.log.read_text()


def test_serve_replaces_a_worker_that_dies(studio):
    serve = studio.serve()
    first = studio.worker_of(serve)
    os.kill(first, signal.SIGKILL)  # what the OOM killer does
    second = studio.worker_of(serve, other_than=first)
    assert second != first and _is_worker(second) and not _alive(first)
    assert f"(pid {first}) exited with code -9" in studio.log.read_text()


# Slow (32 s): the give-back on a stop is tested in-process (tests/studio/test_worker_devices.py, two jobs at
# once) and a worker process's signals by the serve tests here.
@pytest.mark.slow
def test_a_sigtermed_worker_gives_its_training_back_to_be_resumed_at_once(client, studio_settings, john_refs, workers):
    from tests.studio.test_credits import _ledger

    _, dataset_id = john_dataset(client, john_refs)
    start = client.get("/api/v1/credits").json()["balance"]
    body = {"dataset_id": dataset_id, "overrides": {"steps": 30, "checkpoint_every": 4, "sample_every": 0}}
    job = client.post("/api/v1/trainings", json=body).json()
    first = workers.start("first")
    wait_for(client, job["id"], lambda j: (j["checkpoint_step"] or 0) >= 4, timeout=60)
    first.send_signal(signal.SIGTERM)
    signaled = time.monotonic()
    assert first.wait(timeout=15) == 0, (studio_settings.home / "first.log").read_text()[-3000:]
    assert time.monotonic() - signaled < 10
    with session_factory(make_engine(studio_settings))() as session:
        row = session.get(Job, job["id"])
        assert (row.status, row.lease_owner, row.lease_expires_at, row.finished_at) == ("pending", None, None, None)
        stopped_at = row.checkpoint["step"]  # the step it stopped at, written as it stopped
        assert 4 <= stopped_at < 30 and row.attempts == 0  # a clean stop does not count as a failed attempt
    workers.start("second")
    done = wait_for(client, job["id"], lambda j: j["status"] in ("succeeded", "failed", "canceled"), timeout=90)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1 and done["result"]["resumed_from_step"] == stopped_at
    assert [e.kind for e in _ledger(studio_settings) if e.job_id == job["id"]] == ["hold", "capture", "release"]
    assert client.get("/api/v1/credits").json()["balance"] == start - done["credits"]["charged"]


def _failed_logins(http: httpx.Client, forwarded: list[str]) -> None:
    for i, address in enumerate(forwarded):
        # A new name each time: the limit that counts here is the one per client address.
        r = http.post(
            "/api/v1/auth/login",
            json={"name": f"guess{i}", "password": "wrong password"},
            headers={"X-Forwarded-For": address},
        )
        assert r.status_code in (401, 429), r.text


def _login(http: httpx.Client, forwarded: str) -> int:
    r = http.post(
        "/api/v1/auth/login",
        json={"name": "maya", "password": "correct horse battery"},
        headers={"X-Forwarded-For": forwarded},
    )
    return r.status_code


def test_serve_believes_x_forwarded_for_only_from_the_proxies_it_is_told_of(studio):
    from lorastudio.studio.accounts import FAILS_PER_CLIENT

    studio.env |= {"LORASTUDIO_ACCOUNTS": "true"}
    studio.cli("users", "add", "maya", "--password-stdin", stdin="correct horse battery\n")

    plain = studio.serve("--workers", "0")  # trusts no proxy: the header is ignored, the peer is 127.0.0.1
    wait_port(studio.port, timeout=40)
    plain_port, studio.port = studio.port, free_port()
    # Started now so that it loads while the other one answers (the schema is in place by now).
    studio.serve("--workers", "0", LORASTUDIO_TRUSTED_PROXIES="127.0.0.1")  # as behind a proxy on this machine
    with httpx.Client(base_url=f"http://127.0.0.1:{plain_port}", timeout=30) as http:
        _failed_logins(http, [f"10.0.0.{i}" for i in range(FAILS_PER_CLIENT)])
        assert _login(http, "10.0.1.1") == 429  # loopback has used up its failures, whatever the header says
    plain.send_signal(signal.SIGTERM)

    wait_port(studio.port, timeout=40)
    with httpx.Client(base_url=f"http://127.0.0.1:{studio.port}", timeout=30) as http:
        assert _login(http, "10.0.1.1") == 200  # the forwarded address is the client now, not loopback


def test_release_gives_a_job_back_only_while_it_is_ours(client, studio_settings):
    from lorastudio.studio import jobs

    factory = session_factory(make_engine(studio_settings))
    with factory() as session:
        kept, canceled = (jobs.add_job(session, owner_id=1, request=sample_request("generation")) for _ in range(2))
        session.commit()
        kept_id, canceled_id = kept.id, canceled.id
    claim = {"lease_seconds": 30, "types": ("generation",)}
    assert jobs.claim(factory, worker="a", **claim) == kept_id
    assert jobs.keep_checkpoint(factory, job_id=kept_id, worker="a", checkpoint=jobs.Checkpoint(step=8, blob="b" * 64))
    assert not jobs.release(factory, job_id=kept_id, worker="b")  # not b's to give back
    assert jobs.release(factory, job_id=kept_id, worker="a")
    assert not jobs.release(factory, job_id=kept_id, worker="a")  # pending now: nothing left to give back
    with factory() as session:
        row = session.get(Job, kept_id)
        assert (row.status, row.lease_owner, row.lease_expires_at, row.attempts) == ("pending", None, None, 0)
        assert row.checkpoint == {"step": 8, "blob": "b" * 64}  # where the next worker resumes
    assert jobs.claim(factory, worker="b", **claim) == kept_id  # at once, no lease to wait out
    assert jobs.claim(factory, worker="c", **claim) == canceled_id
    with factory() as session:
        jobs.cancel(session, owner_id=1, job_id=canceled_id)  # asked while it runs, seen only at the release
    assert jobs.release(factory, job_id=canceled_id, worker="c")
    with factory() as session:
        assert session.get(Job, canceled_id).status == "canceled"  # nobody would ever claim it again
