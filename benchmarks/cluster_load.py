"""Cluster load: job throughput with 1 API server + K worker processes, library p95 on SQLite vs PostgreSQL,
and an on-paper prediction for 100 GPU workers.

1. Throughput scaling. For each K (--workers 1,2,4) a fresh studio: `lorastudio serve --workers 0` plus K
   `lorastudio worker --threads max(1, cores // K)` processes, all on one database (a fresh SQLite file, or
   --database-url). Every process gets the SAME LORASTUDIO_HOME: without LORASTUDIO_QUEUE_URL the wake-up
   queue is a SQLite file under the home, so separate homes would not pass wake-ups between processes (one
   machine here, so one home is the honest set-up). After a warm-up job (workers import torch), --jobs toy-world
   generations (2 steps) are submitted at once; it reports jobs/min, the ratio against the first K, and queue
   latency p50/p95 (started_at - created_at of each job).
2. Library p95: 10,000 LoRAs seeded with benchmarks/api_load.py's helpers, GET /api/v1/loras 200 times in a
   row and from 20 concurrent clients, on SQLite and (unless --skip-postgres, or it cannot run) PostgreSQL
   started with tests/pg.py. Also the write transactions per second each database takes (4 threads writing
   job progress as workers do), the capacity the prediction compares against.
3. "On paper, for 100 GPU workers": the worker's transactions per job (counted from studio/worker.py and
   jobs.py), the database write rate of 100 busy workers against the measured capacity, Redis wake-ups and the
   library p95; what saturates first.

    .venv/bin/python benchmarks/cluster_load.py [--workers 1,2,4] [--jobs 24] [--skip-postgres] [--json]

About 3-5 minutes on 2 cores (each K starts K torch-importing workers; the library part seeds 10,000 rows twice).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.pg
import api_load  # noqa: E402

from lorastudio.config import Settings  # noqa: E402

API = "/api/v1"
BODY = {"prompt": "johnhero, kungfustyle", "steps": 2}
CORES = os.cpu_count() or 1
# The worker's cadences (studio/worker.py, config.py defaults): progress at most every REPORT_EVERY s while
# running, lease renewal every min(heartbeat, lease / 3), presence beat the same, reap + poll every poll_seconds.
REPORT_EVERY, HEARTBEAT, LEASE, POLL = 0.5, 10.0, 60.0, 15.0


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Terminate, then kill what is still there after 15 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_health(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}{API}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit("the server did not answer /health within 180 s")


def submit(client: httpx.Client, n: int, seed0: int) -> list[int]:
    ids = []
    for i in range(n):
        r = client.post(f"{API}/generations", json=BODY | {"seed": seed0 + i})
        r.raise_for_status()
        ids.append(r.json()["id"])
    return ids


def wait_done(client: httpx.Client, ids: list[int], timeout: float = 900) -> list[dict]:
    """Poll until every job succeeded (0.5 s rounds: polling faster would steal the workers' CPU)."""
    done: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(ids) - len(done)} jobs still unfinished after {timeout:.0f} s")
        for i in ids:
            if i not in done:
                job = client.get(f"{API}/jobs/{i}").json()
                if job["status"] in ("failed", "canceled"):
                    raise SystemExit(f"job {i} {job['status']}: {job.get('error_message')}")
                if job["status"] == "succeeded":
                    done[i] = job
        time.sleep(0.5)
    return [done[i] for i in ids]


def seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def run_k(k: int, n_jobs: int, database_url: str | None) -> dict:
    """One fresh studio with k workers: jobs/min over n_jobs submitted at once, queue latency p50/p95."""
    threads = max(1, CORES // k)
    with tempfile.TemporaryDirectory(prefix=f"cluster-k{k}-") as tmp:
        home, log = Path(tmp) / "home", Path(tmp) / "procs.log"
        env = os.environ | {
            "LORASTUDIO_HOME": str(home),
            "LORASTUDIO_DATABASE_URL": database_url or f"sqlite:///{home / 'studio.db'}",
            "LORASTUDIO_DEVICE": "cpu",
            "LORASTUDIO_POLL_SECONDS": "1",
        }
        port = api_load.free_port()
        cli = [sys.executable, "-m", "lorastudio.cli"]
        procs: list[subprocess.Popen] = []
        with open(log, "ab") as out:
            try:
                serve = [*cli, "serve", "--workers", "0", "--port", str(port)]
                procs.append(subprocess.Popen(serve, env=env, stdout=out, stderr=subprocess.STDOUT))
                base = f"http://127.0.0.1:{port}"
                wait_health(base, procs[0], log)  # the server migrates the schema before workers open it
                for w in range(k):
                    worker = [*cli, "worker", "--name", f"w{w}", "--threads", str(threads)]
                    worker_env = env | {"OMP_NUM_THREADS": str(threads)}
                    procs.append(subprocess.Popen(worker, env=worker_env, stdout=out, stderr=subprocess.STDOUT))
                with httpx.Client(base_url=base, timeout=60) as client:
                    wait_done(client, submit(client, k, 10_000))  # warm-up: one job per worker's import
                    t0 = time.monotonic()
                    jobs = wait_done(client, submit(client, n_jobs, 0))
                    wall = time.monotonic() - t0
            finally:
                stop_all(procs)
    queued = [seconds(j["created_at"], j["started_at"]) for j in jobs]
    running = [seconds(j["started_at"], j["finished_at"]) for j in jobs]
    return {
        "workers": k,
        "threads": threads,
        "wall_s": round(wall, 1),
        "jobs_per_min": round(n_jobs / wall * 60, 1),
        "queue_p50_s": round(api_load.pct(queued, 50) / 1000, 2),
        "queue_p95_s": round(api_load.pct(queued, 95) / 1000, 2),
        "run_mean_s": round(sum(running) / len(running), 2),
    }


async def library_p95(base: str, serial: int, clients: int) -> dict:
    """p95 of the default list: `serial` requests alone, then the same number spread over `clients`."""

    async def one(client: httpx.AsyncClient, n: int, out: list[float]) -> None:
        for _ in range(n):
            t = time.perf_counter()
            (await client.get(f"{API}/loras")).raise_for_status()
            out.append(time.perf_counter() - t)

    alone: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        await one(c, 5, [])  # warm: connection, caches
        await one(c, serial, alone)
    loaded: list[float] = []
    pool = [httpx.AsyncClient(base_url=base, timeout=60) for _ in range(clients)]
    try:
        await asyncio.gather(*(one(c, max(1, serial // clients), loaded) for c in pool))
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return {
        "serial_p50_ms": round(api_load.pct(alone, 50), 1),
        "serial_p95_ms": round(api_load.pct(alone, 95), 1),
        f"c{clients}_p95_ms": round(api_load.pct(loaded, 95), 1),
    }


def write_capacity(settings: Settings, seconds_: float = 3.0, threads: int = 4) -> float:
    """Progress writes per second the database commits, `threads` writers on their own jobs (as workers are)."""
    from sqlalchemy import select, update

    from lorastudio.studio import jobs
    from lorastudio.studio.db import Job, make_engine, session_factory

    engine = make_engine(settings)
    factory = session_factory(engine)
    with factory() as s:
        ids = list(s.scalars(select(Job.id).limit(threads)))
        s.execute(update(Job).where(Job.id.in_(ids)).values(status="running", lease_owner="bench"))
        s.commit()
    counts = [0] * len(ids)
    end = time.monotonic() + seconds_

    def writer(n: int) -> None:
        while time.monotonic() < end:
            jobs.report(factory, job_id=ids[n], worker="bench", progress={"step": counts[n], "total": 1000})
            counts[n] += 1

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(len(ids))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    engine.dispose()
    return round(sum(counts) / seconds_, 1)


def library_on(name: str, url: str | None, n_loras: int, serial: int, clients: int) -> dict:
    """A studio on this database (api_load's server, which reads LORASTUDIO_DATABASE_URL), seeded, measured."""
    with tempfile.TemporaryDirectory(prefix=f"library-{name}-") as tmp:
        home = Path(tmp) / "home"
        url = url or f"sqlite:///{home / 'studio.db'}"
        os.environ["LORASTUDIO_DATABASE_URL"] = url  # the server subprocess inherits it
        try:
            proc, base = api_load.start_server(home, Path(tmp) / "server.log", 1)
            try:
                settings = Settings(home=home, device="cpu", database_url=url)
                api_load.seed(settings, n_loras, 20)  # bulk inserts through SQLAlchemy: any dialect
                out = {"database": name} | asyncio.run(library_p95(base, serial, clients))
            finally:
                api_load.stop(proc)
            out["writes_per_s"] = write_capacity(settings)
        finally:
            del os.environ["LORASTUDIO_DATABASE_URL"]
    return out


def libraries(args) -> list[dict]:
    rows = [library_on("sqlite", None, args.loras, args.serial, args.clients)]
    if args.skip_postgres:
        return rows
    from tests import pg

    if reason := pg.missing():
        print(f"PostgreSQL skipped: {reason}", file=sys.stderr)
        return rows
    server = pg.Postgres()
    server.start()
    try:
        rows.append(library_on("postgresql", server.new_database(), args.loras, args.serial, args.clients))
    finally:
        server.stop()
    return rows


def transactions_per_job(run_s: float) -> float:
    """Write transactions one job costs its worker: claim, a progress write every REPORT_EVERY s (+ the forced
    last one of the phase), a lease renewal every min(heartbeat, lease/3), finish (one commit with the result),
    the registry beat that counts it, purge_deleted (BEGIN IMMEDIATE), and the empty claim that ends a drain."""
    renew = min(HEARTBEAT, LEASE / 3)
    return 1 + (run_s / REPORT_EVERY + 1) + run_s // renew + 1 + 1 + 1 + 1


def prediction(runs: list[dict], libs: list[dict], workers: int = 100) -> dict:
    """Write rate of `workers` busy workers, per job kind, vs the measured databases; Redis; the API."""
    idle = 1 / min(HEARTBEAT, LEASE / 3) + 2 / POLL  # presence beat; reap + a polling claim each poll
    kinds = {"training (20 min)": 1200.0, "generation (5 s)": 5.0}
    demand = {k: round(workers * (transactions_per_job(d) / d + idle), 1) for k, d in kinds.items()}
    worst = max(demand.values())
    capacity = {lib["database"]: lib["writes_per_s"] for lib in libs}
    return {
        "workers": workers,
        "tx_per_job": {k: round(transactions_per_job(d), 1) for k, d in kinds.items()},
        "db_writes_per_s": demand,
        "db_capacity_writes_per_s": capacity,
        "db_utilisation": {db: round(worst / cap, 2) for db, cap in capacity.items()},
        "redis_wakes_per_s": {k: round(workers / d, 2) for k, d in kinds.items()},
        "library_p95_ms": {lib["database"]: lib[f"c{lib['clients']}_p95_ms"] for lib in libs},
        "toy_scaling_last_ratio": runs[-1]["ratio"] if runs else None,
    }


def verdict(p: dict) -> str:
    util = p["db_utilisation"]
    over = sorted((u, db) for db, u in util.items() if u >= 1)
    if over:
        u, db = over[-1]
        first = f"the {db} database's write lock: {u:.1f}x its measured write rate"
    else:
        db, u = max(util.items(), key=lambda kv: kv[1])
        first = f"nothing on the database side yet (worst: {db} at {u:.0%} of its measured write rate)"
    return first


def report_text(runs: list[dict], libs: list[dict], p: dict, n_jobs: int) -> None:
    print(f"Throughput: {n_jobs} toy-world generations (2 steps) submitted at once; {CORES} CPUs")
    print(f"{'K':>2s} {'threads':>7s} {'jobs/min':>9s} {'ratio':>6s} {'queue p50 s':>11s} {'p95 s':>6s} {'run s':>6s}")
    for r in runs:
        print(
            f"{r['workers']:2d} {r['threads']:7d} {r['jobs_per_min']:9.1f} {r['ratio']:6.2f} "
            f"{r['queue_p50_s']:11.2f} {r['queue_p95_s']:6.2f} {r['run_mean_s']:6.2f}"
        )
    print("\nLibrary: GET /api/v1/loras (default list), 10,000 LoRAs")
    for lib in libs:
        c = lib["clients"]
        print(
            f"  {lib['database']:10s} alone p50 {lib['serial_p50_ms']:6.1f} ms  p95 {lib['serial_p95_ms']:6.1f} ms   "
            f"{c} clients p95 {lib[f'c{c}_p95_ms']:7.1f} ms   writes {lib['writes_per_s']:7.1f}/s (4 threads)"
        )
    print(f"\nOn paper, for {p['workers']} GPU workers:")
    for kind, tx in p["tx_per_job"].items():
        print(
            f"  {kind}: {tx:.0f} write transactions a job -> {p['db_writes_per_s'][kind]:.0f} writes/s "
            f"for {p['workers']} busy workers (incl. beats/reaps); {p['redis_wakes_per_s'][kind]:.2f} Redis wakes/s"
        )
    for db, cap in p["db_capacity_writes_per_s"].items():
        print(f"  {db}: measured {cap:.0f} writes/s on this machine -> {p['db_utilisation'][db]:.0%} used at worst")
    print(f"  library p95 under concurrent clients: {p['library_p95_ms']} (API CPU, not the workers, sets it)")
    print(f"  saturates first: {p['verdict']}; Redis at tens of messages/s is idle.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts K, comma-separated")
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--database-url", default=None, help="for the throughput part (default: fresh SQLite)")
    parser.add_argument("--loras", type=int, default=10_000)
    parser.add_argument("--serial", type=int, default=200, help="library requests (alone, then spread over clients)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    runs = [run_k(int(k), args.jobs, args.database_url) for k in args.workers.split(",")]
    for r in runs:
        r["ratio"] = round(r["jobs_per_min"] / runs[0]["jobs_per_min"], 2)
    libs = [lib | {"clients": args.clients} for lib in libraries(args)]
    p = prediction(runs, libs)
    p["verdict"] = verdict(p)
    if args.json:
        print(json.dumps({"cpus": CORES, "throughput": runs, "library": libs, "prediction": p}))
    else:
        report_text(runs, libs, p, args.jobs)
        print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
