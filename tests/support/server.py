"""A live ``consentry serve`` process for tests that need a real server, and its credentials.

The server runs as a subprocess bound to 127.0.0.1 on a free port, against a given store URL. Its
output goes to a log file (never a pipe that could fill up), whose tail is shown when it fails to
start. Use it as a context manager, or call :meth:`LiveServer.close` from a fixture finalizer, so
the process is gone even when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.support.postgres import free_port

HOST = "127.0.0.1"


def consentry_command() -> list[str]:
    """The ``consentry`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("consentry")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from consentry.cli import main; main()"]


# The server's schedules that sweep every workspace of a store (see api._background_jobs). The
# tests' store is shared by the whole session, so test apps and servers run with them off.
SWEEPING_SCHEDULES = (
    *("analytics", "recommend", "dedupe", "quality", "retention"),
    *("audiences", "journeys", "delivery"),
)


# The Settings(...) keywords of every test app: the sweeping schedules off, and acknowledged
# events expanded and applied in the app's own writer thread, where a test can settle() them
# (live servers keep the default: an ingest worker process).
TEST_APP: dict[str, Any] = {
    **{name: {"scheduled": False} for name in SWEEPING_SCHEDULES},
    "ingest": {"worker_process": False},
}


def _child_env() -> dict[str, str]:
    """The test's environment without CONSENTRY_* variables, so only our flags configure it,
    and with the sweeping schedules off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTRY_")}
    env.update({f"CONSENTRY_{name.upper()}__SCHEDULED": "false" for name in SWEEPING_SCHEDULES})
    env["CONSENTRY_ENVIRONMENT"] = "test"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True, slots=True)
class Credentials:
    """A workspace with a write key (ingestion) and an admin token (admin API)."""

    workspace_id: str
    write_key: str
    admin_token: str


def new_workspace_id() -> str:
    return f"live-{uuid.uuid4().hex[:10]}"


def credentials_via_cli(database_url: str, workspace_id: str | None = None) -> Credentials:
    """Create a workspace, a write key and an admin token with the ``consentry`` CLI."""
    workspace_id = workspace_id or new_workspace_id()
    url = ["--database-url", database_url]
    _cli("workspace", "create", workspace_id, *url)
    write_key = _cli("key", "create", workspace_id, "--kind", "write", "--name", "live", *url)
    token = _cli(
        "key", "create", workspace_id, "--kind", "token", "--role", "admin", "--name", "live", *url
    )
    return Credentials(workspace_id, write_key, token)


def _cli(*args: str) -> str:
    """Run one CLI command in an empty folder; return its stdout, stripped."""
    with tempfile.TemporaryDirectory(prefix="consentry-cli-") as cwd:
        done = subprocess.run(
            [*consentry_command(), *args],
            cwd=cwd,
            env={**_child_env(), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"consentry {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def credentials_via_services(db: Database, workspace_id: str | None = None) -> Credentials:
    """Create a workspace, a write key and an admin token through the tenancy service."""
    workspace_id = workspace_id or new_workspace_id()
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=workspace_id)
        write_key = tenancy.issue_key(
            session=session, workspace_id=workspace_id, kind="write", name="live"
        ).secret
        token = tenancy.issue_key(
            session=session,
            workspace_id=workspace_id,
            kind="token",
            name="live",
            role=tenancy.Role.ADMIN,
        ).secret
    return Credentials(workspace_id, write_key, token)


@dataclass
class LiveServer:
    """``consentry serve`` on 127.0.0.1 against ``database_url``; restartable on the same store.

    ``log_dir`` (a pytest ``tmp_path``) holds one log file per start and is the server's cwd.
    """

    database_url: str
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"serve-{self.starts}.log"

    def start(self, timeout: float = 60.0) -> LiveServer:
        """Start the server and wait until GET /health answers 200."""
        if self.running:
            raise RuntimeError("the server is already running")
        self.starts += 1
        command = [
            *consentry_command(),
            "serve",
            "--database-url",
            self.database_url,
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.log_dir,
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not the server
            )
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"consentry serve exited early:\n{self.log_tail()}")
                try:
                    if client.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"consentry serve not healthy after {timeout}s:\n{self.log_tail()}")

    def wait_processed(self, admin_token: str, timeout: float = 60.0) -> None:
        """Wait until the token's workspace has no stored event left to apply to profiles.

        A 200 from ``/v1/batch`` means stored; identity resolution, traits and orders follow a
        moment later in the server's ingest writer (``GET /v1/ingest/status``).
        """
        deadline = time.monotonic() + timeout
        pending = None
        headers = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=10.0) as client:
            while time.monotonic() < deadline:
                response = client.get("/v1/ingest/status")
                response.raise_for_status()
                pending = response.json()["pending"]
                if pending == 0:
                    return
                time.sleep(0.05)
        raise TimeoutError(f"{pending} events still pending after {timeout}s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash or an OOM kill."""
        self._signal(signal.SIGKILL, wait=10.0)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then wait for a graceful exit; SIGKILL if it does not come in time."""
        self._signal(signal.SIGTERM, wait=timeout)

    def _signal(self, sig: signal.Signals, wait: float) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)  # by pid: only the process we started
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10.0)
        self.process = None

    def close(self) -> None:
        """Stop the server if it still runs; safe to call any number of times."""
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LiveServer:
        return self.start() if not self.running else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
