"""`lorastudio serve`, `lorastudio worker` and `lorastudio db upgrade`: the studio as a server."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from typing import Annotated

import typer

from lorastudio.cli.common import app, err, out, run_command, settings_from_env
from lorastudio.errors import Invalid

db_app = typer.Typer(help="The studio database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


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

        settings = settings_from_env()
        bind = host or settings.host
        if not _loopback(bind) and not settings.accounts:
            raise Invalid(
                f"refusing to listen on {bind}: without accounts anyone who can reach it could use the studio. "
                "Turn accounts on (LORASTUDIO_ACCOUNTS=true, then `lorastudio users add NAME`), "
                "or listen on 127.0.0.1 (the default) and reach it through an SSH tunnel"
            )
        from lorastudio.engine.models.device import threads_per_process

        count = settings.serve_workers if workers is None else workers
        application = create_app(settings)  # migrates and seeds before any worker starts
        if settings.accounts:
            from sqlalchemy import func, select

            from lorastudio.studio.models import User

            with application.state.studio.factory() as session:
                if not session.scalar(select(func.count()).where(User.password_hash.is_not(None))):
                    err.print("[yellow]Accounts are on but nobody can log in yet: `lorastudio users add NAME`.[/]")
        env = os.environ | {"LORASTUDIO_HOME": str(settings.home)}
        command = [sys.executable, "-m", "lorastudio.cli", "worker", "--threads", str(threads_per_process(count))]
        procs = [subprocess.Popen(command, env=env) for _ in range(count)]
        err.print(f"LoRA Studio on http://{bind}:{port or settings.port}/api/v1 (API docs: /docs); {count} worker(s)")
        processes = settings.http_processes if http_processes is None else http_processes
        if not 1 <= processes <= 64:
            raise Invalid("--http-processes is 1 to 64")
        try:
            if processes == 1:
                uvicorn.run(application, host=bind, port=port or settings.port, log_level="warning")
            else:  # each process builds its own app from the environment (the schema is migrated above)
                os.environ["LORASTUDIO_HOME"] = str(settings.home)
                uvicorn.run("lorastudio.web.app:app_from_env", factory=True, workers=processes, host=bind,
                            port=port or settings.port, log_level="warning")  # fmt: skip
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    run_command(False, work, lambda r: None)


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
        typer.Option(help="Model families it loads: sd15, sdxl, ... (repeatable; default all)"),
    ] = None,
    memory_gb: Annotated[
        float | None,
        typer.Option(help="Device memory jobs may use, GB (default: the GPU's total, or the RAM on CPU)", min=0.5),
    ] = None,
) -> None:
    """Run jobs from the studio's table, one at a time (one worker per GPU: CUDA_VISIBLE_DEVICES=N each)."""

    def work() -> None:
        import logging

        import torch

        from lorastudio.studio import setup
        from lorastudio.studio.queue import make_queue, wake
        from lorastudio.studio.worker import Worker

        settings = settings_from_env()
        from lorastudio.studio.jobs import JOB_TYPES

        types = tuple(queue or JOB_TYPES)
        bad = [q for q in types if q not in JOB_TYPES]
        if bad:
            raise Invalid(f"unknown queue {bad[0][:40]!r}; use --queue with one of: {', '.join(JOB_TYPES)}")
        from lorastudio.engine.models.families import FAMILIES
        from lorastudio.studio.capabilities import detect

        families = tuple(family or FAMILIES)
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise Invalid(f"unknown family {unknown[0][:40]!r}; use --family with one of: {', '.join(FAMILIES)}")
        from lorastudio.engine.models.device import threads_per_process

        torch.set_num_threads(threads or threads_per_process(1))  # torch's default ignores a container's quota
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        setup.prepare(settings)
        caps = detect(settings.device, memory_gb=memory_gb, families=families)
        runner = Worker(settings, name=name, types=types, caps=caps)
        runner.store.check()  # a wrong bucket or credentials: say so now, not at the first job
        huey = make_queue(settings, runner)
        runner.start_presence()
        wake(huey)  # look at the table once at start: jobs left by a restart resume now
        err.print(f"worker {runner.name} ({caps.device}, {caps.memory_mb / 1024:.0f} GB, {', '.join(families)}): "
                  f"waiting for {' and '.join(types)} jobs")  # fmt: skip
        consumer = huey.create_consumer(workers=1, worker_type="thread", periodic=True, initial_delay=0.1,
                                        backoff=1.15, max_delay=1.0)  # fmt: skip
        try:
            consumer.run()
        finally:
            runner.stop_presence()

    run_command(False, work, lambda r: None)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the studio database to the newest schema."""

    def work() -> str:
        from lorastudio.studio import setup

        settings = settings_from_env()
        setup.prepare(settings)
        return settings.db_url

    run_command(False, work, lambda url: out.print(f"database at {url} is up to date"))
