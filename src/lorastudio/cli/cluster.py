"""`lorastudio workers` and `lorastudio storage check`: looking after a studio spread over machines."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lorastudio.cli.common import JsonOpt, app, out, run_command, settings_from_env

storage_app = typer.Typer(help="Where the studio keeps its files (LORASTUDIO_BLOB_URL).", no_args_is_help=True)
app.add_typer(storage_app, name="storage")


@app.command("workers")
def workers_list(as_json: JsonOpt = False) -> None:
    """List the studio's workers: devices, memory, families, queues, state and current jobs."""

    def work() -> list[dict]:
        from lorastudio.studio import jobs
        from lorastudio.studio.context import open_studio

        studio = open_studio(settings_from_env())
        with studio.factory() as session:
            rows = jobs.list_workers(session, stale_seconds=studio.settings.lease_seconds, viewer=jobs.OPERATOR)
        return [w.model_dump(mode="json") for w in rows]

    def render(rows: list[dict]) -> None:
        if not rows:
            out.print("No worker has registered yet: start one with `lorastudio worker`.")
            return
        table = Table(title="Workers")
        for col in ("name", "state", "device", "memory", "families", "queues", "jobs", "done", "last seen"):
            table.add_column(col)
        for w in rows:
            running = w.get("current_job_ids") or ([w["current_job_id"]] if w["current_job_id"] else [])
            count = len(w.get("devices") or ()) or 1
            table.add_row(
                w["name"],
                w["state"],
                f"{count} x {w['device']}" if count > 1 else w["device"],
                f"{w['memory_mb'] / 1024:.0f} GB" + (" each" if count > 1 else ""),
                ", ".join(w["families"]),
                ", ".join(w["queues"]),
                ", ".join(str(j) for j in running),
                str(w["jobs_done"]),
                w["seen_at"][:19],
            )
        out.print(table)

    run_command(as_json, work, render)


@storage_app.command("check")
def storage_check(
    create: Annotated[bool, typer.Option(help="Create the s3:// bucket when it does not exist")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check that the file store can be reached and written (run it on every machine after setting it up)."""

    def work() -> dict:
        from lorastudio.studio.blobs import make_store

        settings = settings_from_env()
        store = make_store(settings)
        if create and settings.blob_url:
            from lorastudio.studio.blobs import create_bucket

            create_bucket(store)
        store.check()
        probe = store.put_bytes(b"lorastudio storage check\n")  # a write and a read back, not only a look
        if store.path(probe).read_bytes() != b"lorastudio storage check\n":
            from lorastudio.errors import Unavailable

            raise Unavailable("the file store gave back other bytes than were written; check the store")
        return {"store": settings.blob_url or str(settings.blobs_dir), "writable": True}

    run_command(as_json, work, lambda r: out.print(f"file store {r['store']}: reachable and writable"))
