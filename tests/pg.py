"""A real PostgreSQL server on loopback for the tests: the machine's own install, run as the `postgres` user
(PostgreSQL refuses to run as root) in a temporary folder, without fsync; one fresh database per test."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


def missing() -> str | None:
    """Why PostgreSQL tests cannot run here (None: they can)."""
    if not BINARIES:
        return "PostgreSQL is not installed: `sudo apt-get install postgresql` (make test does it as root)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is missing: PostgreSQL cannot be started as the postgres user"
    return None


class Postgres:
    """One server for the test session."""

    def __init__(self) -> None:
        self.bin = os.path.dirname(BINARIES[-1])
        self.dir = tempfile.mkdtemp(prefix="lorastudio-pg-")
        self.data = os.path.join(self.dir, "data")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def _run(self, *args: str) -> None:
        command = [os.path.join(self.bin, args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """initdb and start (about a second)."""
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c synchronous_commit=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "-o", options, "start")

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"
