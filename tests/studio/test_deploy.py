"""docs/deploy.md, run: PostgreSQL, Redis and an S3-compatible server on loopback, one API server, two
one-device workers and a multi-GPU worker with 2 CPU "devices", each with its own LORASTUDIO_HOME (no shared
disk), all started with the document's own commands. Three users submit 6 trainings (one on 2 devices, run as
two torch.distributed processes on the multi-GPU worker) and 12 generations at once; a worker is SIGKILLed
mid-training and another goes on from the checkpoint in the store; Redis is down for 5 s; the API server
restarts. Every job ends, once, with the same LoRA as an uninterrupted run, and every result is readable from
the server."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load

from lorastudio.config import Settings
from lorastudio.studio.credits import cost_of
from tests.servers import free_port, redis_missing, wait_port

DOC = Path(__file__).parents[2] / "docs" / "deploy.md"
BLOCK = re.compile(r"<!-- test: (?P<role>[\w-]+) -->\n```sh\n(?P<body>.*?)```", re.S)
SERVERS = {"redis", "files", "serve", "worker", "multi-gpu-worker"}  # long-running: started, not waited for
ROLES = SERVERS | {"settings", "database", "schema", "bucket", "users", "workers", "backup", "restore"}
USERS = ("alice", "bob", "carol")
MULTI = "gpu-box"  # the multi-GPU worker's name in the document
SINGLE = 2  # one-device workers beside it (2 cores: more processes would only share them)
# Test-only settings on top of the document's: a CPU, short leases so a dead worker is noticed in seconds,
# one torch thread a process (2 cores, 6 processes; and the same arithmetic in every process).
FAST = {
    "LORASTUDIO_DEVICE": "cpu",
    "LORASTUDIO_LEASE_SECONDS": "5",
    "LORASTUDIO_HEARTBEAT_SECONDS": "0.5",
    "LORASTUDIO_POLL_SECONDS": "1",
    "OMP_NUM_THREADS": "1",
}


def blocks() -> list[tuple[str, list[str]]]:
    """(role, command lines) of every marked sh block, in order."""
    return [(m["role"], [ln for ln in m["body"].splitlines() if ln.strip()]) for m in BLOCK.finditer(DOC.read_text())]


def test_every_command_in_the_deploy_doc_is_run_by_a_test():
    text = DOC.read_text()
    assert text.count("```sh") == len(blocks()), "an sh block in docs/deploy.md has no <!-- test: ROLE --> marker"
    roles = {role for role, _ in blocks()}
    assert roles == ROLES, f"roles in the doc {sorted(roles)} are not the ones this test runs {sorted(ROLES)}"
    for role, lines in blocks():
        if role == "settings":
            for line in lines:
                name = re.fullmatch(r"export (\w+)=\S+", line)[1]
                assert name.startswith("AWS_") or name.removeprefix("LORASTUDIO_").lower() in Settings.model_fields
    for setting in re.findall(r"LORASTUDIO_\w+", text):
        assert setting.removeprefix("LORASTUDIO_").lower() in Settings.model_fields, setting


class Deployment:
    """The document's commands with its host names, ports and folders replaced by the test's."""

    def __init__(self, tmp: Path, pg_port: int):
        self.tmp = tmp
        self.ports = {"api": free_port(), "redis": free_port(), "files": free_port()}
        self.subs = [
            ("db.internal:5432", f"127.0.0.1:{pg_port}"),
            ("queue.internal:6379", f"127.0.0.1:{self.ports['redis']}"),
            ("--port 6379", f"--port {self.ports['redis']} --dir {tmp}"),
            ("files.internal:9000", f"127.0.0.1:{self.ports['files']}"),
            ("-p 9000", f"-p {self.ports['files']}"),
            ("--port 8000", f"--port {self.ports['api']}"),
            ("0.0.0.0", "127.0.0.1"),
            ("/var/lib/lorastudio/", f"{tmp}/"),
            # The tests run as root (CI) where sudo may be missing; runuser is what root has.
            ("sudo -u postgres", "runuser -u postgres --" if os.geteuid() == 0 else "sudo -u postgres"),
        ]
        self.env = (
            os.environ
            | {
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                "LORASTUDIO_HOME": str(tmp / "api-home"),
                "PGHOST": "127.0.0.1",
                "PGPORT": str(pg_port),
            }
            | FAST
        )
        for line in self.lines("settings"):
            name, value = line.removeprefix("export ").split("=", 1)
            self.env[name] = self.sub(value)
        self.procs: list[subprocess.Popen] = []

    def sub(self, text: str, extra: tuple = ()) -> str:
        for old, new in [*self.subs, *extra]:
            text = text.replace(old, new)
        return text

    def lines(self, role: str) -> list[str]:
        return next(lines for r, lines in blocks() if r == role)

    def _split(self, role: str, extra: tuple) -> tuple[dict, list[str]]:
        env, commands = dict(self.env), []
        for line in self.lines(role):
            line = self.sub(line, extra)
            if line.startswith("export "):
                name, value = line.removeprefix("export ").split("=", 1)
                env[name] = value
            else:
                commands.append(line)
        return env, commands

    def run(self, role: str, *extra: tuple[str, str]) -> list[str]:
        """Run a block's commands one after the other; their outputs."""
        env, commands = self._split(role, extra)
        outputs = []
        for command in commands:
            done = subprocess.run(
                ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120, cwd=self.tmp
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
        return outputs

    def start(self, role: str, *extra: tuple[str, str], log: str | None = None) -> subprocess.Popen:
        """Start a block's one long-running command."""
        env, commands = self._split(role, extra)
        (command,) = commands
        argv = shlex.split(command)
        while "=" in argv[0]:  # VAR=value before the program, as the shell reads it
            name, value = argv.pop(0).split("=", 1)
            env[name] = value
        out = open(self.tmp / f"{log or role}.log", "a")  # noqa: SIM115 - closed with the process
        # The program itself, not a shell around it: a SIGKILL must reach the worker.
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def worker(self, n: int, home: str | None = None) -> subprocess.Popen:
        return self.start("worker", ("gpu-a-0", f"gpu-a-{n}"), ("gpu0", home or f"gpu{n}"), log=f"worker-{n}")

    def multi_worker(self, home: str = "gpu-box") -> subprocess.Popen:
        return self.start("multi-gpu-worker", ("/gpu-box", f"/{home}"), log="gpu-box")

    def restart(self, name: str) -> None:
        """Start the worker `name` again on a machine that came back with a new, empty disk."""
        if name == MULTI:
            self.multi_worker(home="gpu-box-replaced")
        else:
            n = int(name.removeprefix("gpu-a-"))
            self.worker(n, home=f"gpu{n}-replaced")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


class Api:
    """One user's HTTP client; retries while the server restarts."""

    def __init__(self, port: int, token: str):
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        deadline = time.monotonic() + 60
        while True:
            try:
                return self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def ok(self, method: str, path: str, **kwargs):
        r = self.call(method, path, **kwargs)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r


def _dataset(api: Api, refs: Path, name: str) -> int:
    character = api.ok("POST", "/api/v1/characters", json={"name": f"{name}'s John", "description": "red gi"})
    dataset = api.ok(
        "POST",
        "/api/v1/datasets",
        json={"name": "John", "kind": "character", "trigger": "johnhero", "character_id": character["id"]},
    )
    files = [("files", (p.name, p.read_bytes())) for p in sorted(refs.iterdir())]
    api.ok("POST", f"/api/v1/datasets/{dataset['id']}/images", files=files)
    return dataset["id"]


def _wait(api: Api, job_id: int, done, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.ok("GET", f"/api/v1/jobs/{job_id}")
        if done(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s: {job}")


@pytest.fixture
def deployment(postgres, tmp_path):
    if (why := redis_missing()) is not None:
        pytest.skip(why)
    d = Deployment(tmp_path, postgres.port)
    yield d
    d.stop_all()


def test_a_team_on_many_machines(deployment, john_refs):
    d = deployment
    d.run("database")
    redis = d.start("redis")
    d.start("files")
    wait_port(d.ports["redis"])
    wait_port(d.ports["files"], timeout=60)
    d.run("bucket")
    d.run("schema")
    tokens = {}
    for user in USERS:
        tokens[user] = d.run("users", ("alice", user))[-1].strip().splitlines()[-1]
    api_proc = d.start("serve")
    for n in range(SINGLE):
        d.worker(n)
    d.multi_worker()
    apis = {user: Api(d.ports["api"], token) for user, token in tokens.items()}
    apis["alice"].ok("GET", "/api/v1/auth/me")  # the server answers (and the token works)
    with ThreadPoolExecutor(3) as pool:
        sets = dict(zip(USERS, pool.map(lambda u: _dataset(apis[u], john_refs, u), USERS), strict=True))

    # A training on 2 devices, submitted first: only the multi-GPU worker can take it (a submit is refused
    # while no live worker has 2 devices, so wait for it to register), and it takes it before anything else.
    deadline = time.monotonic() + 60
    while not any(w["name"] == MULTI and w["state"] == "alive" for w in apis["carol"].ok("GET", "/api/v1/workers")):
        assert time.monotonic() < deadline, "the multi-GPU worker did not register"
        time.sleep(0.2)
    wide = {"steps": 8, "checkpoint_every": 4, "seed": 5, "devices": 2}
    two = apis["carol"].ok("POST", "/api/v1/trainings", json={"dataset_id": sets["carol"], "overrides": wide})["id"]

    pair = {"steps": 20, "checkpoint_every": 4, "seed": 11}  # alice's two identical runs: one gets killed

    def submit(user: str, generations: int) -> list[tuple[str, int]]:
        api, made = apis[user], []
        bodies = [pair, pair] if user == "alice" else [dict(pair, steps=8, seed=len(user) + i) for i in range(2)]
        bodies = bodies[1:] if user == "carol" else bodies  # carol's other training is the 2-device one
        for body in bodies:
            job = api.ok("POST", "/api/v1/trainings", json={"dataset_id": sets[user], "overrides": body})
            made.append((user, job["id"]))
        for i in range(generations):
            body = {"prompt": "johnhero, kungfustyle, flying kick", "steps": 2, "seed": 100 * len(user) + i}
            made.append((user, api.ok("POST", "/api/v1/generations", json=body)["id"]))
        return made

    with ThreadPoolExecutor(3) as pool:
        submitted = [("carol", two)] + [job for jobs in pool.map(lambda u: submit(u, 3), USERS) for job in jobs]
    # Its two ranks are two processes of the multi-GPU worker's machine (torchrun's ranks leave their pids).
    ranks = [d.tmp / MULTI / "jobs" / f"job-{two}" / "run" / "launch" / f"rank-{r}.pid" for r in (0, 1)]
    while not all(p.exists() for p in ranks):
        assert apis["carol"].ok("GET", f"/api/v1/jobs/{two}")["status"] in ("pending", "running"), "no 2 ranks ran"
        time.sleep(0.1)
    alice = apis["alice"]
    pair_ids = [job_id for user, job_id in submitted if user == "alice"][:2]

    # SIGKILL the worker of whichever of alice's pair has a checkpoint in the store first.
    def checkpointed() -> int | None:
        for job_id in pair_ids:
            job = alice.ok("GET", f"/api/v1/jobs/{job_id}")
            if job["status"] == "running" and (job["checkpoint_step"] or 0) >= 8:
                return job_id
        return None

    deadline = time.monotonic() + 240
    while (doomed := checkpointed()) is None:
        assert time.monotonic() < deadline, "no training of the pair reached its second checkpoint"
        time.sleep(0.2)
    reference = next(i for i in pair_ids if i != doomed)
    victim = _lease_owner(d, doomed)
    _proc_of(d, victim).send_signal(signal.SIGKILL)
    d.restart(victim)  # the machine comes back with a new, empty disk

    # Redis down for 5 s: the wake-ups of what is submitted meanwhile are lost.
    redis.kill()
    redis.wait(timeout=10)
    with ThreadPoolExecutor(3) as pool:
        submitted += [job for jobs in pool.map(lambda u: _generation(apis[u], u), USERS) for job in jobs]
    time.sleep(5)
    redis = d.start("redis")
    wait_port(d.ports["redis"])

    # The API server restarts mid-run.
    api_proc.terminate()
    api_proc.wait(timeout=30)
    d.start("serve")

    finished = {}
    for user, job_id in submitted:
        finished[job_id] = _wait(
            apis[user], job_id, lambda j: j["status"] in ("succeeded", "failed", "canceled"), timeout=300
        )
    assert len(finished) == 18 and sum(1 for j in finished.values() if j["type"] == "training") == 6
    assert {j["status"] for j in finished.values()} == {"succeeded"}, [
        j for j in finished.values() if j["status"] != "succeeded"
    ]

    # The killed run went on from the stored checkpoint on another machine and ended like the other.
    resumed, uninterrupted = finished[doomed], finished[reference]
    assert resumed["attempts"] == 2 and resumed["result"]["resumed_from_step"] >= 8, resumed
    assert uninterrupted["attempts"] == 1 and uninterrupted["result"]["resumed_from_step"] is None
    a, b = (_lora_tensors(alice, finished[i]["result"]) for i in (doomed, reference))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Charged once: one hold, one capture for the resumed job; the balance is the start less the captures.
    assert resumed["credits"]["charged"] == resumed["credits"]["held"] - (resumed["credits"]["released"] or 0)
    charged = sum((finished[i]["credits"] or {}).get("charged") or 0 for u, i in submitted if u == "alice")
    ledger = alice.ok("GET", "/api/v1/credits", params={"limit": 1000})
    assert ledger["balance"] == 1000 - charged
    assert sorted(e["kind"] for e in ledger["entries"] if e["job_id"] == doomed) == ["capture", "hold", "release"]

    # Every result is readable from the server (which has none of the workers' disks).
    for user, job_id in submitted:
        job = finished[job_id]
        if job["type"] == "training":
            _lora_tensors(apis[user], job["result"])
        else:
            images = apis[user].ok("GET", f"/api/v1/jobs/{job_id}/images")
            assert images and all(apis[user].ok("GET", i["url"]).content[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    done_by = {w["name"]: w["jobs_done"] for w in alice.ok("GET", "/api/v1/workers")}
    assert all(done_by.get(name, 0) >= 1 for name in (*(f"gpu-a-{n}" for n in range(SINGLE)), MULTI)), done_by
    wide_job = finished[two]
    assert wide_job["request"]["plan"]["devices"] == 2
    # Both GPUs' minutes are billed, within the hold.
    rate, high = wide_job["request"]["credits_per_gpu_minute"], wide_job["request"]["estimate"]["credits"][1]
    assert wide_job["credits"]["charged"] == min(cost_of(wide_job["result"]["seconds"] * 2, rate), high)
    shown = d.run("workers")[0]
    assert all(name in shown for name in (*(f"gpu-a-{n}" for n in range(SINGLE)), MULTI)), shown

    # The backup and restore of the document, then the schema upgrade of the restored copy.
    d.run("backup")
    d.run("restore")
    restored = d.env["LORASTUDIO_DATABASE_URL"].rsplit("/", 1)[0] + "/lorastudio_restored"
    from sqlalchemy import create_engine, text

    with create_engine(restored).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 18


def _generation(api: Api, user: str) -> list[tuple[str, int]]:
    body = {"prompt": "johnhero blocking a punch", "steps": 2, "seed": 7 * len(user)}
    return [(user, api.ok("POST", "/api/v1/generations", json=body)["id"])]


def _lease_owner(d: Deployment, job_id: int) -> str:
    """The worker that runs a job, from its row (a worker with several devices runs several jobs at once)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(d.env["LORASTUDIO_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT lease_owner FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
    finally:
        engine.dispose()


def _proc_of(d: Deployment, name: str) -> subprocess.Popen:
    return [p for p in d.procs if name in p.args][-1]


def _lora_tensors(api: Api, result: dict) -> dict:
    r = api.call("GET", f"/api/v1/loras/{result['lora_id']}/file", params={"version": result["version"]})
    assert r.status_code == 200, r.text[:300]
    return load(r.content)
