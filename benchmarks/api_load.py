"""API load: library and job-progress latency over real HTTP under 100 concurrent clients, vs plain SQL.

Builds a fresh studio in a temp dir, starts it as `lorastudio serve --http-processes N` does (uvicorn with
httptools and uvloop, N processes; a subprocess, so the clients do not share its GIL), seeds 10,000 LoRAs with varied
metrics (owner 1 and shipped ones, a few deleted) and a few hundred jobs with progress JSON by bulk
inserts, then measures p50/p95 latency of GET /api/v1/loras (default list, search, kind+family filter,
each sort, a deep page) and GET /api/v1/jobs/{id}:
  - api@100: 100 concurrent clients (asyncio + one httpx.AsyncClient, i.e. one connection, each), each
             sending a bounded number of requests back to back (a closed loop);
  - api@1:   one client alone, the same requests: the service time without queueing;
  - sql:     the same queries as plain sqlite3 SQL (count + page, as the service runs them), timed in
             this process: the floor a request cannot go below.
Prints each measure's p50/p95, throughput, server and client CPU per request and the ratio api/sql, and
whether the library target (p95 < 50 ms at 100 clients, default list) is met.

A server that stops answering under the load (an earlier one did: its capped connection pool deadlocked)
is given --stall-after seconds and reported. When the target is missed it prints a diagnosis: the
query plans of the statements the service sends, where one request's time goes (SQL, ORM, pydantic,
framework, HTTP), a cProfile of in-process requests, and candidate fixes timed on a copy of the database.
About 2.5 minutes on 2 cores.

    python benchmarks/api_load.py [--loras 10000] [--jobs 300] [--clients 100] [--requests 2] [--serial 30]
                                  [--processes 2] [--stall-after 32] [--diagnose] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from lorastudio.config import Settings

API = "/api/v1"
OWNER = 1  # the local user create_app makes
TARGET_P95_MS = 50.0
SORT_COLUMNS = {
    "created": "created_at",
    "name": "name",
    "usage": "usage_count",
    "success": "success_rate",
    "rating": "rating_avg",
    "training_time": "training_seconds",
}
SEARCH_TERMS = ["monk", "crane", "neon", "sword", "storm", "tiger"]
FILTERS = [("character", "sdxl"), ("fighting_style", "sd15"), ("pose", "toyworld"), ("visual_style", "sdxl")]
PER_PAGE = 20

# --- the studio -------------------------------------------------------------------------------------


def serve(home: Path, port: int, processes: int) -> None:
    """The server side (run in a subprocess): the studio's app as `lorastudio serve --http-processes N` runs it."""
    from lorastudio.quiet import quiet_libraries

    quiet_libraries()
    import uvicorn

    from lorastudio.web.app import create_app

    app = create_app(Settings(home=home, device="cpu"))  # migrates and seeds once, before any child starts
    # A long keep-alive so the clients' connections survive the pauses between measures.
    options = dict(host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=120)
    if processes == 1:
        uvicorn.run(app, **options)
    else:
        os.environ |= {"LORASTUDIO_HOME": str(home), "LORASTUDIO_DEVICE": "cpu"}
        uvicorn.run("lorastudio.web.app:app_from_env", factory=True, workers=processes, **options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, log: Path, processes: int) -> tuple[subprocess.Popen, str]:
    """Start the server (its output to log) and wait until /health answers (it imports torch: seconds)."""
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(home), str(port), str(processes)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before answering; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}{API}/health", timeout=1).status_code == 200:
                return proc, base
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not answer /health within 180 s")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (several HTTP processes), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry)] = int(_stat(int(entry))[1])
    tree, total = {pid}, 0.0
    for p in sorted(parents):
        if parents[p] in tree:
            tree.add(p)
    for p in tree:
        with contextlib.suppress(OSError):
            fields = _stat(p)
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# --- seeding ----------------------------------------------------------------------------------------

ADJECTIVES = "crimson jade iron silent neon golden shadow storm frost ember azure wild stone velvet".split()
NOUNS = "monk crane tiger dragon ronin sword lotus viper phoenix fist mantis falcon oni kitsune".split()
KINDS = ["character", "fighting_style", "pose", "visual_style"]
FAMILIES = ["sd15", "sdxl", "toyworld"]


def lora_rows(n: int, rng: random.Random) -> list[dict]:
    """n library rows whose metrics look like a used library: heavy-tailed usage, many never judged or
    rated (None metrics, which the sorts put last), training time only for what was trained here."""
    start = datetime(2025, 1, 1)
    rows = []
    for i in range(n):
        adj, noun = rng.choice(ADJECTIVES), rng.choice(NOUNS)
        shipped = rng.random() < 0.05
        source = "prebuilt" if shipped else rng.choices(["trained", "imported"], [0.8, 0.2])[0]
        usage = int(rng.paretovariate(1.2)) - 1 if rng.random() < 0.8 else 0
        judged = rng.randint(0, usage * 4) if usage else 0
        kept = rng.randint(0, judged)
        rated = rng.randint(1, 40) if rng.random() < 0.3 else 0
        rating_sum = sum(rng.randint(1, 5) for _ in range(rated))
        trigger = f"{adj}{noun}{i % 97}"
        extra = rng.choice(["kungfustyle", "swordstyle", "mantisstyle", "cranestyle", ""])
        triggers = [t for t in (trigger, extra) if t]
        rows.append(
            {
                "owner_id": None if shipped else OWNER,
                "name": f"{adj.title()} {noun.title()} v{rng.randint(1, 9)}",
                "kind": rng.choices(KINDS, [0.45, 0.25, 0.15, 0.15])[0],
                "family": rng.choices([*FAMILIES, None], [0.4, 0.35, 0.23, 0.02])[0],
                "trigger_words": triggers,
                "triggers_text": " ".join(triggers),
                "description": f"A {adj} {noun} fighter, {rng.choice(['red', 'blue', 'green', 'white'])} gi, "
                f"{rng.choice(['low stance', 'flying kick', 'guard up', 'sword drawn'])}, action scene.",
                "recommended_strength": round(rng.uniform(0.4, 1.0), 2),
                "source": source,
                "usage_count": usage,
                "kept_count": kept,
                "judged_count": judged,
                "success_rate": kept / judged if judged else None,
                "rating_sum": rating_sum,
                "rating_count": rated,
                "rating_avg": rating_sum / rated if rated else None,
                "training_seconds": round(rng.lognormvariate(6.3, 0.6), 1) if source == "trained" else None,
                "deleted": rng.random() < 0.03,
                "created_at": start + timedelta(seconds=rng.randint(0, 365 * 86400)),
            }
        )
    return rows


def job_rows(n: int, rng: random.Random) -> list[dict]:
    """n jobs; training ones carry the 200-point loss curve and preview ids their progress really holds."""
    start = datetime(2025, 6, 1)
    rows = []
    for _ in range(n):
        training = rng.random() < 0.6
        status = rng.choices(["succeeded", "running", "pending", "failed", "canceled"], [0.6, 0.1, 0.1, 0.1, 0.1])[0]
        total = rng.choice([400, 800, 1500])
        step = total if status == "succeeded" else rng.randint(0, total)
        progress = {"phase": "train", "step": step, "total": total, "message": f"step {step}/{total}"}
        if training:
            points = min(step, 200)
            progress |= {
                "loss": round(rng.uniform(0.02, 0.2), 6),
                "eta_seconds": (total - step) * 0.4,
                "losses": [[int(k * step / max(points, 1)), round(rng.uniform(0.02, 0.3), 6)] for k in range(points)],
                "previews": [f"{rng.getrandbits(256):064x}" for _ in range(rng.randint(0, 8))],
            }
        created = start + timedelta(seconds=rng.randint(0, 90 * 86400))
        rows.append(
            {
                "owner_id": OWNER,
                "type": "training" if training else "generation",
                "status": status,
                "request": {"dataset_id": rng.randint(1, 50), "steps": total, "kind": "character", "seed": 1234}
                if training
                else {"prompt": "johnhero doing a flying kick, dojo at dusk", "loras": [{"id": 1, "strength": 0.8}]},
                "attempts": 1 if status != "pending" else 0,
                "progress": progress,
                "result": {"lora_id": 1, "version": 1} if status == "succeeded" and training else None,
                "created_at": created,
                "started_at": created + timedelta(seconds=5) if status != "pending" else None,
                "finished_at": created + timedelta(seconds=600) if status in ("succeeded", "failed") else None,
            }
        )
    return rows


def seed(settings: Settings, n_loras: int, n_jobs: int) -> None:
    """Bulk inserts through SQLAlchemy (one executemany per table): seconds, not minutes."""
    from sqlalchemy import insert

    from lorastudio.studio.db import Job, Lora, make_engine, session_factory

    rng = random.Random(0)
    engine = make_engine(settings)
    with session_factory(engine)() as session:
        session.execute(insert(Lora), lora_rows(n_loras, rng))
        session.execute(insert(Job), job_rows(n_jobs, rng))
        session.commit()
    with engine.connect() as conn:  # as a long-lived studio would have: statistics for the planner
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    engine.dispose()


# --- the measures -----------------------------------------------------------------------------------


def measures(db: Path, job_ids: list[int]) -> list[dict]:
    """Each measure: the API paths it cycles through and the same queries as plain SQL (where, params,
    sort column and offset)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        visible = conn.execute(
            "SELECT count(*) FROM loras WHERE (owner_id = ? OR owner_id IS NULL) AND deleted = 0", (OWNER,)
        ).fetchone()[0]
    deep = max(1, visible // PER_PAGE - 2)  # among the last pages: the offset skips ~all rows
    search = " AND id IN (SELECT rowid FROM loras_fts WHERE loras_fts MATCH ?)"  # the service's trigram index

    def library(name, queries, sort="created", page=1):
        paths, sql = [], []
        for params, extra, values in queries:
            query = "&".join(f"{k}={v}" for k, v in params.items())
            paths.append(f"{API}/loras?{query}" if query else f"{API}/loras")
            sql.append((extra, values))
        return {"name": name, "library": True, "paths": paths, "sql": sql, "sort": sort, "page": page}

    out = [
        library("list (default)", [({}, "", ())]),
        library("search q=", [({"q": t}, search, (f'"{t}"',)) for t in SEARCH_TERMS]),
        library(
            "filter kind+family",
            [({"kind": k, "family": f}, " AND kind = ? AND family = ?", (k, f)) for k, f in FILTERS],
        ),
    ]
    for sort in ("usage", "success", "rating", "training_time", "name"):
        out.append(library(f"sort={sort}", [({"sort": sort}, "", ())], sort=sort))
    out.append(library(f"deep page {deep}", [({"page": deep}, "", ())], page=deep))
    out.append({"name": "job progress", "library": False, "paths": [f"{API}/jobs/{i}" for i in job_ids]})
    return out


def plain_sql(db: Path, m: dict, repeats: int) -> list[float]:
    """The measure's queries in plain SQL: the same count and page the service runs, rows fetched."""
    conn = sqlite3.connect(db)
    latencies = []
    try:
        for k in range(repeats):
            t0 = time.perf_counter()
            if m["library"]:
                extra, values = m["sql"][k % len(m["sql"])]
                where = f"WHERE (owner_id = ? OR owner_id IS NULL) AND deleted = 0{extra}"
                conn.execute(f"SELECT count(*) FROM loras {where}", (OWNER, *values)).fetchone()
                column = SORT_COLUMNS[m["sort"]]
                conn.execute(
                    f"SELECT * FROM loras {where} ORDER BY {column} DESC NULLS LAST, id DESC LIMIT ? OFFSET ?",
                    (OWNER, *values, PER_PAGE, (m["page"] - 1) * PER_PAGE),
                ).fetchall()
            else:
                job_id = int(m["paths"][k % len(m["paths"])].rsplit("/", 1)[1])
                conn.execute("SELECT * FROM jobs WHERE id = ? AND owner_id = ?", (job_id, OWNER)).fetchone()
            latencies.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return latencies


async def http_load(
    clients: list[httpx.AsyncClient],
    paths: list[str],
    per_client: int,
    server_pid: int | None = None,
    deadline_s: float | None = None,
) -> dict:
    """Every client sends per_client requests back to back, all clients at once: the latencies of the
    answered ones, the failures, the wall time and the CPU the server and this process (the clients)
    spent (warm-up excluded). Past deadline_s the requests still out are counted as unanswered."""

    async def warm(client: httpx.AsyncClient) -> None:
        # Opens the connection on /health, which takes no database connection, so a server that stalls
        # under load still gets every client connected and the stall shows in the timed part.
        (await client.get(f"{API}/health")).raise_for_status()

    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def run(i: int, client: httpx.AsyncClient) -> None:
        for k in range(per_client):
            t0 = time.perf_counter()
            try:
                response = await client.get(paths[(i * per_client + k) % len(paths)])
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            if response.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[f"HTTP {response.status_code}"] = errors.get(f"HTTP {response.status_code}", 0) + 1

    await asyncio.gather(*(warm(c) for c in clients))
    server0 = cpu_seconds(server_pid) if server_pid else 0.0
    t0, client0 = time.perf_counter(), time.process_time()
    tasks = [asyncio.create_task(run(i, c)) for i, c in enumerate(clients)]
    _, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall, client_cpu = time.perf_counter() - t0, time.process_time() - client0
    server_cpu = cpu_seconds(server_pid) - server0 if server_pid else 0.0
    sent = len(clients) * per_client
    return {
        "latencies": latencies,
        "errors": errors,
        "unanswered": sent - len(latencies) - sum(errors.values()),
        "sent": sent,
        "wall": wall,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


def pct(samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank), in ms; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] * 1000


async def solo_and_sql(base: str, ms: list[dict], args, db: Path) -> dict[str, dict]:
    """Each measure with one client alone (service time, no queueing) and as plain SQL."""
    out = {}
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for m in ms:
            solo = (await http_load([client], m["paths"], args.serial))["latencies"]
            sql = plain_sql(db, m, args.serial)
            out[m["name"]] = {
                "solo_p50_ms": round(pct(solo, 50), 2),
                "solo_p95_ms": round(pct(solo, 95), 2),
                "sql_p50_ms": round(pct(sql, 50), 3),
                "sql_p95_ms": round(pct(sql, 95), 3),
            }
    return out


async def loaded(base: str, server_pid: int, ms: list[dict], args, deadline_s: float | None) -> list[dict]:
    """Each measure with all clients at once; stops at the first measure that fails or stalls (the
    server is then not in a state to measure anything else)."""
    results = []
    async with contextlib.AsyncExitStack() as stack:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=120, limits=limits))
            for _ in range(args.clients)
        ]
        for m in ms:
            run = await http_load(clients, m["paths"], args.requests, server_pid, deadline_s)
            lat, n = run["latencies"], max(1, len(run["latencies"]))
            results.append(
                {
                    "measure": m["name"],
                    "library": m["library"],
                    "sent": run["sent"],
                    "answered": len(lat),
                    "errors": run["errors"],
                    "unanswered": run["unanswered"],
                    "wall_s": round(run["wall"], 2),
                    "api_p50_ms": round(pct(lat, 50), 2),
                    "api_p95_ms": round(pct(lat, 95), 2),
                    "rps": round(len(lat) / run["wall"], 1),
                    "server_cpu_ms_per_req": round(run["server_cpu"] / n * 1000, 2),
                    "server_cores": round(run["server_cpu"] / run["wall"], 2),
                    "client_cpu_ms_per_req": round(run["client_cpu"] / n * 1000, 2),
                }
            )
            if not args.json:
                print(f"  {m['name']}: {len(lat)}/{run['sent']} answered in {run['wall']:.1f} s", file=sys.stderr)
            if run["errors"] or run["unanswered"]:
                break
    return results


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # a stalled server can sit in its graceful shutdown for minutes
        proc.kill()
        proc.wait()


# --- diagnosis --------------------------------------------------------------------------------------


def _median_ms(fn, n: int) -> float:
    fn()  # warm: statement caches, pages
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return pct(samples, 50)


def _group(filename: str, func: str) -> str:
    """A profiler entry's package, so the profile reads as 'where the time goes' rather than 900 lines."""
    if filename == "~":
        if "sqlite3" in func:
            return "sqlite3 (the queries themselves)"
        if "pydantic_core" in func:
            return "pydantic-core (validation/serialization)"
        return "builtins"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].split(".", 1)[0]
    if "/lorastudio/" in filename:
        return "lorastudio"
    return "stdlib " + Path(filename).stem


def what_ifs(db: Path, deep_page: int, repeats: int) -> list[dict]:
    """The slow statements again on a copy of the database, before and after each candidate fix."""
    copy = db.with_name("what_if.db")

    def fresh_copy() -> sqlite3.Connection:  # each fix alone, on the database as the studio has it
        copy.unlink(missing_ok=True)
        with contextlib.closing(sqlite3.connect(db)) as src, contextlib.closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)
        return sqlite3.connect(copy)

    conn = fresh_copy()
    vis = "(owner_id = 1 OR owner_id IS NULL) AND deleted = 0"
    like = "(lower(name) LIKE '%monk%' OR lower(triggers_text) LIKE '%monk%' OR lower(description) LIKE '%monk%')"
    order = "ORDER BY created_at DESC NULLS LAST, id DESC"
    offset = (deep_page - 1) * PER_PAGE
    cursor = conn.execute(f"SELECT created_at, id FROM loras WHERE {vis} {order} LIMIT 1 OFFSET ?", (offset - 1,))
    last_created, last_id = cursor.fetchone()
    keyset = f"AND (created_at < '{last_created}' OR (created_at = '{last_created}' AND id < {last_id}))"
    fts = "id IN (SELECT rowid FROM wi_fts WHERE wi_fts MATCH '\"monk\"')"
    cases = [
        # (what, statement now, setup of the fix, statement after)
        (
            "count(*) of the visible library",
            f"SELECT count(*) FROM loras WHERE {vis}",
            "CREATE INDEX wi_visible ON loras(deleted, owner_id)",
            f"SELECT count(*) FROM loras WHERE {vis}",
        ),
        (
            "count(*) kind+family",
            f"SELECT count(*) FROM loras WHERE {vis} AND kind = 'character' AND family = 'sdxl'",
            "CREATE INDEX wi_kind_family ON loras(kind, family, deleted, owner_id)",
            f"SELECT count(*) FROM loras WHERE {vis} AND kind = 'character' AND family = 'sdxl'",
        ),
        (
            "search count(*): lower() LIKE '%q%' -> FTS5 trigram",
            f"SELECT count(*) FROM loras WHERE {vis} AND {like}",
            "CREATE VIRTUAL TABLE wi_fts USING fts5(name, triggers_text, description, content='loras', "
            "content_rowid='id', tokenize='trigram'); INSERT INTO wi_fts(wi_fts) VALUES('rebuild')",
            f"SELECT count(*) FROM loras WHERE {vis} AND {fts}",
        ),
        (
            "sort=name page: sort of every visible row -> index on name",
            f"SELECT * FROM loras WHERE {vis} ORDER BY name DESC NULLS LAST, id DESC LIMIT 20",
            "CREATE INDEX wi_name ON loras(name)",
            f"SELECT * FROM loras WHERE {vis} ORDER BY name DESC NULLS LAST, id DESC LIMIT 20",
        ),
        (
            f"deep page {deep_page}: OFFSET {offset} -> keyset (after the previous page's last row)",
            f"SELECT * FROM loras WHERE {vis} {order} LIMIT 20 OFFSET {offset}",
            "",
            f"SELECT * FROM loras WHERE {vis} {keyset} {order} LIMIT 20",
        ),
    ]
    out = []
    try:
        for what, before, setup, after in cases:
            conn.close()
            conn = fresh_copy()

            def plan(sql, conn=conn):
                return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]

            before_ms = _median_ms(lambda sql=before, conn=conn: conn.execute(sql).fetchall(), repeats)
            before_plan = plan(before)
            if setup:
                conn.executescript(setup + "; ANALYZE;")
            after_ms = _median_ms(lambda sql=after, conn=conn: conn.execute(sql).fetchall(), repeats)
            same = conn.execute(before).fetchall() == conn.execute(after).fetchall()
            out.append(
                {
                    "what": what,
                    "fix": setup or "cursor pagination (no schema change)",
                    "before_ms": round(before_ms, 3),
                    "before_plan": before_plan,
                    "after_ms": round(after_ms, 3),
                    "after_plan": plan(after),
                    "same_rows": same,
                }
            )
    finally:
        conn.close()
        copy.unlink(missing_ok=True)
    return out


def diagnose(settings: Settings, ms: list[dict], repeats: int) -> dict:
    """Where one request's time goes, measured in this process with the server's own code: the SQL the
    service sends (captured) and its plans, the service call, the whole ASGI app with its thread-pool hops
    run inline (so one profiler sees everything), a cProfile of that, and candidate fixes timed."""
    import cProfile
    import pstats

    from lorastudio.quiet import quiet_libraries

    quiet_libraries()
    import anyio.to_thread
    from sqlalchemy import event

    from lorastudio.studio import jobs, library
    from lorastudio.studio.db import make_engine, session_factory
    from lorastudio.web.app import create_app

    engine = make_engine(settings)
    factory = session_factory(engine)
    sent: list[tuple[str, tuple]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((statement, parameters))

    deep = next(m["page"] for m in ms if m["name"].startswith("deep"))
    job_id = int(next(m for m in ms if not m["library"])["paths"][0].rsplit("/", 1)[1])
    cases = {
        "list (default)": ({}, f"{API}/loras"),
        "search q=monk": ({"q": "monk"}, f"{API}/loras?q=monk"),
        "filter kind+family": ({"kind": "character", "family": "sdxl"}, f"{API}/loras?kind=character&family=sdxl"),
        "sort=success": ({"sort": "success"}, f"{API}/loras?sort=success"),
        "sort=name": ({"sort": "name"}, f"{API}/loras?sort=name"),
        f"deep page {deep}": ({"page": deep}, f"{API}/loras?page={deep}"),
        "job progress": (None, f"{API}/jobs/{job_id}"),
    }
    db = sqlite3.connect(settings.home / "studio.db")
    app = create_app(settings)
    real_run_sync = anyio.to_thread.run_sync

    hops = [0]

    async def inline(func, *args, **_kw):  # the thread-pool hop minus the thread: one profiler sees it all
        hops[0] += 1
        return func(*args)

    async def asgi_get(path: str) -> None:
        # The app called as uvicorn calls it, minus the socket and HTTP parsing (no client in the profile).
        route, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": route,
            "raw_path": route.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"studio")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        status = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"GET {path}: {status}")

    async def asgi_median(path: str, n: int) -> float:
        await asgi_get(path)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            await asgi_get(path)
            samples.append(time.perf_counter() - t0)
        return pct(samples, 50)

    rows, plans = [], {}
    anyio.to_thread.run_sync = inline
    try:
        for name, (kw, path) in cases.items():
            sent.clear()
            with factory() as session:
                if kw is None:
                    jobs.get_job(session, owner_id=OWNER, job_id=job_id)
                else:
                    library.list_loras(session, owner_id=OWNER, **kw)
            statements = [(s, p) for s, p in sent if s.lstrip().upper().startswith("SELECT")]
            plans[name] = [
                {
                    "sql": " ".join(s.split()),
                    "plan": [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {s}", p)],
                    "ms": round(_median_ms(lambda s=s, p=p: db.execute(s, p).fetchall(), repeats), 3),
                }
                for s, p in statements
            ]

            def service(kw=kw):
                with factory() as session:
                    if kw is None:
                        return jobs.get_job(session, owner_id=OWNER, job_id=job_id)
                    return library.list_loras(session, owner_id=OWNER, **kw)

            rows.append(
                {
                    "case": name,
                    "sql_ms": round(sum(p["ms"] for p in plans[name]), 3),
                    "service_ms": round(_median_ms(service, repeats), 3),
                    "json_ms": round(_median_ms(service().model_dump_json, repeats), 3),
                    "asgi_ms": round(asyncio.run(asgi_median(path, repeats)), 3),
                }
            )
        hops[0] = 0
        asyncio.run(asgi_get(f"{API}/loras"))
        hops_per_request = hops[0]
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(asgi_median(f"{API}/loras", repeats))
        profiler.disable()
    finally:
        anyio.to_thread.run_sync = real_run_sync

    async def thread_tokens() -> int:
        return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    pool = {
        "pool_size": engine.pool.size(),
        "max_overflow": engine.pool._max_overflow,
        "pool_timeout_s": engine.pool._timeout,
        "threadpool_tokens": asyncio.run(thread_tokens()),
        "threadpool_hops_per_request": hops_per_request,
    }
    db.close()
    engine.dispose()
    stats = pstats.Stats(profiler).stats  # {(file, line, func): (cc, nc, tottime, cumtime, callers)}
    total = sum(v[2] for v in stats.values())
    groups: dict[str, float] = {}
    for (filename, _line, func), v in stats.items():
        groups[_group(filename, func)] = groups.get(_group(filename, func), 0.0) + v[2]
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    return {
        "pool": pool,
        "breakdown": rows,
        "plans": plans,
        "profile_by_package": {k: round(100 * v / total, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "profile_top": [
            {"function": f"{Path(f).name}:{line}({func})", "calls": v[1], "own_ms_per_request": v[2] / repeats * 1000}
            for (f, line, func), v in top
        ],
        "what_ifs": what_ifs(settings.home / "studio.db", deep, repeats),
    }


# --- main -------------------------------------------------------------------------------------------


def print_table(results: list[dict]) -> None:
    head = (
        f"{'measure':20s} {'api@100 p50':>11s} {'p95':>7s} {'req/s':>6s} {'srv ms/req':>10s} {'cores':>5s} "
        f"{'cli ms/req':>10s} {'api@1 p50':>9s} {'p95':>6s} {'sql p50':>7s} {'p95':>6s} {'api/sql p95':>11s} "
        f"{'@1/sql':>6s}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['measure']:20s} {r['api_p50_ms']:11.1f} {r['api_p95_ms']:7.1f} {r['rps']:6.1f} "
            f"{r['server_cpu_ms_per_req']:10.2f} {r['server_cores']:5.2f} {r['client_cpu_ms_per_req']:10.2f} "
            f"{r['solo_p50_ms']:9.2f} {r['solo_p95_ms']:6.2f} {r['sql_p50_ms']:7.2f} {r['sql_p95_ms']:6.2f} "
            f"{r['ratio_p95']:10.0f}x {r['solo_ratio_p95']:5.1f}x"
        )


def _short(sql: str) -> str:
    # The ORM lists every column; the plan depends on FROM/WHERE/ORDER BY, so show those.
    return re.sub(r"SELECT (?!count)(.*?) FROM", "SELECT ... FROM", sql)[:160]


def print_diagnosis(d: dict, rows: list[dict], clients: int, stalled: bool) -> None:
    listing = next(r for r in rows if r["measure"] == "list (default)")
    pool = d["pool"]
    if stalled:
        print(
            f"\nDiagnosis. The stall: the engine's pool holds {pool['pool_size']} + {pool['max_overflow']} "
            f"connections (timeout {pool['pool_timeout_s']:.0f} s); sync endpoints and yield dependencies share "
            f"{pool['threadpool_tokens']} thread-pool tokens. A request's session takes its connection in the "
            "endpoint's thread and gives it back in the dependency's exit, after the response is sent, which is "
            f"another thread-pool hop. Once {pool['threadpool_tokens']} endpoints wait for a connection (about "
            f"{pool['threadpool_tokens'] + pool['pool_size'] + pool['max_overflow']} requests in flight) every token "
            "is taken, while the requests holding the connections wait for a token to validate, send and close: "
            "nothing moves until the pool timeout, then HTTP 500, and again."
        )
    print(
        f"\nQueueing: {clients} clients back to back against {listing['rps']:.0f} req/s means "
        f"~{clients / listing['rps'] * 1000:.0f} ms a request (Little's law); the server used "
        f"{listing['server_cores']:.2f} cores at {listing['server_cpu_ms_per_req']:.1f} ms CPU a request. "
        f"p95 < {TARGET_P95_MS:.0f} ms at {clients} clients needs >= {clients / TARGET_P95_MS * 1000:.0f} req/s, "
        f"i.e. <= {TARGET_P95_MS / clients:.2f} ms of server CPU a request on one core."
    )
    asgi = next(r for r in d["breakdown"] if r["case"] == "list (default)")["asgi_ms"]
    rest = listing["server_cpu_ms_per_req"] - asgi
    print(
        f"HTTP layer: under load the server spent {listing['server_cpu_ms_per_req']:.1f} ms CPU per list request, "
        f"in-process the whole app takes {asgi:.1f} ms"
        + (
            f": the other {rest:.1f} ms are HTTP parsing, the sockets and {pool['threadpool_hops_per_request']} "
            f"thread-pool hops a request contending for one GIL with {pool['threadpool_tokens']} threads."
            if rest > 0.5
            else ": HTTP and the sockets add next to nothing; the app itself (ORM, validation, framework) is the cost."
        )
    )
    print(
        f"The clients share the {os.cpu_count()} cores: {listing['client_cpu_ms_per_req']:.1f} ms of client CPU a "
        "request is CPU the server does not get."
    )
    print("\nOne request, alone, in-process (median ms): SQL the service sends | service call | JSON | whole ASGI app")
    for r in d["breakdown"]:
        print(
            f"  {r['case']:20s} sql {r['sql_ms']:7.3f}   service {r['service_ms']:7.3f}   "
            f"json {r['json_ms']:6.3f}   asgi {r['asgi_ms']:7.3f}"
        )
    print("\nStatements the service sends, their plans and median ms (EXPLAIN QUERY PLAN)")
    for name, plans in d["plans"].items():
        print(f"  {name}")
        for p in plans:
            print(f"    {p['ms']:7.3f} ms  {_short(p['sql'])}")
            print(f"                plan: {' | '.join(p['plan'])}")
    print("\ncProfile of the default list through the ASGI app (thread-pool hops inline), own time by package")
    print("  " + ", ".join(f"{k} {v:.0f}%" for k, v in d["profile_by_package"].items() if v >= 1.0))
    for f in d["profile_top"]:
        print(f"  {f['own_ms_per_request']:6.3f} ms/req {f['calls']:6d} calls  {f['function'][:110]}")
    print("\nCandidate fixes, timed on a copy of the database (median ms before -> after)")
    for w in d["what_ifs"]:
        print(f"  {w['what']}: {w['before_ms']:.3f} -> {w['after_ms']:.3f} ms (same rows: {w['same_rows']})")
        print(f"      fix:    {w['fix'][:150]}")
        print(f"      before: {' | '.join(w['before_plan'])}")
        print(f"      after:  {' | '.join(w['after_plan'])}")


def main() -> None:
    """Seed, serve, load, baseline, and (if the target is missed) diagnose."""
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loras", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2, help="requests per client per measure")
    parser.add_argument("--serial", type=int, default=30, help="requests of the one-client and SQL runs")
    parser.add_argument("--stall-after", type=float, default=32.0, help="seconds before a load run counts as stalled")
    parser.add_argument("--diagnose", action="store_true", help="diagnose even when the target is met")
    parser.add_argument("--processes", type=int, default=2, help="HTTP server processes (serve --http-processes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        home, log = Path(tmp) / "home", Path(tmp) / "server.log"
        settings, db = Settings(home=home, device="cpu"), home / "studio.db"
        proc, base = start_server(home, log, args.processes)  # create_app migrates and makes the local user
        try:
            seed(settings, args.loras, args.jobs)
            with contextlib.closing(sqlite3.connect(db)) as conn:
                job_ids = [row[0] for row in conn.execute("SELECT id FROM jobs WHERE owner_id = ?", (OWNER,))]
            ms = measures(db, job_ids)
            alone = asyncio.run(solo_and_sql(base, ms, args, db))
            under_load = asyncio.run(loaded(base, proc.pid, ms, args, args.stall_after))
        finally:
            stop(proc)
        stalled = bool(under_load[-1]["errors"] or under_load[-1]["unanswered"])
        failures = log.read_text(errors="replace").split("unexpected error")[1:]
        rows = []
        for r in under_load:
            a = alone[r["measure"]]
            rows.append(
                r
                | a
                | {
                    "ratio_p95": round(r["api_p95_ms"] / a["sql_p95_ms"], 1),
                    "solo_ratio_p95": round(a["solo_p95_ms"] / a["sql_p95_ms"], 1),
                }
            )
        listing = next(r for r in rows if r["measure"] == "list (default)")
        met = not stalled and listing["api_p95_ms"] < TARGET_P95_MS
        report = {
            "loras": args.loras,
            "jobs": args.jobs,
            "clients": args.clients,
            "requests_per_client": args.requests,
            "cpus": os.cpu_count(),
            "target_p95_ms": TARGET_P95_MS,
            "target_met": met,
            "http_processes": args.processes,
            "stalled": stalled,
            "first_failure": under_load[-1] if stalled else None,
            "server_errors_logged": len(failures),
            "library_p95_ms": listing["api_p95_ms"],
            "library_measures_meeting_target": [
                r["measure"] for r in rows if r["library"] and r["api_p95_ms"] < TARGET_P95_MS
            ],
            "measures": rows,
        }
        if not met or args.diagnose:
            report["diagnosis"] = diagnose(settings, ms, repeats=min(args.serial, 20))
        report["seconds"] = round(time.perf_counter() - t_start, 1)
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{args.loras} LoRAs, {args.jobs} jobs, {args.clients} concurrent clients x {args.requests} requests each; "
        f"api@1 and sql: {args.serial} requests alone; {os.cpu_count()} CPUs"
    )
    if stalled:
        f = under_load[-1]
        print(
            f"\nTHE SERVER STALLED under {args.clients} clients: {f['measure']}: {f['answered']}/{f['sent']} answered, "
            f"{f['unanswered']} unanswered after {f['wall_s']:.0f} s, errors {f['errors'] or 'none'}; its log has "
            f"{len(failures)} unexpected errors. The measures after it were not run."
        )
    print()
    print_table(rows)
    verdict = "met" if met else "MISSED"
    print(
        f"\nlibrary list p95 at {args.clients} clients: "
        + ("stalled; " if stalled else "")
        + f"{listing['api_p95_ms']:.1f} ms "
        f"(target < {TARGET_P95_MS:.0f} ms): {verdict}"
    )
    if "diagnosis" in report:
        print_diagnosis(report["diagnosis"], rows, args.clients, stalled)
    print(f"\n({report['seconds']} s)")


if __name__ == "__main__":
    main()
