"""A throwaway PostgreSQL server: initdb into a temp dir, pg_ctl start on a free port, removed
afterwards. Used by the test suite and the benchmarks; never a mock of our own database."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if Path(folder, "initdb").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster that lives as long as this object is started."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="consentry-pg-")))
    port: int = field(default_factory=free_port)
    user: str = "postgres"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> None:
        command = [str(a) for a in args]
        if os.geteuid() == 0:  # initdb refuses root: run as the postgres system user
            shutil.chown(self.root, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        """Create and start the cluster; return the URL of a fresh database in it."""
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-o",
            opts,
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self.create_database()

    def create_database(self, name: str | None = None) -> str:
        """Create a uuid-named database; return its SQLAlchemy URL."""
        import psycopg

        name = name or f"consentry_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{name}"

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def stop(self) -> None:
        """Stop the server and remove its files."""
        if self.datadir.exists():
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                )
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def started_postgres() -> ThrowawayPostgres:
    """A throwaway server, started, for a benchmark; exits with a message when PostgreSQL is
    not installed (``make check-postgres`` installs it). The caller stops it."""
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found (make check-postgres installs them)")
    server = ThrowawayPostgres(bindir)
    server.start()
    return server


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until it is truthy or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")
