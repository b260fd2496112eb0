"""`lorastudio serve`, `lorastudio worker` and `lorastudio db upgrade`: the studio as a server."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Annotated

import typer

from lorastudio.cli.common import app, err, out, run_command, settings_from_env
from lorastudio.errors import Invalid

if TYPE_CHECKING:
    from lorastudio.studio.jobs import Capabilities

db_app = typer.Typer(help="The studio database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


class _Stop(BaseException):
    """SIGTERM or SIGINT reached serve: leave whatever it was doing and stop its workers (BaseException, so no
    `except Exception` on the way swallows it)."""


def _raise_stop(signum, frame) -> None:
    raise _Stop


def _device_shares(env: dict, count: int) -> list[dict]:
    """Each spawned worker's environment: on a machine with at least as many CUDA devices as workers, each
    worker sees its own share of them (a worker takes every device it sees), so no two claim one card."""
    if count < 2 or env.get("LORASTUDIO_DEVICE", "auto") == "cpu":
        return [env] * count
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < count:
        return [env] * count
    visible = [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",")] if env.get("CUDA_VISIBLE_DEVICES") else None
    ids = visible[:found] if visible else [str(i) for i in range(found)]
    # As even as it goes: with 3 GPUs and 2 workers the first worker gets two.
    shares = [ids[i::count] for i in range(count)]
    return [env | {"CUDA_VISIBLE_DEVICES": ",".join(share)} for share in shares]


class _WorkerPool:
    """The worker processes `serve` starts: each told to end with serve (`--parent-pid`), one that dies (a
    SIGKILL, the OOM killer) replaced after a backoff, and all stopped cleanly when serve stops."""

    FIRST_DELAY, MAX_DELAY, HEALTHY_AFTER = 1.0, 60.0, 60.0  # seconds
    CHECK_EVERY = 0.2

    def __init__(self, command: list[str], env: dict, count: int):
        self.command = [*command, "--parent-pid", str(os.getpid())]
        self.envs = _device_shares(env, count)
        self.procs: list[subprocess.Popen | None] = [None] * count
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._lock = threading.Lock()  # a replacement is never started once stop() has collected the workers
        self._thread = threading.Thread(target=self._supervise, daemon=True, name="workers")

    def start(self) -> None:
        """Start every worker and the thread that replaces the ones that die."""
        for slot in range(len(self.procs)):
            self._spawn(slot)
        if self.procs:
            self._thread.start()

    def _spawn(self, slot: int) -> None:
        with self._lock:
            if not self._stopping.is_set():
                self.procs[slot] = subprocess.Popen(self.command, env=self.envs[slot])

    def _supervise(self) -> None:
        count = len(self.procs)
        born, delay, due = [time.monotonic()] * count, [self.FIRST_DELAY] * count, [0.0] * count
        while not self._stopping.wait(self.CHECK_EVERY):
            for slot in range(count):
                proc, t = self.procs[slot], time.monotonic()
                if proc is not None and proc.poll() is not None:
                    if t - born[slot] >= self.HEALTHY_AFTER:  # it had worked: a new failure starts the backoff over
                        delay[slot] = self.FIRST_DELAY
                    err.print(
                        f"worker {slot + 1} (pid {proc.pid}) exited with code {proc.returncode} after "
                        f"{t - born[slot]:.0f} s; starting another in {delay[slot]:.0f} s",
                        highlight=False,
                        soft_wrap=True,
                    )
                    self.procs[slot], due[slot] = None, t + delay[slot]
                    delay[slot] = min(delay[slot] * 2, self.MAX_DELAY)
                elif proc is None and t >= due[slot]:
                    self._spawn(slot)
                    born[slot] = time.monotonic()

    def hurry(self) -> None:
        """Stop waiting for workers to give their jobs back: kill them (a second Ctrl-C)."""
        self._hurry.set()

    def stop(self, grace: float) -> None:
        """SIGTERM every worker (each gives its job back at a step boundary); SIGKILL those still running
        after `grace` seconds or after `hurry()`."""
        with self._lock:
            self._stopping.set()
            procs = [p for p in self.procs if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline and not self._hurry.is_set():
            time.sleep(0.1)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes to spawn (default 1; 0: none)")] = None,
    http_processes: Annotated[
        int | None, typer.Option(help="HTTP server processes (default 1; about one a core serves the most clients)")
    ] = None,
) -> None:
    """Start the studio: the JSON API on http://HOST:PORT/api/v1 (docs at /docs) and its worker(s)."""

    def work() -> None:
        import uvicorn

        from lorastudio.web.app import create_app
        from lorastudio.web.urls import API

        settings = settings_from_env()
        bind = host or settings.host
        if not _loopback(bind) and not settings.accounts:
            raise Invalid(
                f"refusing to listen on {bind}: without accounts anyone who can reach it could use the studio. "
                "Turn accounts on (LORASTUDIO_ACCOUNTS=true, then `lorastudio users add NAME`), "
                "or listen on 127.0.0.1 (the default) and reach it through an SSH tunnel"
            )
        from lorastudio.engine import threads_per_process
        from lorastudio.studio.workers import STOP_SECONDS

        count = settings.serve_workers if workers is None else workers
        processes = settings.http_processes if http_processes is None else http_processes
        if not 1 <= processes <= 64:
            raise Invalid("--http-processes is 1 to 64")
        # Forwarded headers only from the proxies named: uvicorn's default believes 127.0.0.1, so a local
        # client could claim any address (and escape the per-address login limit) with X-Forwarded-For.
        proxies = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
        http = {
            "host": bind,
            "port": port or settings.port,
            "log_level": "warning",
            "proxy_headers": bool(proxies),
            "forwarded_allow_ips": proxies,
        }
        env = os.environ | {"LORASTUDIO_HOME": str(settings.home)}
        command = [sys.executable, "-m", "lorastudio.cli", "worker", "--threads", str(threads_per_process(count))]
        pool = _WorkerPool(command, env, count)
        # uvicorn hands SIGTERM back (raises it again) only after its own shutdown: with the default action
        # that would end serve before the `finally` below stops the workers.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _raise_stop)
        try:
            application = create_app(settings)  # migrates and seeds before any worker starts
            if settings.accounts:
                from sqlalchemy import func, select

                from lorastudio.studio.db import User

                with application.state.studio.factory() as session:
                    if not session.scalar(select(func.count()).where(User.password_hash.is_not(None))):
                        err.print("[yellow]Accounts are on but nobody can log in yet: `lorastudio users add NAME`.[/]")
            pool.start()
            err.print(f"LoRA Studio on http://{bind}:{http['port']}{API} (API docs: /docs); {count} worker(s)")
            if processes == 1:
                uvicorn.run(application, **http)
            else:  # each process builds its own app from the environment (the schema is migrated above)
                os.environ["LORASTUDIO_HOME"] = str(settings.home)
                uvicorn.run("lorastudio.web.app:app_from_env", factory=True, workers=processes, **http)
        except _Stop:
            pass
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, frame: pool.hurry())
            pool.stop(grace=STOP_SECONDS + 10)  # a worker gives its job back within STOP_SECONDS

    run_command(False, work, lambda r: None)


def advertised(caps: Capabilities) -> str:
    """Which families a worker chose by its memory, and which it left out with what their smallest job needs."""
    from lorastudio.engine import FAMILIES
    from lorastudio.studio.jobs import generation_memory_mb

    left = {
        name: generation_memory_mb(name, "", width=None, height=None, batch=1) or 0
        for name in FAMILIES
        if name not in caps.families
    }
    if not left:
        return "families: all of them fit this device's memory"
    needs = ", ".join(f"{name} (needs {mb / 1024:.1f} GB)" for name, mb in left.items())
    return (
        f"families: those whose smallest job fits {caps.memory_mb / 1024:.1f} GB; not {needs}. "
        "Pass --family to choose them yourself, --memory-gb to state the usable memory"
    )


@app.command()
def worker(
    name: Annotated[str | None, typer.Option(help="Worker name (default: host-pid@device)")] = None,
    queue: Annotated[
        list[str] | None, typer.Option(help="training, generation and/or export (repeatable; default all)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="torch CPU threads (default: the cores this process may use)", min=1)
    ] = None,
    family: Annotated[
        list[str] | None,
        typer.Option(
            help="Model families it loads: sd15, sdxl, flux1, ... (repeatable; default: every family whose "
            "smallest job fits the device memory)"
        ),
    ] = None,
    memory_gb: Annotated[
        float | None,
        typer.Option(help="Device memory jobs may use, GB (default: the GPU's total, or the RAM on CPU)", min=0.5),
    ] = None,
    devices: Annotated[
        int | None,
        typer.Option(
            help="Devices it hands jobs (default: every CUDA device this process sees; 1 on a CPU, where N > 1 "
            "means N CPU devices sharing the cores)",
            min=1,
            max=64,
        ),
    ] = None,
    parent_pid: Annotated[
        int | None,
        typer.Option(
            help="Stop (giving the jobs in hand back) when the process with this id ends; serve passes its own"
        ),
    ] = None,
) -> None:
    """Run jobs from the studio's table on this machine's devices: as many jobs at once as it has devices,
    each on the devices it asks for (a 4-device training takes all four of a 4-GPU worker).

    SIGTERM, SIGINT or SIGHUP stop it cleanly: the running jobs stop at their next step and go back to the
    queue, where another worker resumes them from their checkpoints."""

    def work() -> None:
        if parent_pid is not None:  # first: serve may be gone before the imports below are done
            from lorastudio.studio.workers import watch_parent

            watch_parent(parent_pid)
        import logging

        import torch

        from lorastudio.studio.context import open_studio
        from lorastudio.studio.jobs import make_queue, wake
        from lorastudio.studio.workers import Worker, consume, stop_on_signals

        settings = settings_from_env()
        from lorastudio.studio.jobs import JOB_TYPES

        types = tuple(queue or JOB_TYPES)
        bad = [q for q in types if q not in JOB_TYPES]
        if bad:
            raise Invalid(f"unknown queue {bad[0][:40]!r}; use --queue with one of: {', '.join(JOB_TYPES)}")
        from lorastudio.engine import FAMILIES
        from lorastudio.studio.jobs import detect

        families = tuple(family) if family else None  # None: the ones that fit the memory (detect)
        unknown = [f for f in families or () if f not in FAMILIES]
        if unknown:
            raise Invalid(f"unknown family {unknown[0][:40]!r}; use --family with one of: {', '.join(FAMILIES)}")
        from lorastudio.engine import threads_per_process

        torch.set_num_threads(threads or threads_per_process(1))  # torch's default ignores a container's quota
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        studio = open_studio(settings)  # migrates the schema first
        caps = detect(settings.device, memory_gb=memory_gb, families=families, devices=devices)
        runner = Worker(settings, name=name, types=types, caps=caps, studio=studio)
        runner.store.check()  # a wrong bucket or credentials: say so now, not at the first job
        huey = make_queue(settings, runner)
        stop_on_signals(runner)  # before the first claim: from here on a stop gives the job in hand back
        runner.start_presence()
        wake(huey)  # look at the table once at start: jobs left by a restart resume now
        count = len(caps.device_ids)
        err.print(
            f"worker {runner.name} ({count} x {caps.device}, {caps.memory_mb / 1024:.0f} GB each, "
            f"{', '.join(caps.families)}): waiting for {' and '.join(types)} jobs"
            if count > 1
            else f"worker {runner.name} ({caps.device}, {caps.memory_mb / 1024:.0f} GB, {', '.join(caps.families)}): "
            f"waiting for {' and '.join(types)} jobs"
        )
        if families is None:
            err.print(advertised(caps))
        try:
            clean = consume(runner, huey)
        finally:
            runner.stop_presence()
        err.print(f"worker {runner.name} stopped" + ("" if clean else " (its jobs were given back mid-step)"))
        if not clean:
            raise typer.Exit(1)

    run_command(False, work, lambda r: None)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the studio database to the newest schema."""

    def work() -> str:
        from lorastudio.studio import bootstrap

        settings = settings_from_env()
        bootstrap.prepare(settings)
        return settings.db_url

    run_command(False, work, lambda url: out.print(f"database at {url} is up to date"))
